"""A listener under the election: act only while holding the lease, adopt on every activation.

The listener side is small on purpose (:class:`Acting`): the same three
steps serve a restart after a crash and a takeover from another node, so
high availability reuses the restart path instead of inventing a second
way to pick up live calls.

* :meth:`Acting.start` connects to the PBX and *adopts* every live call it
  finds there (state from the ledger and the PBX's channel list), re-asserts
  the mute of paused calls and payments, and writes the adoption to the
  ledger; then it acts as usual.
* :meth:`Acting.abandon` stops acting at once, without releasing channels or
  stopping recordings: another node is about to adopt them, and a paused
  recording must stay muted on the PBX meanwhile.
* :meth:`Acting.stop` is the graceful shutdown of a node that still holds
  the lease.

A standby builds nothing until it is elected; while it waits it proves the
database is reachable every poll (the lease renewal) and reports itself
ready-as-standby.  Every term is logged and written to the ledger
(``ha-term-started`` / ``ha-term-ended``) under the call id ``ha:<scope>``,
so the evidence says who took over from whom and when.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from callguard.core.commands import LedgerEntry
from callguard.ha.election import Activated, Change, Deactivated
from callguard.ha.node import HaNode

log = logging.getLogger("callguard.ha")


class Acting(Protocol):
    """What a listener offers the election (see the module docstring)."""

    async def start(self) -> None: ...

    async def abandon(self) -> None: ...

    async def stop(self) -> None: ...


class LedgerAppend(Protocol):
    def append(self, entry: LedgerEntry, received_at: float) -> None: ...


@dataclass(frozen=True, slots=True)
class Term:
    """One period during which this node holds the lease.

    ``may_act`` must be checked by the listener before every write to the
    PBX (one comparison of the monotonic clock with the lease deadline): it
    turns false on time even when the event loop was stalled past the
    fence, which a timer alone cannot guarantee.
    """

    node_id: str
    scope: str
    epoch: int
    previous_holder: str | None
    may_act: Callable[[], bool]


class ElectedService:
    """Runs ``build(term)`` -> :class:`Acting` for each term this node wins, until ``stop``."""

    def __init__(self, node: HaNode, build: Callable[[Term], Awaitable[Acting]], ledger: LedgerAppend,
                 *, clock: Callable[[], float] = time.time) -> None:
        self.node = node
        self._build = build
        self._ledger = ledger
        self._clock = clock
        self.acting: Acting | None = None
        self.term: Term | None = None
        self.terms_started = 0

    @property
    def call_id(self) -> str:
        return f"ha:{self.node.lease.scope}"

    async def on_change(self, change: Change) -> None:
        """HaNode's callback: one role change at a time, in order."""
        if isinstance(change, Activated):
            await self._activate(change)
        elif isinstance(change, Deactivated):
            await self._deactivate(change.reason)

    async def _activate(self, change: Activated) -> None:
        if self.acting is not None:  # a resumed term after a local fence: start over cleanly
            await self._deactivate("term resumed; adopting again")
        term = Term(self.node.node_id, self.node.lease.scope, change.epoch, change.previous_holder,
                    self.node.may_act)
        began = time.monotonic()
        self._write("ha-term-started", node=term.node_id, epoch=term.epoch,
                    previous_holder=term.previous_holder, resumed=change.resumed)
        try:
            acting = await self._build(term)
            await acting.start()
        except Exception as exc:  # noqa: BLE001 - give the lease up rather than hold it doing nothing
            log.error("ha: %s could not start acting in term %d (%s); giving the lease up", term.node_id,
                      term.epoch, exc)
            self._write("ha-term-ended", node=term.node_id, epoch=term.epoch, reason=f"start failed: {exc}")
            await self.node.relinquish()
            return
        self.acting, self.term = acting, term
        self.terms_started += 1
        log.warning("ha: %s acting for %r in term %d (took over from %s in %.2f s)", term.node_id, term.scope,
                    term.epoch, term.previous_holder or "nobody", time.monotonic() - began)

    async def _deactivate(self, reason: str) -> None:
        acting, term = self.acting, self.term
        self.acting = self.term = None
        if acting is None or term is None:
            return
        with contextlib.suppress(Exception):
            await acting.abandon()
        self._write("ha-term-ended", node=term.node_id, epoch=term.epoch, reason=reason)

    async def stop(self) -> None:
        """Graceful: stop acting as a holder does, then give the lease up."""
        acting, term = self.acting, self.term
        self.acting = self.term = None
        if acting is not None and term is not None:
            await acting.stop()
            self._write("ha-term-ended", node=term.node_id, epoch=term.epoch, reason="stopped")
        await self.node.stop()

    def _write(self, kind: str, **data: object) -> None:
        now = self._clock()
        try:
            self._ledger.append(LedgerEntry(self.call_id, kind, now, dict(data)), now)
        except Exception as exc:  # noqa: BLE001 - the ledger says why on its own; never stop acting for it
            log.error("ha: could not write %s to the ledger: %s", kind, exc)
