"""Run a :class:`~callguard.testing.scenario.Scenario` through the real engine, no PBX.

The engine, sessions, policy and prompts are the production ones; only the
PBX and the clock are simulated.  :class:`SimulatedPbx` answers each command
the way Asterisk or FreeSWITCH would (a notice that plays for its duration
and then times out, recordings confirmed after ``confirm_delay_ms``) and
:class:`VirtualScheduler` runs timers on a virtual clock, so a ten-minute
scenario takes milliseconds and always produces the same timeline.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field
from typing import Any, Callable

from callguard.core import commands as cmd
from callguard.core import events as ev
from callguard.core.policy import Policy
from callguard.core.prompts import PromptResolver
from callguard.core.session import SessionSettings
from callguard.runtime import Engine, LedgerSink, MemoryLedger
from callguard.testing.scenario import Scenario
from callguard.timeline import summarize

#: 2026-11-22 09:00:00 UTC: simulated calls are answered at this PBX time,
#: so timelines are reproducible to the microsecond.
BASE_EPOCH = 1795338000.0
CALLER_CHANNEL = "SIM/caller-00000001"
AGENT_CHANNEL = "SIM/agent-00000002"


class _Handle:
    __slots__ = ("cancelled",)

    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class VirtualScheduler:
    """``call_later`` on a virtual clock; :meth:`run` advances time."""

    def __init__(self, start: float = 0.0):
        self.now = start
        self._queue: list[tuple[float, int, _Handle, Callable[..., Any], tuple[Any, ...]]] = []
        self._seq = itertools.count()

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> _Handle:
        handle = _Handle()
        heapq.heappush(self._queue, (self.now + max(delay, 0.0), next(self._seq), handle, callback, args))
        return handle

    def call_at(self, when: float, callback: Callable[..., Any], *args: Any) -> _Handle:
        return self.call_later(when - self.now, callback, *args)

    def run(self, until: float | None = None) -> None:
        while self._queue and (until is None or self._queue[0][0] <= until):
            when, _, handle, callback, args = heapq.heappop(self._queue)
            if handle.cancelled:
                continue
            self.now = max(self.now, when)
            callback(*args)
        if until is not None:
            self.now = max(self.now, until)


@dataclass
class _Collect:
    timeout: _Handle
    digits: str = ""


class SimulatedPbx:
    """A PBX on the virtual clock that follows one scenario's script."""

    def __init__(self, scenario: Scenario, scheduler: VirtualScheduler, call_id: str):
        self.scenario = scenario
        self.scheduler = scheduler
        self.call_id = call_id
        self.engine: Engine | None = None
        self.collecting: dict[str, _Collect] = {}
        self.channels: dict[str, str] = {"caller": CALLER_CHANNEL, "agent": AGENT_CHANNEL}
        self.recording = False
        self.muted = False
        self.hung_up = False
        self.outcomes: dict[str, str] = {}
        self.trace: list[tuple[float, str]] = []
        self._agent_joined = False

    # -- engine -> PBX -------------------------------------------------------

    def execute(self, call_id: str, command: cmd.Command) -> None:
        if self.hung_up:
            self._later(0, ev.CommandFailed, type(command).__name__, "channel hung up")
            return
        delay = self.scenario.confirm_delay_s
        self._note(f"PBX <- {type(command).__name__}")
        if isinstance(command, cmd.PlayAndCollect):
            duration = command.prompt.duration_s or self.scenario.prompt_duration_s
            timeout = self.scheduler.call_later(duration + command.timeout_ms / 1000.0, self._timeout, command.channel)
            self.collecting[command.channel] = _Collect(timeout)
            self._later(delay, ev.NoticeStarted, command.channel)
        elif isinstance(command, cmd.StartRecording):
            self.recording = True
            self._later(delay, ev.RecordingStarted, command.file_name)
        elif isinstance(command, cmd.MuteRecording):
            if self.recording and self.scenario.confirm_mute:
                self.muted = True
                self._later(delay, ev.RecordingMuted)
        elif isinstance(command, cmd.UnmuteRecording):
            if self.recording:
                self.muted = False
                self._later(delay, ev.RecordingUnmuted)
        elif isinstance(command, cmd.StopRecording):
            if self.recording:
                self.recording = False
                self._later(delay, ev.RecordingStopped)
        elif isinstance(command, cmd.ContinueDialplan):
            self.outcomes[command.channel] = command.outcome
            if command.channel == CALLER_CHANNEL and self.scenario.agent and not self._agent_joined:
                self._agent_joined = True
                agent = ev.Party(AGENT_CHANNEL, self.scenario.agent.number, self.scenario.agent.name, "agent")
                self._later(delay * 2, ev.PartyJoined, agent, False)

    # -- script -> engine ------------------------------------------------------

    def start(self) -> None:
        caller = ev.Party(CALLER_CHANNEL, self.scenario.caller.number, self.scenario.caller.name or None, "caller")
        self._feed(ev.CallOffered(self._at(), self.call_id, CALLER_CHANNEL, (caller,)))
        for step in self.scenario.steps:
            self.scheduler.call_at(step.at, self._step, step)
        if not any(s.action == "hangup" and s.party == "caller" for s in self.scenario.steps):
            self.scheduler.call_at(self.scenario.duration + 30.0, self._hangup, "caller")

    def _step(self, step: Any) -> None:
        if self.hung_up:
            return
        self._note(f"script: {step.action} {step.value}" + (f" ({step.party})" if step.party != "caller" else ""))
        action = step.action
        if action == "press":
            self._press(self.channels.get(step.party, ""), step.value)
        elif action == "join":
            channel = f"SIM/join-{len(self.channels) - 1:08d}"
            self.channels[step.value] = channel
            self._feed(ev.PartyJoined(self._at(), ev.Party(channel, step.value, step.name or None, "joiner"),
                                      step.announceable))
        elif action == "leave":
            self._feed(ev.PartyLeft(self._at(), self.channels.get(step.value, step.value)))
        elif action == "hangup":
            self._hangup(step.party)
        else:
            source = {"hotkey": ev.Source.HOTKEY, "ivr": ev.Source.IVR, "api": ev.Source.API}[action]
            kind = {"pause": ev.PauseRequested, "resume": ev.ResumeRequested,
                    "payment-start": ev.PaymentStarted, "payment-end": ev.PaymentEnded}[step.value]
            self._feed(kind(self._at(), source))

    def _press(self, channel: str, digits: str) -> None:
        collect = self.collecting.pop(channel, None)
        if collect is None:
            self._note(f"digits {digits!r} on {channel or 'unknown party'} went to the call (no gather running)")
            return
        collect.timeout.cancel()
        self._feed(ev.DigitsCollected(self._at(), channel, digits[:1]))

    def _timeout(self, channel: str) -> None:
        if self.collecting.pop(channel, None) is not None:
            self._feed(ev.DigitsCollected(self._at(), channel, ""))

    def _hangup(self, party: str) -> None:
        channel = self.channels.get(party, party)
        if channel == CALLER_CHANNEL:
            if self.hung_up:
                return
            self.hung_up = True
            self.recording = False
        pending = self.collecting.pop(channel, None)
        if pending is not None:
            pending.timeout.cancel()
        self._feed(ev.HungUp(self._at(), "normal", channel))

    # -- plumbing ------------------------------------------------------------

    def _at(self) -> float:
        return BASE_EPOCH + self.scheduler.now

    def _feed(self, event: ev.Event) -> None:
        assert self.engine is not None
        self.engine.feed(self.call_id, event)

    def _later(self, delay: float, kind: Callable[..., ev.Event], *args: Any) -> None:
        self.scheduler.call_later(delay, lambda: None if self.hung_up else self._feed(kind(self._at(), *args)))

    def _note(self, text: str) -> None:
        self.trace.append((self.scheduler.now, text))


