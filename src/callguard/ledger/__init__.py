"""The tamper-evident evidence ledger.

* :mod:`~callguard.ledger.models` - SQLAlchemy models (the shared ``Base``).
* :mod:`~callguard.ledger.chain` - how an entry's hash is computed.
* :mod:`~callguard.ledger.writer` - :class:`Ledger`, the non-blocking group-commit writer.
* :mod:`~callguard.ledger.verify` - :func:`verify`, walking every chain.
* :mod:`~callguard.ledger.queries` - timelines, calls by number, export.
"""

from __future__ import annotations

from callguard.ledger.db import LedgerError, open_for_reading, open_for_writing
from callguard.ledger.models import Base, Call, CallParty, ChainHead, LedgerEntryRecord
from callguard.ledger.queries import (
    StoredEntry,
    calls_by_number,
    export_entries,
    get_call,
    recent_calls,
    timeline,
)
from callguard.ledger.verify import ChainReport, Problem, VerifyReport, verify
from callguard.ledger.writer import Committed, Ledger, WriterStats

__all__ = [
    "Base",
    "Call",
    "CallParty",
    "ChainHead",
    "ChainReport",
    "Committed",
    "Ledger",
    "LedgerEntryRecord",
    "LedgerError",
    "Problem",
    "StoredEntry",
    "VerifyReport",
    "WriterStats",
    "calls_by_number",
    "export_entries",
    "get_call",
    "open_for_reading",
    "open_for_writing",
    "recent_calls",
    "timeline",
    "verify",
]
