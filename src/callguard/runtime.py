"""The engine: call sessions wired to a PBX driver, a ledger and timers.

Adapters own the wire; the engine owns the calls.  An adapter calls
:meth:`Engine.feed` with a core event; the engine runs the call's
:class:`~callguard.core.session.CallSession` and dispatches what comes out:

* PBX commands go to :meth:`PbxDriver.execute` *synchronously*, in order.
  The driver writes the wire action into its transport buffer right away,
  so the time from a hotkey event to the mute action leaving the socket is
  one function call, not a trip through a queue.
* Ledger entries go to :meth:`LedgerSink.append`, which must not block
  (the real ledger batches commits on its own thread).
* Timers go to a scheduler with asyncio's ``call_later`` signature: the
  running event loop in production, a virtual clock in the simulator.

Timer events carry PBX time: the engine tracks the offset between the
PBX clock (``event.at``) and its own clock, so offsets in the evidence stay
on one time base.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from callguard.core import commands as cmd
from callguard.core import events as ev
from callguard.core.policy import Policy
from callguard.core.prompts import PromptResolver
from callguard.core.session import CallSession, SessionSettings

log = logging.getLogger("callguard.engine")

#: The least time a deadline counted from a (late) signal still leaves after dispatch.
LATE_SIGNAL_FLOOR_S = 0.1
#: How long the most punctual PBX-clock offset is trusted before a later one replaces it.
SKEW_WINDOW_S = 30.0
#: How many finished call ids to remember so late events are not mistaken
#: for new calls.
_FINISHED_MEMORY = 4096


class PbxDriver(Protocol):
    """The adapter side: performs PBX commands, reports back via ``feed``."""

    def execute(self, call_id: str, command: cmd.Command) -> None: ...


class LedgerSink(Protocol):
    """Where ledger entries go; ``append`` must return without waiting on I/O."""

    def append(self, entry: cmd.LedgerEntry, received_at: float) -> None: ...


class TimerHandle(Protocol):
    def cancel(self) -> None: ...


class Scheduler(Protocol):
    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> TimerHandle: ...


class MemoryLedger:
    """A ledger sink that keeps entries in a list (simulator, tests, demos)."""

    def __init__(self) -> None:
        self.entries: list[tuple[cmd.LedgerEntry, float]] = []

    def append(self, entry: cmd.LedgerEntry, received_at: float) -> None:
        self.entries.append((entry, received_at))

    def for_call(self, call_id: str) -> list[cmd.LedgerEntry]:
        return [e for e, _ in self.entries if e.call_id == call_id]


@dataclass
class EngineStats:
    """Counters an operator can look at (``callguard run`` logs them)."""

    calls_started: int = 0
    calls_finished: int = 0
    events: int = 0
    ignored_events: int = 0
    commands: int = 0
    driver_errors: int = 0
    by_outcome: dict[str, int] = field(default_factory=dict)


class Engine:
    """All live calls of one listener."""

    def __init__(self, settings: SessionSettings, policy: Policy, prompts: PromptResolver,
                 ledger: LedgerSink, driver: PbxDriver, scheduler: Scheduler,
                 clock: Callable[[], float] = time.time):
        self.settings = settings
        self.policy = policy
        self.prompts = prompts
        self.ledger = ledger
        self.driver = driver
        self.scheduler = scheduler
        self.clock = clock
        self.sessions: dict[str, CallSession] = {}
        self.stats = EngineStats()
        self._timers: dict[str, dict[str, TimerHandle]] = {}
        self._finished: OrderedDict[str, None] = OrderedDict()
        self._skew = float("-inf")
        self._skew_at = float("-inf")
        #: Called with every ledger entry right after it is handed to the
        #: ledger, on the engine's thread, with the session already in its
        #: new state: the web console's live view (callguard.control) rides
        #: on this instead of polling.  An observer must not block or raise.
        self.observers: list[Callable[[cmd.LedgerEntry], None]] = []
        #: set by :meth:`close`: events are ignored, no timer is armed
        self.closed = False

    # -- queries -------------------------------------------------------------

    def session(self, call_id: str) -> CallSession | None:
        return self.sessions.get(call_id)

    def active_calls(self) -> list[str]:
        return list(self.sessions)

    def pbx_now(self) -> float:
        """Our best estimate of the PBX clock now."""
        return self.clock() + (self._skew if self._skew != float("-inf") else 0.0)

    def _track_skew(self, skew: float, received: float) -> None:
        """PBX clock minus ours, from the most punctual recent event.

        An event can only arrive late, never early, so the largest
        ``at - received`` seen is the closest to the true offset; one read
        after a stall would otherwise set the PBX clock seconds back and a
        deadline counted from a signal would wrongly look young.  Refreshed
        every ``SKEW_WINDOW_S`` so clock drift is still followed.
        """
        if skew >= self._skew or received - self._skew_at > SKEW_WINDOW_S:
            self._skew, self._skew_at = skew, received

    # -- the entry point -------------------------------------------------------

    def feed(self, call_id: str, event: ev.Event) -> None:
        """Run one event through its call's session and dispatch the result."""
        if self.closed:
            return
        self.stats.events += 1
        received = self.clock()
        if not isinstance(event, ev.TimerFired):
            self._track_skew(event.at - received, received)
        session = self.sessions.get(call_id)
        if session is None:
            if not isinstance(event, (ev.CallOffered, ev.CallAdopted)) or call_id in self._finished:
                self.stats.ignored_events += 1
                return
            session = CallSession(call_id, self.settings, self.policy, self.prompts)
            self.sessions[call_id] = session
            self.stats.calls_started += 1
        for command in session.handle(event):
            self._dispatch(call_id, command, received)
        if session.finished:
            self._forget(call_id)

    # -- dispatch --------------------------------------------------------------

    def _dispatch(self, call_id: str, command: cmd.Command, received: float) -> None:
        self.stats.commands += 1
        if isinstance(command, cmd.LedgerEntry):
            if command.kind == "continued" or (command.kind == "consent" and command.data.get("final")):
                outcome = str(command.data.get("outcome") or command.data.get("decision"))
                self.stats.by_outcome[outcome] = self.stats.by_outcome.get(outcome, 0) + 1
            self.ledger.append(command, received)
            for observe in self.observers:
                try:
                    observe(command)
                except Exception:  # a broken observer must never cost a call its evidence
                    log.exception("call %s: observer failed on %s", call_id, command.kind)
        elif isinstance(command, cmd.StartTimer):
            self._cancel(call_id, command.name)
            delay = command.seconds
            if command.since is not None:  # a deadline counted from the signal, not from now ...
                # ... but a signal seen late (a stalled listener) still gets one round trip to the PBX.
                delay = max(LATE_SIGNAL_FLOOR_S, command.seconds - max(0.0, self.pbx_now() - command.since))
            self._timers.setdefault(call_id, {})[command.name] = self.scheduler.call_later(
                delay, self._fire, call_id, command.name)
        elif isinstance(command, cmd.CancelTimer):
            self._cancel(call_id, command.name)
        else:
            try:
                self.driver.execute(call_id, command)
            except Exception as exc:  # the driver failed to even send it
                self.stats.driver_errors += 1
                log.error("call %s: %s could not be sent: %s", call_id, type(command).__name__, exc)
                failure = ev.CommandFailed(self.pbx_now(), type(command).__name__, f"not sent: {exc}")
                self.scheduler.call_later(0, self.feed, call_id, failure)

    def close(self) -> None:
        """Stop every timer and take no more events (the listener is gone: a timer firing
        after the ledger closed would only fail)."""
        self.closed = True
        for timers in self._timers.values():
            for handle in timers.values():
                handle.cancel()
        self._timers.clear()

    def _fire(self, call_id: str, name: str) -> None:
        self._timers.get(call_id, {}).pop(name, None)
        self.feed(call_id, ev.TimerFired(self.pbx_now(), name))

    def _cancel(self, call_id: str, name: str) -> None:
        handle = self._timers.get(call_id, {}).pop(name, None)
        if handle is not None:
            handle.cancel()

    def _forget(self, call_id: str) -> None:
        self.sessions.pop(call_id, None)
        self.stats.calls_finished += 1
        for handle in self._timers.pop(call_id, {}).values():
            handle.cancel()
        self._finished[call_id] = None
        while len(self._finished) > _FINISHED_MEMORY:
            self._finished.popitem(last=False)
