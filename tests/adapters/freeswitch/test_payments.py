"""Card payments over real ESL: FakeFreeSWITCH, the real listener, a real HTTPS gateway, a real SQLite ledger.

The fake models which leg hears what (block_dtmf and uuid_audio on the
agent's leg, DTMF events on the pressing leg only, in-band tones, the
digits_dialed FreeSWITCH writes at hangup), so each test can assert that
the agent's phone got no DTMF and no tone audio during capture.

Each call is a scenario on the fake's virtual clock: consent at 2.5 s,
then at 15 s (agent bridged) the test's payment runs as an ``api`` step,
then the caller hangs up.
"""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator, Awaitable, Callable

import pytest

from callguard.payments.connector import ConnectorSettings, HttpsConnector
from callguard.testing.fake_freeswitch import CallRecord
from callguard.testing.payment_gateway import PaymentGateway

from .conftest import Rig, make_config, scenario

TEST_CARD = "4111111111111111"


@pytest.fixture(scope="module")
def gateway():
    with PaymentGateway() as gw:
        yield gw


def connector_for(gateway: PaymentGateway, **options: Any) -> HttpsConnector:
    return HttpsConnector(ConnectorSettings(gateway.url, gateway.api_key, connect_timeout_s=20.0, **options),
                          verify=gateway.client_context())


@pytest.fixture
async def pay_rig(make_rig, gateway: PaymentGateway, request) -> AsyncIterator[Rig]:
    gateway.delay_s = 0.0
    options = getattr(request, "param", {})
    rig = await make_rig(start=False, payments={"url": gateway.url, "inter_digit_timeout_s": 1.0})
    await rig.start_listener(connector=connector_for(gateway, **options.get("connector", {})))
    yield rig
    gateway.delay_s = 0.0


def desk(rig: Rig):
    assert rig.listener is not None and rig.listener.desk is not None
    return rig.listener.desk


async def paid_call(rig: Rig, payment: Callable[[CallRecord], Awaitable[None]], *,
                    hangup_at: float = 300.0) -> CallRecord:
    """A consented call bridged to a staff agent; ``payment(record)`` runs at 15 s, the caller hangs up after."""
    async def on_api(record: CallRecord, step: Any) -> None:
        await rig.wait_for(lambda: _agent_party(rig, record) is not None)
        await payment(record)

    return await rig.play(scenario([{"at": 2.5, "press": "1"}, {"at": 15, "api": "payment-start"},
                                    {"at": hangup_at, "hangup": "caller"}]), on_api=on_api)


def _agent_party(rig: Rig, record: CallRecord):
    assert rig.listener is not None and rig.listener.engine is not None
    session = rig.listener.engine.session(record.call_id)
    if session is None or record.agent is None:
        return None
    return next((p for p in session.parties if p.channel == record.agent.uuid), None)


async def wait_phase(rig: Rig, call_id: str, phase: str, timeout: float = 15.0) -> None:
    await rig.wait_for(lambda: any(v.phase == phase for v in desk(rig).hub.latest(call_id)), timeout)


async def wait_kind(rig: Rig, call_id: str, kind: str, timeout: float = 20.0, **match: Any):
    def found() -> bool:
        rig.ledger.flush(5)
        return any(e.kind == kind and all(e.data.get(k) == v for k, v in match.items())
                   for e in rig.timeline(call_id))
    await rig.wait_for(found, timeout)
    return rig.entry(call_id, kind, **match)


def prompt_names(record: CallRecord) -> list[str]:
    return [p.rsplit("/", 1)[-1].removesuffix(".wav") for p in record.caller.keypad.prompts]


