"""Scenarios played over real ESL: an embedded FakeFreeSWITCH and the real listener.

The FreeSWITCH counterpart of :mod:`callguard.adapters.asterisk.demo`: every
scenario becomes one call on a :class:`~callguard.testing.FakeFreeSWITCH`
on loopback ports, and the production listener (outbound socket server in
its gevent thread, inbound ESL client, engine, ledger writer) handles it
over TCP exactly as it would handle a real FreeSWITCH.  The fake runs on its
virtual clock, so the evidence carries scenario time and the same
scenario always gives the same timeline.  Used by the parity tests and
usable as a ``callguard demo`` backend (:func:`freeswitch_backend`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
from typing import TYPE_CHECKING, Any

from callguard.config import Config
from callguard.core import events as ev
from callguard.core.prompts import PromptResolver, engine_prompts
from callguard.runtime import LedgerSink
from callguard.testing.fake_freeswitch import CallRecord, FakeFreeSWITCH
from callguard.testing.scenario import Scenario

if TYPE_CHECKING:
    from callguard.demo import CardDemo

from .listener import FreeSwitchListener
from .commands import PromptPath

_API_EVENTS: dict[str, type[ev.Event]] = {"pause": ev.PauseRequested, "resume": ev.ResumeRequested,
                                           "payment-start": ev.PaymentStarted, "payment-end": ev.PaymentEnded}


def embedded_config(config: Config, fake: FakeFreeSWITCH) -> Config:
    """``config`` pointed at the embedded fake (its one-off password, an ephemeral socket port).

    The fake's recordings are imaginary (no audio files), so nothing goes to the vault.
    """
    fs = dataclasses.replace(config.freeswitch, host=fake.host, port=fake.port, password=fake.password,
                             listen_host="127.0.0.1", listen_port=0,
                             heartbeat_interval_s=min(config.freeswitch.heartbeat_interval_s, 0.5),
                             reconnect_min_s=0.02)
    return dataclasses.replace(config, freeswitch=fs,
                               vault=dataclasses.replace(config.vault, ingest_on_stop=False))


def teach_prompt_lengths(fake: FakeFreeSWITCH, prompts: PromptResolver, prompt_path: PromptPath) -> None:
    """Let the fake play each catalogued prompt for as long as its audio really lasts."""
    for ref in engine_prompts(prompts):
        if ref.duration_s > 0:
            fake.prompt_durations[prompt_path(ref, 8000)] = ref.duration_s


async def play_scenarios(config: Config, scenarios: list[Scenario], ledger: LedgerSink, *,
                         prompts: PromptResolver | None = None, prompt_path: PromptPath | None = None,
                         timeout: float = 120.0) -> list[str]:
    """Play ``scenarios`` through the real listener over TCP; returns their call ids in order.

    Scenarios with the same ``[pbx]`` knobs run concurrently (one fake PBX),
    others one after another.
    """
    if prompts is None:
        from callguard.wiring import build_prompts
        prompts = build_prompts(config)
    if prompt_path is None:
        path_for = getattr(prompts, "path_for")
        prompt_path = lambda ref, rate: path_for(ref, "freeswitch", rate)  # noqa: E731
    async with FakeFreeSWITCH(password=secrets.token_hex(16)) as fake:
        teach_prompt_lengths(fake, prompts, prompt_path)
        listener = FreeSwitchListener(embedded_config(config, fake), ledger, prompts=prompts,
                                      prompt_path=prompt_path)
        await listener.start()
        try:
            fake.watch(listener.busy)
            fake.socket_address = ("127.0.0.1", listener.outbound_port or 0)
            await asyncio.wait_for(listener.connected.wait(), 10)

            def api(record: CallRecord, step: Any) -> None:
                assert listener.engine is not None
                listener.engine.feed(record.call_id, _API_EVENTS[step.value](fake.now_epoch(), ev.Source.API))

            async def play(scenario: Scenario) -> CallRecord:
                fake.apply_knobs(scenario)
                return await asyncio.wait_for(fake.play(scenario, on_api=api), timeout)

            knobs = {(s.confirm_delay_s, s.confirm_mute, s.prompt_duration_s) for s in scenarios}
            if len(knobs) <= 1:
                records = await asyncio.gather(*(play(s) for s in scenarios))
            else:
                records = [await play(s) for s in scenarios]
            await fake.settle()

            async def drained() -> None:
                while listener.engine is not None and listener.engine.sessions:
                    await asyncio.sleep(0.01)
            await asyncio.wait_for(drained(), timeout)
        finally:
            await listener.stop()
    return [record.call_id for record in records]


async def play_card_payment(config: Config, ledger: LedgerSink, connector: Any, recording_dir: str, *,
                            prompts: PromptResolver | None = None, timeout: float = 60.0) -> "CardDemo":
    """One call in which the agent takes a card (README: Taking payments), through the real listener.

    The caller agrees, is bridged to a staff agent, the agent starts a
    49.90 GBP payment at 15 s and the caller keys the demo test card; the
    fake writes the recording as a real WAV in ``recording_dir`` and keeps
    what reached the agent's phone.
    """
    from callguard.demo import DEMO_CARD, CardDemo

    if prompts is None:
        from callguard.wiring import build_prompts
        prompts = build_prompts(config)
    path_for = getattr(prompts, "path_for")
    prompt_path = lambda ref, rate: path_for(ref, "freeswitch", rate)  # noqa: E731
    number, expiry, cvv = DEMO_CARD
    seen: dict[str, Any] = {}
    async with FakeFreeSWITCH(password=secrets.token_hex(16)) as fake:
        teach_prompt_lengths(fake, prompts, prompt_path)
        fake.write_recordings = True
        demo = embedded_config(config, fake)
        demo = dataclasses.replace(demo, freeswitch=dataclasses.replace(demo.freeswitch, recording_dir=recording_dir))
        listener = FreeSwitchListener(demo, ledger, prompts=prompts, prompt_path=prompt_path, connector=connector)
        await listener.start()
        try:
            desk = listener.desk
            assert desk is not None and listener.engine is not None
            views: list[Any] = []
            desk.hub.subscribe(views.append)
            fake.watch(listener.busy)
            fake.socket_address = ("127.0.0.1", listener.outbound_port or 0)
            await asyncio.wait_for(listener.connected.wait(), 10)

            async def payment(record: CallRecord, step: Any) -> None:
                agent = record.agent
                assert agent is not None and listener.engine is not None
                await _until(lambda: any(p.channel == agent.uuid for p in listener.engine.session(  # type: ignore[union-attr]
                    record.call_id).parties), timeout)
                payment_id = seen["payment_id"] = desk.start(record.call_id, amount="49.90", currency="GBP",
                                                             actor="demo")
                await _until(lambda: any(v.payment_id == payment_id and v.phase == "collecting" for v in views),
                             timeout)
                heard_from = len(agent.keypad.heard)
                fake.press(record.caller, number + "#" + expiry + cvv)
                await _until(lambda: payment_id in desk.results, timeout)
                seen["heard"] = [h[:2] for h in agent.keypad.heard[heard_from:]]
                await _until(lambda: not record.recordings[0].masked, timeout)  # resumed, PBX-confirmed

            record = await asyncio.wait_for(fake.play(Scenario.from_dict({
                "name": "card payment", "caller": {"number": "+442079460123", "name": "Card Caller"},
                "agent": {"number": "100"}, "step": [{"at": 2.5, "press": "1"}, {"at": 15, "api": "payment-start"},
                                                     {"at": 60, "hangup": "caller"}]}), on_api=payment), timeout)
            await fake.settle()
            await _until(lambda: not listener.engine.sessions, timeout)  # type: ignore[union-attr]
        finally:
            await listener.stop()
    recording = record.recordings[0]
    return CardDemo(record.call_id, seen["payment_id"], views, desk.results[seen["payment_id"]].as_dict(),
                    seen["heard"], str(recording.audio.path) if recording.audio is not None else "")


async def _until(predicate: Any, timeout: float) -> None:
    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.005)
    await asyncio.wait_for(poll(), timeout)


def card_backend(config: Config, ledger: LedgerSink, connector: Any, recording_dir: str) -> "CardDemo":
    """:data:`callguard.demo.CardBackend` over ESL (synchronous: runs its own event loop)."""
    return asyncio.run(play_card_payment(config, ledger, connector, recording_dir))


def freeswitch_backend(config: Config, scenarios: list[Scenario], ledger: LedgerSink) -> list[str]:
    """:data:`callguard.demo.Backend` over ESL (synchronous: runs its own event loop)."""
    return asyncio.run(play_scenarios(config, scenarios, ledger))


__all__ = ["card_backend", "embedded_config", "freeswitch_backend", "play_card_payment", "play_scenarios",
           "teach_prompt_lengths"]
