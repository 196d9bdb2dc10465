"""Helpers to drive a CallSession into any state for table tests."""

from __future__ import annotations

import pytest

from callguard.core import events as ev
from callguard.core.policy import Policy
from callguard.core.prompts import StaticPrompts
from callguard.core.session import CallSession, SessionSettings

CALLER = "PJSIP/caller-0001"
JOINER = "PJSIP/joiner-0002"
CA_NUMBER = "+14155550123"  # California: all-party
NY_NUMBER = "+12125550123"  # New York: one-party
FL_NUMBER = "+13055550100"  # Florida: all-party


class Driver:
    """Feeds events at increasing PBX times and keeps every command."""

    def __init__(self, number: str = CA_NUMBER, settings: SessionSettings | None = None,
                 policy: Policy | None = None, prompts: StaticPrompts | None = None):
        self.session = CallSession("1795372922.4", settings or SessionSettings(),
                                   policy or Policy(home="US-TX"), prompts or StaticPrompts(("en", "es", "fr")))
        self.number = number
        self.t = 1_795_372_922.0
        self.commands: list = []

    def feed(self, event_type, *args, dt: float = 0.1, **kwargs):
        self.t += dt
        out = self.session.handle(event_type(self.t, *args, **kwargs))
        self.commands.extend(out)
        return out

    @property
    def state(self) -> str:
        return self.session.state.value

    def entries(self, kind: str | None = None):
        from callguard.core.commands import LedgerEntry

        return [c for c in self.commands if isinstance(c, LedgerEntry) and (kind is None or c.kind == kind)]

    # -- reach states ---------------------------------------------------------

    def offered(self, answered: bool = False) -> "Driver":
        self.feed(ev.CallOffered, "1795372922.4", CALLER, (ev.Party(CALLER, self.number, "José"),), answered)
        return self

    def notice(self) -> "Driver":
        return self.offered(answered=True)

    def starting(self) -> "Driver":
        self.notice().feed(ev.DigitsCollected, CALLER, "1")
        return self

    def recording(self) -> "Driver":
        self.starting().feed(ev.RecordingStarted, "0x1")
        return self

    def muting(self) -> "Driver":
        self.recording().feed(ev.PauseRequested, ev.Source.HOTKEY)
        return self

    def muted(self) -> "Driver":
        self.muting().feed(ev.RecordingMuted)
        return self

    def unmuting(self) -> "Driver":
        self.muted().feed(ev.ResumeRequested, ev.Source.HOTKEY)
        return self

    def unrecorded(self) -> "Driver":
        self.notice().feed(ev.DigitsCollected, CALLER, "2")
        return self


@pytest.fixture
def driver() -> Driver:
    return Driver()