async def test_a_card_payment_end_to_end(pay_rig: Rig, gateway: PaymentGateway) -> None:
    rig = pay_rig
    seen: dict[str, Any] = {}

    async def payment(record: CallRecord) -> None:
        agent = record.agent
        assert agent is not None
        rig.fake.press(record.caller, "5")  # before the payment: the agent hears it, as on any call
        assert [h[:2] for h in agent.keypad.heard] == [("dtmf", "5"), ("tone", "5")]
        seen["payment_id"] = desk(rig).start(record.call_id, amount="49.90", currency="GBP")
        await wait_phase(rig, record.call_id, "collecting")
        seen["started"] = rig.fake.scenario_time()
        heard_before = len(agent.keypad.heard)
        assert agent.keypad.dtmf_blocked and agent.keypad.write_mute  # both confirmed before any prompt
        assert record.recordings[0].masked
        assert not record.caller.keypad.dtmf_blocked and not record.caller.keypad.write_mute
        rig.fake.press(record.caller, TEST_CARD[:12])
        await rig.wait_for(lambda: "card: 12 of 16 digits, Visa" in desk(rig).hub.latest(seen["payment_id"])[-1].lines())
        rig.fake.press(record.caller, TEST_CARD[12:] + "#" + "1230" + "123")
        await wait_kind(rig, record.call_id, "payment-ended")
        seen["ended"] = rig.fake.scenario_time()
        assert agent.keypad.heard[heard_before:] == []  # no DTMF, no tone reached the agent
        await wait_kind(rig, record.call_id, "recording-unmuted")
        await rig.wait_for(lambda: not agent.keypad.dtmf_blocked and not agent.keypad.write_mute)
        rig.fake.press(record.caller, "7")  # after it: the agent hears keys again
        assert agent.keypad.heard[-2][:2] == ("dtmf", "7")

    record = await paid_call(rig, payment)
    call = record.call_id
    ended = rig.entry(call, "payment-ended").data
    assert (ended["outcome"], ended["brand"], ended["last4"]) == ("approved", "visa", "1111")
    assert ended["token"].startswith("tok_")
    assert rig.entry(call, "payment-started").data["staff_leg"] == record.agent.uuid
    kinds = rig.kinds(call)
    assert kinds.index("payment-started") < kinds.index("recording-muted") < kinds.index("payment-step")
    assert prompt_names(record) == ["pay-start", "pay-card-number", "pay-expiry", "pay-cvv", "pay-processing",
                                    "pay-approved"]
    [charge] = [c for c in gateway.charges if c.reference == seen["payment_id"]]
    assert (charge.amount, charge.last4) == ("49.90", "1111")
    [rec] = record.recordings
    assert [op for _, op in rec.ops] == ["start", "mask", "unmask", "stop"]
    # FreeSWITCH's digits_dialed (CDRs, the hang-up event) holds no key of this call in clear
    assert set(record.caller.variables["digits_dialed"]) == {"X"}
    assert not any(TEST_CARD[:8] in str(e.data) for e in rig.timeline(call))


async def test_bad_luhn_is_asked_again(pay_rig: Rig) -> None:
    rig = pay_rig

    async def payment(record: CallRecord) -> None:
        desk(rig).start(record.call_id, amount="5", currency="GBP")
        await wait_phase(rig, record.call_id, "collecting")
        rig.fake.press(record.caller, "4111111111111112#")
        await wait_kind(rig, record.call_id, "payment-step", outcome="rejected", reason="luhn")
        rig.fake.press(record.caller, TEST_CARD + "#1230123")
        await wait_kind(rig, record.call_id, "payment-ended", outcome="approved")

    record = await paid_call(rig, payment)
    assert "pay-retry" in prompt_names(record)
    assert record.agent.keypad.heard == []  # nothing: the consent key came before the bridge


async def test_cancel_mid_capture(pay_rig: Rig) -> None:
    rig = pay_rig

    async def payment(record: CallRecord) -> None:
        desk(rig).start(record.call_id, amount="5", currency="GBP")
        await wait_phase(rig, record.call_id, "collecting")
        rig.fake.press(record.caller, "4111")
        assert desk(rig).cancel(record.call_id, by="api")
        await wait_kind(rig, record.call_id, "payment-ended", outcome="cancelled")
        await wait_kind(rig, record.call_id, "recording-unmuted")

    record = await paid_call(rig, payment)
    assert record.agent.keypad.heard == []
    assert prompt_names(record)[-1] == "pay-cancelled"


