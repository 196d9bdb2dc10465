"""Merkle tree, signed checkpoints, witnesses, per-subject keys for personal data (issue 16).

Adds ``chain_heads.tree_size/tree_root`` and the tables ``merkle_nodes``,
``checkpoints``, ``checkpoint_publications`` and ``pii_keys``; widens
``parties.number/name`` to text (they now hold sealed values); then builds
the Merkle tree of every existing chain from its entries as stored.
Entries themselves are never touched: they are append-only evidence.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("chain_heads") as batch:
        batch.add_column(sa.Column("tree_size", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("tree_root", sa.String(64), nullable=True))
    op.create_table(
        "merkle_nodes",
        sa.Column("chain_id", sa.String(255), primary_key=True),
        sa.Column("level", sa.SmallInteger(), primary_key=True, autoincrement=False),
        sa.Column("idx", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("hash", sa.LargeBinary(32), nullable=False),
    )
    op.create_table(
        "checkpoints",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("chain_id", sa.String(255), nullable=False),
        sa.Column("tree_size", sa.BigInteger(), nullable=False),
        sa.Column("root_hash", sa.String(64), nullable=False),
        sa.Column("signed_at", sa.Float(), nullable=False),
        sa.Column("key_name", sa.String(255), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
    )
    op.create_index("ix_checkpoints_chain_size", "checkpoints", ["chain_id", "tree_size"])
    op.create_table(
        "checkpoint_publications",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("checkpoint_id", sa.Integer(), sa.ForeignKey("checkpoints.id"), nullable=False),
        sa.Column("witness", sa.String(255), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
    )
    op.create_index("ix_checkpoint_publications_checkpoint_id", "checkpoint_publications", ["checkpoint_id"])
    op.create_table(
        "pii_keys",
        sa.Column("kid", sa.String(32), primary_key=True),
        sa.Column("call_id", sa.String(255), nullable=False),
        sa.Column("subject", sa.String(64), nullable=True),
        sa.Column("key", sa.LargeBinary(32), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
    )
    op.create_index("ix_pii_keys_call_id", "pii_keys", ["call_id"])
    op.create_index("ix_pii_keys_subject", "pii_keys", ["subject"])
    if op.get_bind().dialect.name != "sqlite":  # SQLite never enforced the length
        op.alter_column("parties", "number", type_=sa.Text(), existing_type=sa.String(255))
        op.alter_column("parties", "name", type_=sa.Text(), existing_type=sa.String(255))

    from callguard.ledger.tree import catch_up

    bind = op.get_bind()
    for (chain_id,) in bind.execute(sa.text("SELECT chain_id FROM chain_heads ORDER BY chain_id")).all():
        catch_up(bind, chain_id)


def downgrade() -> None:
    raise NotImplementedError("callguard does not downgrade evidence databases")
