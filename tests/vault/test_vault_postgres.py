"""The vault on PostgreSQL (the multi-PBX deployment): same flows, PostgreSQL triggers and types.

Needs ``CALLGUARD_TEST_PG_URL`` (e.g. ``postgresql+psycopg://postgres@127.0.0.1:5432/callguard_test``);
each test runs in its own schema, dropped afterwards.
"""

from __future__ import annotations

import dataclasses
import os
import uuid

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from callguard.vault import dsar, holds
from callguard.vault.accesslog import verify_log
from callguard.vault.audit import run_audit
from callguard.vault.ingest import ingest_file
from callguard.vault.recordings import export
from callguard.vault.retention import sweep
from callguard.vault.service import AccessDenied, Vault

from tests.vault.conftest import T0, call_entries, install_key, make_config, recording_start, spool_copy, \
    write_ledger

pytestmark = pytest.mark.postgres
PG_ENV = "CALLGUARD_TEST_PG_URL"


@pytest.fixture
def pg_config(tmp_path):
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f"{PG_ENV} is not set; point it at a PostgreSQL database to run the vault's PostgreSQL tests")
    schema = f"cg_vault_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(False)
    config = make_config(tmp_path)
    config = dataclasses.replace(config, ledger=dataclasses.replace(config.ledger, url=url))
    install_key(config)
    try:
        yield config
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def test_ingest_access_retention_dsar_audit_on_postgres(pg_config, tmp_path, small_wav, clock):
    entries = call_entries("pg-1", "+442079460123", T0) + call_entries("pg-2", "+442079460123", T0 + 60)
    write_ledger(pg_config, entries)
    with Vault.open(pg_config, clock=clock) as vault:
        ids = [ingest_file(vault, spool_copy(small_wav, tmp_path / "spool", f"callguard-{c}.wav"), c).recording_id
               for c in ("pg-1", "pg-2")]
        export(vault, "alice", ids[0], "court order 2026/11", tmp_path / "out.wav")
        assert (tmp_path / "out.wav").read_bytes() == small_wav.read_bytes()
        with pytest.raises(AccessDenied):
            export(vault, "bob", ids[0], "a copy for me please", tmp_path / "bob.wav")
        # the append-only trigger is PostgreSQL's own
        with vault.engine.begin() as conn, pytest.raises(Exception, match="append-only"):
            conn.execute(text("UPDATE vault_access_log SET actor = 'x' WHERE seq = 1"))
        assert verify_log(vault.engine).ok
        holds.place(vault, "erin", "claim 2026-99 pending", call_id="pg-2")
        clock.now = recording_start(entries) + 100 * 86400
        report = sweep(vault, None, apply=True)
        assert report.deleted == [ids[0]] and [e.recording_id for e in report.held] == [ids[1]]
        with vault.engine.begin() as conn, pytest.raises(Exception, match="append-only"):
            conn.execute(text("DELETE FROM vault_deletions"))
        request = dsar.open_request(vault, "alice", "+44 20 7946 0123")
        assert sorted(request.found["calls"]) == ["pg-1", "pg-2"]
        erased = dsar.erase(vault, "alice", request.id, "erasure by letter of 3 Jan")
        assert erased["deleted"] == [] and any("legal hold" in k["why"] for k in erased["kept"])
        audit = run_audit(vault, "alice", "2026-10")
        found = {check: {f.subject for f in fs} for check, fs in audit.by_check().items() if fs}
        assert found == {"access-denied": {"bob"}, "sweep-missed": {"retention"}}
