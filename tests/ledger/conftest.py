"""Ledger test fixtures: a fresh SQLite file, or a fresh PostgreSQL schema.

PostgreSQL tests need ``CALLGUARD_TEST_PG_URL`` (e.g.
``postgresql+psycopg://postgres@127.0.0.1:55432/callguard_test``); each test
gets its own schema (via ``search_path``) that is dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from callguard.ledger import Ledger

PG_ENV = "CALLGUARD_TEST_PG_URL"


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'ledger.sqlite'}"


def pg_base_url() -> str:
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f"{PG_ENV} is not set; set it to a PostgreSQL URL "
                    "(postgresql+psycopg://user@host:port/db) to run the PostgreSQL ledger tests")
    return base


@contextmanager
def pg_schema(base: str) -> Iterator[str]:
    """A URL on a fresh schema of ``base`` (dropped on exit)."""
    schema = f"cg_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def pg_url() -> Iterator[str]:
    with pg_schema(pg_base_url()) as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request) -> str:
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")


@pytest.fixture
def open_ledger(db_url) -> Iterator[Callable[..., Ledger]]:
    """``open_ledger(chain_id, **options)`` on ``db_url``; closed after the test."""
    opened: list[Ledger] = []

    def factory(chain_id: str = "asterisk@pbx1", *, url: str | None = None, **options) -> Ledger:
        options.setdefault("batch_wait_ms", 1.0)
        ledger = Ledger.open(url or db_url, chain_id, **options)
        opened.append(ledger)
        return ledger

    yield factory
    for ledger in opened:
        ledger.close(timeout=10)


@pytest.fixture
def raw_engine(db_url) -> Iterator[Engine]:
    """A plain engine on the same database, for tampering and counting."""
    engine = create_engine(db_url)
    yield engine
    engine.dispose()
