"""FreeSWITCH targets for the acceptance suite: the fake (CI) and a real FreeSWITCH 1.10.

Both run the real listener (:class:`FreeSwitchListener`) in this process
with a real SQLite ledger.  The fake plays a scenario on its virtual clock;
a real FreeSWITCH plays it in real time, driven over its event socket:

* the caller is ``originate ... loopback/cg_in/callguard-test
  &endless_playback(tone_stream://...)`` (the test context in
  ``freeswitch/callguard_test.xml``: answer, ``callguard_inbound``, then a
  staff agent dialled the way dialplan/README.md shows), or ``cg_solo``
  when the scenario has no agent;
* the caller's keys: ``uuid_recv_dtmf <recorded leg> <digits>``;
* the agent's hotkeys: ``uuid_recv_dtmf <agent leg> ~*6`` / ``~*7`` (``~``:
  loopback's own DTMF skips meta bindings otherwise, DESIGN.md);
* IVR payment signals: ``uuid_broadcast <recorded leg>
  execute_extension::cg_pay_start`` / ``cg_pay_end``;
* the caller hangs up: ``uuid_kill`` on the originating leg.

The recording is the WAV FreeSWITCH wrote; its audible spans are measured
in 20 ms frames (a masked span is exact digital silence).

Set-up for a real one (once): copy ``dialplan/freeswitch/callguard.xml``,
``callguard_features.xml`` and ``tests/acceptance/freeswitch/callguard_test.xml``
to ``conf/dialplan/``, put the prompts (any short WAVs will do) under
``$${sounds_dir}/en/callguard/`` and ``.../en/callguard/8000/``, ``reloadxml``.
"""

from __future__ import annotations

import asyncio
import time
import wave
from array import array
from pathlib import Path
from typing import Any

from callguard.adapters.freeswitch.commands import directory_prompts
from callguard.adapters.freeswitch.inbound import InboundProtocol, open_inbound
from callguard.adapters.freeswitch.listener import FreeSwitchListener
from callguard.adapters.freeswitch.wire import api
from callguard.config import Config, parse_config
from callguard.core.prompts import StaticPrompts
from callguard.ledger import Ledger
from callguard.ledger.queries import timeline
from callguard.testing.fake_freeswitch import FakeFreeSWITCH
from callguard.testing.scenario import Scenario

from .pbx import Played

RECORDINGS = "/var/lib/freeswitch/recordings/callguard"
SOUNDS = "/usr/share/freeswitch/sounds"
FRAME_S = 0.02


def listener_config(host: str, port: int, password: str, listen_port: int) -> Config:
    return parse_config({
        "listener": {"pbx": "freeswitch", "chain_id": "freeswitch@acceptance"},
        "freeswitch": {"host": host, "port": port, "password": password, "listen_port": listen_port,
                       "heartbeat_interval_s": 1.0, "reconnect_min_s": 0.05, "reconnect_max_s": 0.5,
                       "recording_dir": RECORDINGS},
        "recording": {"confirm_timeout_ms": 3000, "start_timeout_ms": 5000},
        "policy": {"home": "US-NY"},
        "vault": {"ingest_on_stop": False},
    }, "<acceptance>", environ={})


class FakeFreeSwitchTarget:
    """The fake FreeSWITCH on real sockets, virtual clock (what CI runs)."""

    name = "fake-freeswitch"
    slack_s = 0.0

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self._n = 0

    def supports(self, scenario: Scenario) -> str | None:
        return None

    async def play(self, scenario: Scenario) -> Played:
        self._n += 1
        password = "acceptance"
        async with FakeFreeSWITCH(password=password) as fake:
            fake.apply_knobs(scenario)
            ledger = Ledger.open(f"sqlite:///{self.tmp}/fake-{self._n}.sqlite", "freeswitch@acceptance",
                                 batch_wait_ms=0.5)
            listener = FreeSwitchListener(listener_config(fake.host, fake.port, password, 0), ledger,
                                          prompts=StaticPrompts(("en", "es", "fr")),
                                          prompt_path=directory_prompts(SOUNDS))
            try:
                await listener.start()
                fake.watch(listener.busy)
                fake.socket_address = ("127.0.0.1", listener.outbound_port or 0)
                await asyncio.wait_for(listener.connected.wait(), 10)
                record = await asyncio.wait_for(fake.play(scenario), 120)
                await fake.settle()
                end = record.ended_at or fake.scenario_time()
            finally:
                await listener.stop()
            assert ledger.flush(10)
            rows = timeline(ledger.engine, record.call_id)
            ledger.close(5)
        spans = record.recordings[0].audible_spans(end) if record.recordings else []
        return Played(record.call_id, rows, [(a, b) for a, b in spans if b > a], bool(record.recordings),
                      record.decision, {"record": record})


