"""What the operations endpoints read from the running listener, without knowing which PBX it is.

Each listener hands the console a :class:`ListenerProbe` of plain callables
(built in :mod:`callguard.web.server`), so ``/readyz`` and ``/metrics`` stay
free of adapter imports and a test can probe anything.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass
class ListenerProbe:
    #: logged in to the PBX right now (AMI login / ESL auth)
    pbx_connected: Callable[[], bool] = lambda: False
    #: successful logins since start (the first one included)
    connects: Callable[[], int] = lambda: 0
    #: heartbeats the dialplan checks, sent since start (counts up while healthy)
    heartbeats: Callable[[], int] = lambda: 0
    heartbeat_interval_s: float = 2.0
    #: the ledger writer: database accepting writes, entries queued, last error
    ledger_healthy: Callable[[], bool] = lambda: True
    ledger_backlog: Callable[[], int] = lambda: 0
    ledger_error: Callable[[], str | None] = lambda: None
    #: recordings handed to the vault ingest and not yet stored (or failed)
    vault_backlog: Callable[[], int] = lambda: 0
    clock: Callable[[], float] = time.monotonic
    _beat: tuple[int, float] = field(default=(-1, 0.0), init=False, repr=False)

    @classmethod
    def over(cls, ledger: object, ingest: object | None = None, **listener: Any) -> "ListenerProbe":
        """A probe reading ``ledger`` (a :class:`~callguard.ledger.Ledger` or any sink in front of one)
        and the vault ``ingest`` (an :class:`~callguard.vault.autoingest.AutoIngest`), plus the
        listener's own callables."""
        inner = getattr(ledger, "ledger", ledger)  # AutoIngest and test tees wrap the writer
        parts: dict[str, Any] = {}
        if hasattr(inner, "healthy"):
            parts.update(ledger_healthy=lambda: bool(inner.healthy), ledger_backlog=lambda: int(inner.backlog),
                         ledger_error=lambda: inner.last_error)
        stats = getattr(ingest, "stats", None)
        if isinstance(stats, dict):
            parts["vault_backlog"] = lambda: max(stats["submitted"] - stats["stored"] - stats["missing"]
                                                 - stats["failed"], 0)
        return cls(**parts, **listener)

    def heartbeat_fresh(self) -> bool:
        """The heartbeat counter moved within three intervals (what the dialplan's staleness check allows)."""
        count, now = self.heartbeats(), self.clock()
        if count != self._beat[0]:
            self._beat = (count, now)
        return count > 0 and now - self._beat[1] <= 3 * self.heartbeat_interval_s

    def readiness(self) -> dict[str, tuple[bool, str]]:
        """``/readyz``: each check with a sentence an operator can act on."""
        error = self.ledger_error()
        return {
            "pbx": (self.pbx_connected(), "logged in" if self.pbx_connected() else
                    "not logged in to the PBX: check the PBX is up and the credentials in callguard.toml"),
            "ledger": (self.ledger_healthy(), "writable" if self.ledger_healthy() else
                       f"the database refuses writes ({error or 'unknown error'}); entries are queued"),
            "heartbeat": (self.heartbeat_fresh(), "fresh" if self.heartbeat_fresh() else
                          "the dialplan heartbeat is stale: calls take the fail-closed path (no recording)"),
        }


__all__ = ["ListenerProbe"]
