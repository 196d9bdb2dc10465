"""Baseline: the schema every callguard release before Alembic created with ``create_all``.

A database with ledger tables but no ``alembic_version`` table is stamped
with this revision and upgraded from here (see ``callguard.ledger.schema``).

Revision ID: 0001
Revises:
Create Date: 2026-12-06
"""

from __future__ import annotations

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Nothing: a new database is built by ``create_all`` and stamped at head."""


def downgrade() -> None:
    raise NotImplementedError("callguard does not downgrade evidence databases")