async def test_hangup_mid_capture(pay_rig: Rig, gateway: PaymentGateway) -> None:
    rig = pay_rig
    seen: dict[str, str] = {}

    async def payment(record: CallRecord) -> None:
        seen["payment_id"] = desk(rig).start(record.call_id, amount="5", currency="GBP")
        await wait_phase(rig, record.call_id, "collecting")
        rig.fake.press(record.caller, TEST_CARD[:8])
        await rig.fake.hangup_call(record)

    record = await paid_call(rig, payment)
    ended = await wait_kind(rig, record.call_id, "payment-ended", outcome="hangup")
    assert ended.data["after_hangup"] is True
    assert desk(rig).active(record.call_id) is None
    assert not [c for c in gateway.charges if c.reference == seen["payment_id"]]
    assert set(record.caller.variables["digits_dialed"]) == {"X"}


@pytest.mark.parametrize("pay_rig", [{"connector": {"read_timeout_s": 0.3, "attempts": 2, "backoff_s": 0.05}}],
                         indirect=True)
async def test_connector_timeout_keeps_the_recording_masked_until_the_payment_ends(
        pay_rig: Rig, gateway: PaymentGateway) -> None:
    rig = pay_rig
    gateway.delay_s = 2.0

    async def payment(record: CallRecord) -> None:
        desk(rig).start(record.call_id, amount="5", currency="GBP")
        await wait_phase(rig, record.call_id, "collecting")
        rig.fake.press(record.caller, TEST_CARD + "#" + "1230123")
        await wait_phase(rig, record.call_id, "submitting")
        assert record.recordings[0].masked and record.agent.keypad.dtmf_blocked
        await wait_kind(rig, record.call_id, "payment-ended", outcome="unknown")
        await wait_kind(rig, record.call_id, "recording-unmuted")

    record = await paid_call(rig, payment)
    assert prompt_names(record)[-1] == "pay-failed"
    assert not record.agent.keypad.dtmf_blocked


async def test_event_socket_lost_mid_capture_asks_again_and_never_unguards(pay_rig: Rig) -> None:
    rig = pay_rig

    async def payment(record: CallRecord) -> None:
        assert rig.listener is not None
        desk(rig).start(record.call_id, amount="5", currency="GBP")
        await wait_phase(rig, record.call_id, "collecting")
        rig.fake.press(record.caller, "41111111")
        connects = rig.listener.stats["inbound_connects"]
        rig.listener.connected.clear()
        assert rig.fake.drop_inbound() == 1
        rig.fake.press(record.caller, "1")  # nobody reads it, and the agent still cannot hear it
        await rig.wait_for(lambda: rig.listener.stats["inbound_connects"] > connects
                           and rig.listener.connected.is_set(), 15.0)
        await rig.wait_for(lambda: "card: waiting" in desk(rig).hub.latest(record.call_id)[-1].lines(), 10.0)
        assert record.recordings[0].masked and record.agent.keypad.dtmf_blocked
        rig.fake.press(record.caller, TEST_CARD + "#1230123")
        await wait_kind(rig, record.call_id, "payment-ended", outcome="approved")

    record = await paid_call(rig, payment)
    assert record.agent.keypad.heard == []


async def test_a_spoken_payment_segment_refuses_a_keypad_capture(pay_rig: Rig) -> None:
    """sensitive_dtmf (set for a spoken payment) stops FreeSWITCH's DTMF events: the capture says so."""
    rig = pay_rig

    async def payment(record: CallRecord) -> None:
        rig.fake.signal(record, "payment-start", source="ivr")
        await wait_kind(rig, record.call_id, "payment-started")
        await rig.wait_for(lambda: record.caller.variables.get("sensitive_dtmf") == "true")
        desk(rig).start(record.call_id, amount="5", currency="GBP")
        await wait_kind(rig, record.call_id, "payment-ended", outcome="error")

    record = await paid_call(rig, payment)
    assert "sensitive_dtmf" in rig.entry(record.call_id, "payment-ended").data["reason"]