@dataclass
class SimulationResult:
    """What a simulated call left behind, plus the facts ``[expect]`` checks."""

    scenario: Scenario
    call_id: str
    entries: list[cmd.LedgerEntry]
    trace: list[tuple[float, str]]
    facts: dict[str, Any] = field(default_factory=dict)

    def failed_expectations(self) -> list[str]:
        out = []
        for key, wanted in self.scenario.expect.items():
            got = self.facts.get(key)
            if got != wanted:
                out.append(f"expected {key} = {wanted!r}, got {got!r}")
        return out


def simulate(scenario: Scenario, settings: SessionSettings, policy: Policy, prompts: PromptResolver,
             ledger: LedgerSink | None = None, call_id: str | None = None) -> SimulationResult:
    """Play ``scenario`` through a real :class:`Engine` on a virtual clock."""
    scheduler = VirtualScheduler()
    memory = MemoryLedger()
    sink: LedgerSink = memory if ledger is None else _Tee(memory, ledger)
    call_id = call_id or f"sim-{_slug(scenario.name)}"
    pbx = SimulatedPbx(scenario, scheduler, call_id)
    engine = Engine(settings, policy, prompts, sink, pbx, scheduler, clock=lambda: BASE_EPOCH + scheduler.now)
    pbx.engine = engine
    pbx.start()
    scheduler.run()
    entries = memory.for_call(call_id)
    return SimulationResult(scenario, call_id, entries, pbx.trace, summarize(entries))


class _Tee:
    def __init__(self, *sinks: LedgerSink):
        self.sinks = sinks

    def append(self, entry: cmd.LedgerEntry, received_at: float) -> None:
        for sink in self.sinks:
            sink.append(entry, received_at)


def _slug(text: str) -> str:
    out = "".join(ch if ch.isalnum() else "-" for ch in text.lower()).strip("-")
    return "-".join(filter(None, out.split("-")))[:40] or "call"