class RealFreeSwitchTarget:
    """A real FreeSWITCH (``CALLGUARD_ACCEPTANCE_FREESWITCH=host:port``), played in real time."""

    name = "freeswitch"
    slack_s = 0.35

    def __init__(self, tmp: Path, host: str, port: int, password: str, listen_port: int = 8084):
        self.tmp, self.host, self.port, self.password, self.listen_port = tmp, host, port, password, listen_port
        self._n = 0

    def supports(self, scenario: Scenario) -> str | None:
        for step in scenario.steps:
            if step.action in ("join", "leave", "api"):
                return f"'{step.action}' steps are not driven on a real FreeSWITCH by this suite yet"
            if step.action == "press" and step.party not in ("caller",):
                return "only the caller's keys are driven on a real FreeSWITCH"
        if scenario.caller.number and any(c in scenario.caller.number for c in " \r\n,{}'"):
            return "an originate command line cannot carry this caller id"
        return None

    async def _api(self, esl: InboundProtocol, command: str) -> str:
        reply = await asyncio.wait_for(esl.send(api(command), "api"), 10)
        return reply.text.strip()

    async def play(self, scenario: Scenario) -> Played:
        self._n += 1
        ledger = Ledger.open(f"sqlite:///{self.tmp}/real-{self._n}.sqlite", "freeswitch@acceptance",
                             batch_wait_ms=0.5)
        listener = FreeSwitchListener(listener_config(self.host, self.port, self.password, self.listen_port),
                                      ledger, prompts=StaticPrompts(("en", "es", "fr")),
                                      prompt_path=directory_prompts(SOUNDS))
        esl = await open_inbound(self.host, self.port, self.password, lambda event, at: None,
                                 events=["HEARTBEAT"], custom=[], timeout=10)
        try:
            waited = await port_free(self.listen_port, 10.0)
            played_extra = {"waited_for_port_s": round(waited, 3)}
            await listener.start()
            await asyncio.wait_for(listener.connected.wait(), 10)
            call_id, a_leg, answered = await self._originate(esl, listener, scenario)
            await self._script(esl, listener, scenario, call_id, a_leg, answered)
            await self._api(esl, f"uuid_kill {a_leg}")
            deadline = time.monotonic() + 10
            while call_id in listener.calls and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        finally:
            await listener.stop()
            esl.close()
        assert ledger.flush(10)
        rows = timeline(ledger.engine, call_id)
        ledger.close(5)
        played = Played(call_id, rows, extra=played_extra)
        started = [e for e in rows if e.kind == "recording-started"]
        path = Path(RECORDINGS) / f"callguard-{call_id}.wav"
        if started and path.exists():
            played.recorded = True
            offset = float(started[0].data.get("offset_s") or 0.0)
            played.audible = [(a + offset, b + offset) for a, b in audible_spans(path)]
        return played

    async def _originate(self, esl: InboundProtocol, listener: FreeSwitchListener,
                         scenario: Scenario) -> tuple[str, str, float]:
        before = set(listener.calls)
        exten = "cg_in" if scenario.agent is not None else "cg_solo"
        number = scenario.caller.number
        name = (scenario.caller.name or "Caller").replace(" ", "_")
        reply = await self._api(esl, f"originate {{origination_caller_id_number={number},"
                                     f"origination_caller_id_name={name}}}loopback/{exten}/callguard-test "
                                     f"&endless_playback(tone_stream://%(1000,0,440))")
        answered = time.monotonic()
        if not reply.startswith("+OK "):
            raise AssertionError(f"originate failed: {reply}")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            new = set(listener.calls) - before
            if new:
                return new.pop(), reply[4:].strip(), answered
            await asyncio.sleep(0.01)
        raise AssertionError("the call never reached the listener (is callguard_test.xml installed?)")

    async def _script(self, esl: InboundProtocol, listener: FreeSwitchListener, scenario: Scenario,
                      call_id: str, a_leg: str, answered: float) -> None:
        for step in scenario.steps:
            delay = answered + step.at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if step.action == "press":
                await self._api(esl, f"uuid_recv_dtmf {call_id} {step.value}")
            elif step.action == "hotkey":
                legs = listener.legs.calls.get(call_id)
                staff = sorted(legs.staff) if legs is not None else []
                if staff:
                    await self._api(esl, f"uuid_recv_dtmf {staff[0]} ~*{6 if step.value == 'pause' else 7}")
            elif step.action == "ivr":
                exten = "cg_pay_start" if step.value == "payment-start" else "cg_pay_end"
                if step.value in ("payment-start", "payment-end"):
                    await self._api(esl, f"uuid_broadcast {call_id} execute_extension::{exten} aleg")
            elif step.action == "hangup":
                await self._api(esl, f"uuid_kill {a_leg}")
                return


async def port_free(port: int, timeout: float) -> float:
    """Wait until nothing listens on 127.0.0.1:``port`` (the previous listener has let go); seconds waited."""
    import socket

    start = time.monotonic()
    while True:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) != 0:
                return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError(f"127.0.0.1:{port} is still taken after {timeout:g} s (another listener?)")
        await asyncio.sleep(0.05)


def audible_spans(path: Path) -> list[tuple[float, float]]:
    """Spans (seconds from the file's start) whose 20 ms frames hold any non-zero sample."""
    with wave.open(str(path), "rb") as wav:
        rate, channels, width = wav.getframerate(), wav.getnchannels(), wav.getsampwidth()
        assert width == 2, f"{path}: {8 * width}-bit samples, expected 16-bit"
        samples = array("h", wav.readframes(wav.getnframes()))
    step = max(1, int(rate * FRAME_S)) * channels
    spans: list[tuple[float, float]] = []
    since: float | None = None
    for i in range(0, len(samples), step):
        t = i / channels / rate
        loud = any(samples[i:i + step])
        if loud and since is None:
            since = t
        elif not loud and since is not None:
            spans.append((since, t))
            since = None
    if since is not None:
        spans.append((since, len(samples) / channels / rate))
    return spans


def targets(tmp: Path, environ: dict[str, Any]) -> list[Any]:
    """The FreeSWITCH target chosen by the environment (see conftest.py)."""
    address = environ.get("CALLGUARD_ACCEPTANCE_FREESWITCH", "")
    if not address:
        return [FakeFreeSwitchTarget(tmp)]
    host, _, port = address.rpartition(":")
    return [RealFreeSwitchTarget(tmp, host or "127.0.0.1", int(port or 8021),
                                 environ.get("CALLGUARD_ACCEPTANCE_FREESWITCH_PASSWORD", "ClueCon"),
                                 int(environ.get("CALLGUARD_ACCEPTANCE_FREESWITCH_LISTEN_PORT", "8084")))]
