"""Running the election: lease renewals on a thread, decisions on the event loop.

The database calls block (and on a partition may hang for a long time), so
they run on their own thread; every answer is handed to the event loop,
where the :class:`~callguard.ha.election.Election` lives and where the
listener acts.  The fence does not depend on any answer arriving: a timer
on the loop fires at the deadline, and :meth:`HaNode.may_act` compares the
monotonic clock with the deadline, so the listener can check it before
every PBX action (one comparison) even if the loop was stalled past the
timer.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable

from callguard.ha.election import Activated, Change, Deactivated, Election, LeaseView
from callguard.ha.lease import PgLease
from callguard.ha.settings import HaConfig

log = logging.getLogger("callguard.ha")

OnChange = Callable[[Change], Awaitable[None] | None]


def default_node_id() -> str:
    return f"{os.uname().nodename}:{os.getpid()}"


class HaNode:
    """One listener's membership in the election for its PBX."""

    def __init__(self, settings: HaConfig, lease: PgLease, on_change: OnChange,
                 *, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.lease = lease
        self.node_id = lease.node_id
        self.election = Election(lease.node_id, ttl_s=settings.lease_ttl_s, margin_s=settings.safety_margin_s)
        self._on_change = on_change
        self._clock = clock
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._fence: asyncio.TimerHandle | None = None
        self._changes: asyncio.Queue[Change] = asyncio.Queue()
        self._dispatcher: asyncio.Task[None] | None = None
        self.last_error: str | None = None
        #: after giving the lease up on purpose, do not take it back before this (monotonic) time
        self._cooldown_until = float("-inf")

    # -- what the listener asks -------------------------------------------------

    def may_act(self) -> bool:
        """May this node send anything to the PBX right now?"""
        return self.election.may_act(self._clock())

    @property
    def active(self) -> bool:
        return self.may_act()

    # -- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._dispatcher = asyncio.create_task(self._dispatch(), name="callguard-ha-dispatch")
        self._thread = threading.Thread(target=self._renew_loop, name=f"callguard-ha[{self.node_id}]", daemon=True)
        self._thread.start()
        log.info("ha: %s joined the election for %r (lease %.2fs)", self.node_id, self.lease.scope,
                 self.settings.lease_ttl_s)

    async def stop(self) -> None:
        """Give the lease up so a standby takes over at once, then stop renewing."""
        self._stop.set()
        epoch = self.election.epoch
        was_active = self.may_act()
        self._apply(self.election.released())
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, self.settings.lease_ttl_s + 1)
        if was_active:
            try:
                await asyncio.to_thread(self.lease.release, epoch)
            except Exception as exc:  # noqa: BLE001 - the lease expires on its own
                log.warning("ha: could not release the lease (%s); a standby takes over when it expires", exc)
        if self._dispatcher is not None:
            await self._changes.join()
            self._dispatcher.cancel()
        if self._fence is not None:
            self._fence.cancel()
        self.lease.close()

    async def relinquish(self) -> None:
        """Give the lease up now and stay out for two lease periods (this node cannot act; let another)."""
        epoch = self.election.epoch
        self._cooldown_until = self._clock() + 2 * self.settings.lease_ttl_s
        self._apply(self.election.released())
        try:
            await asyncio.to_thread(self.lease.release, epoch)
        except Exception as exc:  # noqa: BLE001 - it expires on its own
            log.warning("ha: could not release the lease (%s); it expires in %.1f s", exc, self.settings.lease_ttl_s)

    # -- the renewal thread ------------------------------------------------------------

    def _renew_loop(self) -> None:
        while not self._stop.is_set():
            if self._clock() < self._cooldown_until:
                self._stop.wait(self.settings.poll_interval_s)
                continue
            sent_at = self._clock()
            try:
                granted, view = self.lease.try_acquire()
            except Exception as exc:  # noqa: BLE001 - any database failure means "not renewed"
                self._post(self._failed, str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
            else:
                self._post(self._answered, sent_at, granted, view)
            interval = self.settings.renew_interval_s if self.election.role.value == "active" \
                else self.settings.poll_interval_s
            self._stop.wait(interval)

    def _post(self, fn: Callable[..., None], *args: object) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(fn, *args)
            except RuntimeError:  # loop closing
                pass

    # -- on the event loop ----------------------------------------------------------------

    def _answered(self, sent_at: float, granted: bool, view: LeaseView | None) -> None:
        if self._stop.is_set():
            return
        self.last_error = None
        now = self._clock()
        changes = self.election.granted(sent_at, view, now) if granted and view is not None \
            else self.election.refused(view, now)
        self._apply(changes)

    def _failed(self, error: str) -> None:
        if self.last_error != error:
            log.warning("ha: lease renewal failed: %s", error)
        self.last_error = error
        self._apply(self.election.failed(self._clock()))

    def _tick(self) -> None:
        self._fence = None
        self._apply(self.election.tick(self._clock()))

    def _apply(self, changes: list[Change]) -> None:
        for change in changes:
            if isinstance(change, Activated):
                log.warning("ha: %s is now ACTIVE for %r (term %d, after %s)", self.node_id, self.lease.scope,
                            change.epoch, change.previous_holder or "nobody")
            elif isinstance(change, Deactivated):
                log.warning("ha: %s stops acting for %r (term %d): %s", self.node_id, self.lease.scope,
                            change.epoch, change.reason)
            self._changes.put_nowait(change)
        self._arm_fence()

    def _arm_fence(self) -> None:
        if self._fence is not None:
            self._fence.cancel()
            self._fence = None
        if self._loop is not None and self.election.role.value == "active":
            delay = max(0.0, self.election.active_until - self._clock())
            self._fence = self._loop.call_later(delay, self._tick)

    async def _dispatch(self) -> None:
        """Carry out role changes one at a time, in order (adoption may take a while)."""
        while True:
            change = await self._changes.get()
            try:
                result = self._on_change(change)
                if asyncio.iscoroutine(result):
                    await result
            except Exception:  # noqa: BLE001 - a failed adoption must not stop the election
                log.exception("ha: handling %s failed", change)
            finally:
                self._changes.task_done()
