"""The part of the ledger API a listener holds, free of SQLAlchemy.

The listener with ``[ledger] writer = "process"`` appends through
:class:`~callguard.ledger.process.LedgerProcess` and never touches the
database itself, so it need not import SQLAlchemy, Alembic and the models
(about 40 MiB of the listener's idle RSS).  What both writers share lives
here: the error, the acknowledgement, the counters, the entry check and
:class:`LedgerHandle`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Self

from callguard.core.commands import LedgerEntry

log = logging.getLogger("callguard.ledger")

#: Longest id (call, chain, channel name) the schema holds: a generous bound for PBX identifiers.
ID_LEN = 255
#: Longest entry kind the schema holds.
KIND_LEN = 64


class LedgerError(Exception):
    """A ledger problem worded for the operator: what failed and what to do."""


@dataclass(frozen=True, slots=True)
class Committed:
    """An acknowledged entry: it is in the database and in the chain."""

    chain_id: str
    seq: int
    hash: str
    call_id: str
    kind: str


OnCommit = Callable[[Committed], None]


@dataclass(slots=True)
class WriterStats:
    """Counters for monitoring and the benchmark."""

    transactions: int = 0
    entries: int = 0
    max_batch: int = 0
    failures: int = 0


def check_entry(entry: LedgerEntry, received_at: float) -> None:
    """Raise ``TypeError`` / ``ValueError`` for an entry the schema cannot hold.

    Called where the entry is appended, so one bad entry fails at its
    caller and can never block the queue behind it.
    """
    if not isinstance(entry, LedgerEntry):
        raise TypeError(f"expected a LedgerEntry, got {type(entry).__name__}")
    if not (0 < len(entry.call_id) <= ID_LEN and 0 < len(entry.kind) <= KIND_LEN):
        raise ValueError(f"ledger entry call id / kind too long or empty: {entry.call_id!r} {entry.kind!r}")
    if not (math.isfinite(entry.at) and math.isfinite(received_at)):
        raise ValueError(f"ledger entry time is not a finite number: at={entry.at!r} received_at={received_at!r}")


class LedgerHandle:
    """What the listener holds of a ledger writer, wherever the writing happens.

    Shared by :class:`Ledger` (a thread) and
    :class:`~callguard.ledger.process.LedgerProcess` (a child process):
    the state monitoring reads, close hooks, and ``with`` support.
    """

    _committed_seq: int = 0
    _healthy: bool = True
    _last_error: str | None = None

    def __init__(self) -> None:
        self._close_hooks: list[Callable[[], None]] = []

    def close(self, timeout: float | None = None) -> bool:
        raise NotImplementedError

    def on_close(self, hook: Callable[[], None]) -> None:
        """Run ``hook`` in :meth:`close` after the last entry is written, before the engine goes.

        The checkpointer signs its final checkpoint here, so a clean stop
        always leaves a checkpoint covering every entry.
        """
        self._close_hooks.append(hook)

    def _run_close_hooks(self, chain_id: str) -> None:
        for hook in self._close_hooks:
            try:
                hook()
            except Exception:
                log.exception("ledger %s: a close hook failed", chain_id)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def committed_seq(self) -> int:
        """Seq of the last committed entry of this chain (0 for an empty chain)."""
        return self._committed_seq

    @property
    def healthy(self) -> bool:
        """False while the database rejects writes (entries are kept queued)."""
        return self._healthy

    @property
    def last_error(self) -> str | None:
        """The most recent database error, worded for a log or a status page."""
        return self._last_error


__all__ = ["ID_LEN", "KIND_LEN", "Committed", "LedgerError", "LedgerHandle", "OnCommit", "WriterStats", "check_entry"]
