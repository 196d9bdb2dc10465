"""Asterisk targets for the scripted acceptance scenarios: the fake (CI) and a real Asterisk 22.

The fake is :class:`~callguard.testing.FakeAsterisk` on a real port, the
real listener and engine in this process (as ``callguard run asterisk``
wires them, :func:`~callguard.adapters.asterisk.runner.start_listener`) and
a real SQLite ledger; the scenario plays on the fake's clock, compressed by
``TIME_SCALE`` (evidence times stay in script seconds).  A real Asterisk is
driven over AMI by :mod:`.asterisk_real`.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from callguard.adapters.asterisk.runner import start_listener
from callguard.config import parse_config
from callguard.core.prompts import StaticPrompts
from callguard.ledger import Ledger
from callguard.ledger.queries import timeline
from callguard.testing.fake_asterisk import FakeAsterisk, FakeCall, FakeRecording
from callguard.testing.scenario import Scenario

from .pbx import Played

SECRET = "acceptance-secret"
TIME_SCALE = 0.25


def spans_since_answer(recording: FakeRecording, answered: float, end: float) -> list[tuple[float, float]]:
    """The recording's audible spans, seconds after the call was answered (the fake's mute history)."""
    stop = recording.stopped_at if recording.stopped_at is not None else end
    spans, since = [], None
    points = sorted(recording.changes) + [(stop, True)]
    for when, muted in points:
        when = min(when, stop)
        if not muted and since is None:
            since = when
        elif muted and since is not None:
            spans.append((since - answered, when - answered))
            since = None
    return [(a, b) for a, b in spans if b > a]


class FakeAsteriskTarget:
    """FakeAsterisk on real sockets, the real listener in process (what CI runs)."""

    name = "fake-asterisk"
    #: the listener's round trip from a hotkey to the PBX's mute (real clock, not a virtual one)
    slack_s = 0.05

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self._n = 0

    def supports(self, scenario: Scenario) -> str | None:
        return None

    async def play(self, scenario: Scenario) -> Played:
        self._n += 1
        async with FakeAsterisk(secret=SECRET, timestamps=True, time_scale=TIME_SCALE) as fake:
            config = parse_config({
                "listener": {"chain_id": "asterisk@acceptance"},
                "asterisk": {"port": fake.port, "secret": SECRET, "heartbeat_interval_s": 0.2,
                             "reconnect_min_s": 0.05, "reconnect_max_s": 0.5},
                "recording": {"confirm_timeout_ms": 3000, "start_timeout_ms": 5000},
                "policy": {"home": "US-NY"},
                "vault": {"ingest_on_stop": False},
            }, "<acceptance>", environ={})
            ledger = Ledger.open(f"sqlite:///{self.tmp}/asterisk-{self._n}.sqlite", "asterisk@acceptance",
                                 batch_wait_ms=0.5)
            prompts = StaticPrompts(("en", "es", "fr"), durations={"notice": scenario.prompt_duration_s})
            running = await start_listener(config, ledger, prompts=prompts)
            try:
                while not fake.heartbeat_fresh():
                    await asyncio.sleep(0.01)
                call: FakeCall = await fake.play(scenario, tail_s=1.0, timeout=120)
                while call.linkedid in running.engine.sessions:
                    await asyncio.sleep(0.01)
                end = fake.now()
            finally:
                await running.stop()
            assert ledger.flush(10)
            rows = timeline(ledger.engine, call.linkedid)
            ledger.close(5)
        answered = call.answered_at or 0.0
        audible = [span for r in call.recordings for span in spans_since_answer(r, answered, end)]
        return Played(call.linkedid, rows, audible, bool(call.recordings), call.outcome or "", {"call": call})


def targets(tmp: Path, environ: dict[str, Any]) -> list[Any]:
    """The Asterisk target chosen by the environment (see conftest.py)."""
    if environ.get("CALLGUARD_ACCEPTANCE_ASTERISK"):
        from .asterisk_real import RealAsteriskTarget
        return [RealAsteriskTarget.from_environment(tmp, environ)]
    return [FakeAsteriskTarget(tmp)]