async def test_the_agent_starts_and_cancels_a_card_payment_with_hotkeys(pay_rig: Rig, gateway: PaymentGateway) -> None:
    """*8 takes the amount the CRM left on the agent's leg; *9 cancels once FreeSWITCH confirms it out of band."""
    rig = pay_rig

    async def payment(record: CallRecord) -> None:
        agent = record.agent
        assert agent is not None
        agent.variables.update({"callguard_pay_amount": "12.50", "callguard_pay_currency": "EUR"})
        rig.fake.press_hotkey(agent, "8")
        await wait_phase(rig, record.call_id, "collecting")
        started = rig.entry(record.call_id, "payment-started").data
        assert (started["source"], started["staff_leg"], started["amount"], started["currency"]) == (
            "agent-hotkey", agent.uuid, "12.50", "EUR")
        rig.fake.press(record.caller, "4111")
        # A card_cancel event its extension never ran for (the variable is not there): refused.
        rig.fake.fire_custom(agent, "callguard::card_cancel", {"callguard_source": "agent-hotkey"})
        # ... and one from the recorded caller's own leg, whatever it claims.
        record.caller.variables["callguard_card"] = "cancel"
        rig.fake.fire_custom(record.caller, "callguard::card_cancel", {"callguard_source": "agent-hotkey"})
        await rig.settle()
        assert desk(rig).active(record.call_id) is not None
        rig.fake.press_hotkey(agent, "9")
        await wait_kind(rig, record.call_id, "payment-ended", outcome="cancelled", reason="cancelled by agent-hotkey")
        await wait_kind(rig, record.call_id, "recording-unmuted")
        await rig.wait_for(lambda: agent.variables.get("callguard_card") == "")  # used up

    record = await paid_call(rig, payment)
    assert [h for h in record.agent.keypad.heard if h[1] == "4"] == []


async def test_an_ivr_step_on_the_callers_leg_starts_a_payment(pay_rig: Rig, gateway: PaymentGateway) -> None:
    rig = pay_rig

    async def payment(record: CallRecord) -> None:
        record.caller.variables.update({"callguard_pay_amount": "3.00", "callguard_pay_currency": "GBP"})
        rig.fake.run_feature(record.caller, "callguard_card_ivr", "ivr")
        await wait_phase(rig, record.call_id, "collecting")
        rig.fake.press(record.caller, TEST_CARD + "#1230123")
        await wait_kind(rig, record.call_id, "payment-ended", outcome="approved")
        # the agent's *8 extension refuses to run on the caller's leg, and the IVR one on the agent's
        rig.fake.run_feature(record.caller, "callguard_card")
        rig.fake.run_feature(record.agent, "callguard_card_ivr", "ivr")

    record = await paid_call(rig, payment)
    started = rig.entry(record.call_id, "payment-started", capture=True).data
    assert (started["source"], started["amount"], started["staff_leg"]) == ("ivr", "3.00", record.agent.uuid)
    assert len(rig.entries(record.call_id, "payment-started")) == 1
    assert record.agent.keypad.heard == []


async def test_a_party_joining_mid_capture_is_kept_from_the_keys_too(pay_rig: Rig) -> None:
    rig = pay_rig

    async def payment(record: CallRecord) -> None:
        desk(rig).start(record.call_id, amount="5", currency="GBP")
        await wait_phase(rig, record.call_id, "collecting")
        rig.fake.press(record.caller, "4111")
        guest = rig.fake.new_channel("+442079460000", "Guest", direction="outbound", destination="+442079460000",
                                     caller=record.caller)
        record.joiners["guest"] = guest
        rig.fake.bridge(record.caller, guest)  # bridged in straight away (e.g. a blind transfer)
        await rig.wait_for(lambda: guest.keypad.dtmf_blocked and guest.keypad.write_mute)
        rig.fake.press(record.caller, "11111111")
        assert [h for h in guest.keypad.heard if h[1] == "1"] == []
        assert desk(rig).active(record.call_id) is not None
        assert desk(rig).cancel(record.call_id)
        await wait_kind(rig, record.call_id, "payment-ended", outcome="cancelled")
        await rig.wait_for(lambda: not guest.keypad.dtmf_blocked)

    record = await paid_call(rig, payment)
    assert record.agent.keypad.heard == []
