"""Alembic environment for callguard's schema (ledger, vault and every table on ``Base``).

callguard runs migrations itself (:func:`callguard.ledger.schema.upgrade`,
on every writer open) on the connection it already holds, inside its
transaction; there is no alembic.ini.  A developer adding a migration:

    python -m callguard.ledger.schema revision -m "what changed" --db sqlite:///dev.sqlite
"""

from __future__ import annotations

from alembic import context

from callguard.ledger.models import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True,
                  transaction_per_migration=False)
context.run_migrations()
