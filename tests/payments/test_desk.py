"""The payments desk around a real engine, a real HTTPS gateway and a scripted PBX driver.

The listeners' own tests drive the same desk over AMI and ESL; here the PBX is
a few lines that confirm what they are asked (or not), so every fail-safe
branch of the desk can be forced.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from callguard.core import commands as cmd
from callguard.core import events as ev
from callguard.core.policy import Policy
from callguard.core.prompts import StaticPrompts
from callguard.core.session import SessionSettings
from callguard.payments import capture as cap
from callguard.payments.connector import ConnectorSettings, HttpsConnector
from callguard.payments.desk import PaymentDesk, PaymentRefused
from callguard.runtime import Engine, MemoryLedger
from callguard.testing.payment_gateway import PaymentGateway
from tests.payments.support import TEST_CARD

CALLER, AGENT = "PJSIP/caller-1", "PJSIP/agent-1"


class ScriptedPbx:
    """Confirms mutes and guards at once unless told otherwise; records what reached it."""

    def __init__(self) -> None:
        self.engine: Engine | None = None
        self.desk: PaymentDesk | None = None
        self.confirm_mute = True
        self.confirm_guard = True
        self.guard: list[bool] = []
        self.prompts: list[str] = []
        self.muted = False

    def execute(self, call_id: str, command: cmd.Command) -> None:
        loop = asyncio.get_running_loop()
        assert self.engine is not None
        if isinstance(command, cmd.StartRecording):
            loop.call_soon(self.engine.feed, call_id, ev.RecordingStarted(self.engine.pbx_now(), "r"))
        elif isinstance(command, cmd.MuteRecording) and self.confirm_mute:
            self.muted = True
            loop.call_soon(self.engine.feed, call_id, ev.RecordingMuted(self.engine.pbx_now()))
        elif isinstance(command, cmd.UnmuteRecording):
            self.muted = False
            loop.call_soon(self.engine.feed, call_id, ev.RecordingUnmuted(self.engine.pbx_now()))

    def payment_guard(self, call_id: str, payment_id: str, on: bool) -> None:
        self.guard.append(on)
        if self.confirm_guard or not on:
            assert self.desk is not None
            asyncio.get_running_loop().call_soon(self.desk.guard_confirmed, call_id, on)

    def payment_prompt(self, call_id: str, payment_id: str, prompt: cmd.PromptRef) -> None:
        self.prompts.append(prompt.prompt_id)


@pytest.fixture(scope="module")
def gateway():
    with PaymentGateway() as gw:
        yield gw


async def recorded_call(gateway: PaymentGateway, settings: cap.CaptureSettings | None = None, *,
                        connector_kwargs: dict[str, Any] | None = None):
    loop = asyncio.get_running_loop()
    pbx, ledger = ScriptedPbx(), MemoryLedger()
    engine = Engine(SessionSettings(), Policy(home="US-NY"), StaticPrompts(("en",)), ledger, pbx, loop)
    connector = HttpsConnector(ConnectorSettings(gateway.url, gateway.api_key, connect_timeout_s=20.0,
                                                 **(connector_kwargs or {})), verify=gateway.client_context())
    desk = PaymentDesk(engine, pbx, connector, settings or cap.CaptureSettings(inter_digit_timeout_s=0.3))
    pbx.engine, pbx.desk = engine, desk
    views: list[cap.Progress] = []
    desk.hub.subscribe(views.append)
    now = engine.pbx_now()
    engine.feed("call-1", ev.CallOffered(now, "call-1", CALLER, (ev.Party(CALLER, "+12125550123"),)))
    engine.feed("call-1", ev.DigitsCollected(now + 1, CALLER, "1"))
    engine.feed("call-1", ev.PartyJoined(now + 2, ev.Party(AGENT, "101", role="agent"), False))
    await until(lambda: engine.session("call-1").state.value == "recording")
    return engine, desk, pbx, ledger, views, connector


async def until(predicate, timeout: float = 20.0) -> None:
    async def wait() -> None:
        while not predicate():
            await asyncio.sleep(0.01)
    await asyncio.wait_for(wait(), timeout)


def keys(desk: PaymentDesk, engine: Engine, digits: str) -> None:
    for digit in digits:
        desk.caller_key("call-1", digit, engine.pbx_now())


def kinds(ledger: MemoryLedger) -> list[str]:
    return [e.kind for e in ledger.for_call("call-1")]


async def test_a_payment_end_to_end(gateway) -> None:
    engine, desk, pbx, ledger, views, connector = await recorded_call(gateway)
    payment_id = desk.start("call-1", amount="49.90", currency="gbp")
    await until(lambda: views and views[-1].phase == "collecting")
    assert pbx.muted and pbx.guard == [True]
    assert kinds(ledger).index("recording-muted") < kinds(ledger).index("payment-step")
    keys(desk, engine, TEST_CARD + "#" + "1230" + "123")
    await until(lambda: desk.active("call-1") is None)
    await until(lambda: not pbx.muted)
    ended = [e for e in ledger.for_call("call-1") if e.kind == "payment-ended"][0]
    assert (ended.data["outcome"], ended.data["brand"], ended.data["last4"]) == ("approved", "visa", "1111")
    assert ended.data["token"].startswith("tok_") and ended.data["payment_id"] == payment_id
    assert pbx.guard == [True, False]
    assert [c for c in gateway.charges if c.reference == payment_id][0].amount == "49.90"
    assert "card: ok, Visa" in views[-1].lines()
    assert pbx.prompts[:2] == ["pay-start", "pay-card-number"] and pbx.prompts[-1] == "pay-approved"
    assert not any(TEST_CARD in repr(e.data) for e in ledger.for_call("call-1"))
    await connector.aclose()


async def test_no_digit_is_taken_while_the_mute_is_unconfirmed_and_the_payment_fails_safe(gateway) -> None:
    engine, desk, pbx, ledger, views, connector = await recorded_call(
        gateway, cap.CaptureSettings(arm_timeout_s=0.3))
    pbx.confirm_mute = False
    desk.start("call-1", amount="5", currency="GBP")
    keys(desk, engine, "4111")
    await until(lambda: desk.active("call-1") is None)
    result = desk.results[[k for k in desk.results][-1]]
    assert result.outcome == "error" and "not protected" in result.reason
    assert pbx.prompts == ["pay-failed"] and pbx.guard == [True, False]
    # the engine stops the recording it could not mute (its own fail safe), never unmutes it
    await until(lambda: "recording-stopped" in kinds(ledger))
    assert "recording-unmuted" not in kinds(ledger)
    await connector.aclose()


async def test_hangup_mid_capture_ends_it_and_the_result_reaches_the_ledger(gateway) -> None:
    engine, desk, pbx, ledger, views, connector = await recorded_call(gateway)
    desk.start("call-1", amount="5", currency="GBP")
    await until(lambda: views and views[-1].phase == "collecting")
    keys(desk, engine, "41111111")
    engine.feed("call-1", ev.HungUp(engine.pbx_now(), "normal", CALLER))
    assert desk.active("call-1") is None
    ended = [e for e in ledger.for_call("call-1") if e.kind == "payment-ended"][-1]
    assert ended.data["outcome"] == "hangup" and ended.data["after_hangup"] is True
    assert not gateway.charges or all(c.reference != ended.data["payment_id"] for c in gateway.charges)
    await connector.aclose()


async def test_cancel_and_refusals(gateway) -> None:
    engine, desk, pbx, ledger, views, connector = await recorded_call(gateway)
    with pytest.raises(PaymentRefused, match="no live call"):
        desk.start("nope", amount="5", currency="GBP")
    with pytest.raises(PaymentRefused, match="three-letter"):
        desk.start("call-1", amount="5", currency="POUNDS")
    with pytest.raises(PaymentRefused, match="positive"):
        desk.start("call-1", amount="-5", currency="GBP")
    desk.start("call-1", amount="5", currency="GBP")
    with pytest.raises(PaymentRefused, match="already taking payment"):
        desk.start("call-1", amount="5", currency="GBP")
    await until(lambda: views and views[-1].phase == "collecting")
    assert desk.cancel("call-1", by="api") and not desk.cancel("call-1")
    await until(lambda: not pbx.muted)
    ended = [e for e in ledger.for_call("call-1") if e.kind == "payment-ended"][-1]
    assert ended.data["outcome"] == "cancelled" and pbx.prompts[-1] == "pay-cancelled"
    await connector.aclose()


async def test_a_gateway_that_times_out_leaves_the_recording_muted_until_the_payment_ends(gateway) -> None:
    gateway.delay_s = 1.5
    try:
        engine, desk, pbx, ledger, views, connector = await recorded_call(
            gateway, connector_kwargs={"read_timeout_s": 0.3, "attempts": 2, "backoff_s": 0.05})
        desk.start("call-1", amount="7", currency="GBP")
        await until(lambda: views and views[-1].phase == "collecting")
        keys(desk, engine, TEST_CARD + "#12301234"[:8])
        await until(lambda: views[-1].phase == "submitting")
        assert pbx.muted
        await until(lambda: desk.active("call-1") is None)
        ended = [e for e in ledger.for_call("call-1") if e.kind == "payment-ended"][-1]
        assert ended.data["outcome"] == "unknown" and ended.data["idempotency_key"]
        assert pbx.prompts[-1] == "pay-failed"
        charged = [c for c in gateway.charges if c.key == ended.data["idempotency_key"]]
        assert len(charged) <= 1  # at most the one charge the first attempt made, never a second
    finally:
        gateway.delay_s = 0.0
    await connector.aclose()
