"""The tamper-evident evidence ledger.

* :mod:`~callguard.ledger.models` - SQLAlchemy models (the shared ``Base``).
* :mod:`~callguard.ledger.chain` - how an entry's hash is computed.
* :mod:`~callguard.ledger.writer` - :class:`Ledger`, the non-blocking group-commit writer.
* :mod:`~callguard.ledger.verify` - :func:`verify`, walking every chain.
* :mod:`~callguard.ledger.queries` - timelines, calls by number, export.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: Where each public name lives.  Loaded on first use (PEP 562), so a listener that only
#: appends through :mod:`callguard.ledger.process` never imports SQLAlchemy.
_HOMES = {
    "Base": "models", "Call": "models", "CallParty": "models", "ChainHead": "models",
    "LedgerEntryRecord": "models",
    "LedgerError": "handle", "Committed": "handle", "WriterStats": "handle",
    "open_for_reading": "db", "open_for_writing": "db",
    "StoredEntry": "queries", "calls_by_number": "queries", "export_entries": "queries", "get_call": "queries",
    "recent_calls": "queries", "timeline": "queries",
    "ChainReport": "verify", "Problem": "verify", "VerifyReport": "verify", "verify": "verify",
    "Ledger": "writer",
}

if TYPE_CHECKING:
    from callguard.ledger.db import open_for_reading, open_for_writing
    from callguard.ledger.handle import Committed, LedgerError, WriterStats
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
    from callguard.ledger.writer import Ledger


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


__all__ = sorted(_HOMES)
