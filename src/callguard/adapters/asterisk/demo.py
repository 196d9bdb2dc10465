"""Scenarios played over real AMI: an embedded FakeAsterisk and the real listener.

``callguard demo`` uses :func:`asterisk_backend` (the
:data:`callguard.demo.Backend` signature): every scenario becomes one call
on a :class:`~callguard.testing.FakeAsterisk` listening on a loopback port,
and the production listener (AMI client, engine, ledger writer) handles it
over TCP exactly as it would handle a real Asterisk.  Scenario time is
compressed (``time_scale``) but the fake stamps events with the unscaled
PBX clock (``timestampevents``), so the evidence reads in real seconds.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
from typing import TYPE_CHECKING, Any

from callguard.adapters.asterisk.runner import RunningListener, prompt_file_for, start_listener
from callguard.config import Config
from callguard.core import events as ev
from callguard.core.prompts import PromptResolver, engine_prompts
from callguard.runtime import LedgerSink
from callguard.testing.fake_asterisk import FakeAsterisk, FakeCall
from callguard.testing.scenario import Scenario

if TYPE_CHECKING:
    from callguard.demo import CardDemo

#: Scenario seconds per real second is 1 / DEFAULT_TIME_SCALE.
DEFAULT_TIME_SCALE = 0.05
_API_EVENTS: dict[str, type[ev.Event]] = {"pause": ev.PauseRequested, "resume": ev.ResumeRequested,
                                           "payment-start": ev.PaymentStarted, "payment-end": ev.PaymentEnded}


def embedded_config(config: Config, pbx: FakeAsterisk) -> Config:
    """``config`` pointed at the embedded fake (loopback, its one-off secret, quick heartbeats).

    The fake's recordings are imaginary (no audio files), so nothing goes to the vault.
    """
    asterisk = dataclasses.replace(config.asterisk, host=pbx.host, port=pbx.port, username=pbx.username,
                                   secret=pbx.secret, tls=False, ca_file="",
                                   heartbeat_interval_s=min(config.asterisk.heartbeat_interval_s, 0.5))
    return dataclasses.replace(config, asterisk=asterisk,
                               vault=dataclasses.replace(config.vault, ingest_on_stop=False))


def teach_prompt_lengths(pbx: FakeAsterisk, prompts: PromptResolver) -> None:
    """Let the fake play each catalogued prompt for as long as its audio really lasts."""
    prompt_file = prompt_file_for(prompts)
    for ref in engine_prompts(prompts):
        if ref.duration_s > 0:
            pbx.prompt_durations[prompt_file(ref)] = ref.duration_s


async def play_scenarios(config: Config, scenarios: list[Scenario], ledger: LedgerSink, *,
                         prompts: PromptResolver | None = None, time_scale: float = DEFAULT_TIME_SCALE,
                         timeout: float = 120.0, dtmf_grace_s: float = 5.0) -> list[str]:
    """Play ``scenarios`` through the real listener over TCP; returns their call ids in order.

    Scenarios with the same ``[pbx]`` knobs run concurrently (they share one
    PBX), others one after another.
    """
    if prompts is None:
        from callguard.wiring import build_prompts
        prompts = build_prompts(config)
    # stall_cap_s: the scripted callers and the PBX clock ignore stalls of a
    # busy machine (a key "pressed during the notice" stays during it).
    async with FakeAsterisk(secret=secrets.token_hex(16), timestamps=True, time_scale=time_scale,
                            agent=None, stall_cap_s=0.1) as pbx:
        teach_prompt_lengths(pbx, prompts)
        # A loaded machine stalls the scripted callers; let a keypress wait a
        # few scenario seconds for its prompt rather than vanish.
        pbx.dtmf_grace_s = dtmf_grace_s
        running = await start_listener(embedded_config(config, pbx), ledger, prompts=prompts)
        try:
            await pbx.wait_for_client(timeout=10)
            await _until(pbx.heartbeat_fresh, 10)
            knobs = {(s.confirm_delay_s, s.confirm_mute, s.prompt_duration_s) for s in scenarios}
            if len(knobs) <= 1:
                calls = await asyncio.gather(*(_play(pbx, running, s, timeout) for s in scenarios))
            else:
                calls = [await _play(pbx, running, s, timeout) for s in scenarios]
            await _until(lambda: not running.engine.sessions, timeout)
        finally:
            await running.stop()
    return [call.linkedid for call in calls]


async def _play(pbx: FakeAsterisk, running: RunningListener, scenario: Scenario, timeout: float) -> FakeCall:
    def api(call: FakeCall, step: Any) -> None:
        running.engine.feed(call.linkedid, _API_EVENTS[step.value](pbx.now(), ev.Source.API))

    return await pbx.play(scenario, on_api=api, timeout=timeout)


async def play_card_payment(config: Config, ledger: LedgerSink, connector: Any, recording_dir: str, *,
                            prompts: PromptResolver | None = None, timeout: float = 60.0) -> "CardDemo":
    """One call in which the agent takes a card (README: Taking payments), through the real listener.

    The caller agrees to recording, is bridged to an agent behind a Local
    channel, the agent starts a 49.90 GBP payment and the caller keys the
    demo test card; the fake writes the recording as a real WAV in
    ``recording_dir`` and keeps what reached the agent's phone.
    """
    from callguard.demo import DEMO_CARD, CardDemo

    if prompts is None:
        from callguard.wiring import build_prompts
        prompts = build_prompts(config)
    number, expiry, cvv = DEMO_CARD
    # On the wall clock (time_scale 1), with short prompts: a scaled PBX clock would stretch the listener's
    # real confirmation times 1/time_scale-fold in the evidence, and the audit would flag them as slow.
    async with FakeAsterisk(secret=secrets.token_hex(16), timestamps=True, time_scale=1.0,
                            default_prompt_s=0.2) as pbx:
        pbx.write_recordings = True
        demo = embedded_config(config, pbx)
        demo = dataclasses.replace(demo, asterisk=dataclasses.replace(demo.asterisk, recording_dir=recording_dir))
        running = await start_listener(demo, ledger, prompts=prompts, connector=connector)
        try:
            desk = running.desk
            assert desk is not None
            views: list[Any] = []
            desk.hub.subscribe(views.append)
            await pbx.wait_for_client(timeout=10)
            await _until(pbx.heartbeat_fresh, 10)
            call = pbx.place_call("+442079460123", "Card Caller")
            await call.answer_prompt("1", timeout=timeout)

            def agent_joined() -> bool:
                session = running.engine.session(call.linkedid)
                return session is not None and any(p.role == "agent" for p in session.parties)
            await _until(agent_joined, timeout)
            payment_id = desk.start(call.linkedid, amount="49.90", currency="GBP", actor="demo")
            await _until(lambda: any(v.payment_id == payment_id and v.phase == "collecting" for v in views), timeout)
            heard_from = len(call.agent_heard)
            for digit in number + "#" + expiry + cvv:
                await call.press(digit)
            await _until(lambda: payment_id in desk.results, timeout)
            heard = [h[:2] for h in call.agent_heard[heard_from:]]
            recording = call.recordings[0]
            await _until(lambda: not recording.muted, timeout)  # resumed, PBX-confirmed
            await call.hangup()
            await _until(lambda: not running.engine.sessions, timeout)
        finally:
            await running.stop()
    return CardDemo(call.linkedid, payment_id, views, desk.results[payment_id].as_dict(), heard,
                    str(recording.audio.path) if recording.audio is not None else "")


def card_backend(config: Config, ledger: LedgerSink, connector: Any, recording_dir: str) -> "CardDemo":
    """:data:`callguard.demo.CardBackend` over AMI (synchronous: runs its own event loop)."""
    return asyncio.run(play_card_payment(config, ledger, connector, recording_dir))


def asterisk_backend(config: Config, scenarios: list[Scenario], ledger: LedgerSink) -> list[str]:
    """:data:`callguard.demo.Backend` over AMI (synchronous: runs its own event loop)."""
    return asyncio.run(play_scenarios(config, scenarios, ledger))


def run_demo_asterisk(config: Config, ledger_url: str | None = None):
    """``callguard demo`` with the Asterisk backend; returns the lead's :class:`~callguard.demo.DemoReport`."""
    from callguard.demo import run_demo

    return run_demo(config, asterisk_backend, "asterisk", ledger_url)


async def _until(predicate, timeout: float) -> None:
    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.01)
    await asyncio.wait_for(poll(), timeout)


__all__ = ["DEFAULT_TIME_SCALE", "asterisk_backend", "card_backend", "play_card_payment", "embedded_config", "play_scenarios", "run_demo_asterisk",
           "teach_prompt_lengths"]
