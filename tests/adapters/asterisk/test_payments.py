"""Card payments over real AMI: FakeAsterisk, the real listener, a real HTTPS gateway, a real SQLite ledger.

The fake models which leg hears what (FRAME_DROP(RX) and MuteAudio on the
agent's Local half, DTMF events per leg, in-band tones), so each test can
assert that the agent's phone got no DTMF and no tone audio during capture.
"""

from __future__ import annotations

import asyncio
from typing import AsyncIterator

import pytest

from callguard.payments.connector import ConnectorSettings, HttpsConnector
from callguard.testing.payment_gateway import PaymentGateway
from tests.adapters.asterisk.conftest import Rig, make_config

TEST_CARD = "4111111111111111"


@pytest.fixture(scope="module")
def gateway():
    with PaymentGateway() as gw:
        yield gw


@pytest.fixture
async def pay_rig(rig: Rig, gateway: PaymentGateway, request) -> AsyncIterator[Rig]:
    gateway.delay_s = 0.0
    options = getattr(request, "param", {})
    rig.config = make_config(rig.pbx.port, payments={"url": gateway.url, "inter_digit_timeout_s": 1.0,
                                                     **options.get("payments", {})})
    connector = HttpsConnector(ConnectorSettings(gateway.url, gateway.api_key, connect_timeout_s=20.0,
                                                 **options.get("connector", {})), verify=gateway.client_context())
    await rig.start_listener(connector=connector)
    yield rig
    gateway.delay_s = 0.0


async def bridged_call(rig: Rig):
    call = rig.pbx.place_call("+12125550123", "Cust Omer")
    await call.answer_prompt("1")
    await rig.wait_kind(call.linkedid, "recording-started")
    await rig.wait_for(lambda: call.agent is not None and call.channel.bridge is not None, what="bridged")
    await rig.wait_kind(call.linkedid, "party-joined")
    return call


def desk(rig: Rig):
    assert rig.running is not None and rig.running.desk is not None
    return rig.running.desk


async def wait_phase(rig: Rig, call, phase: str, timeout: float = 15.0) -> None:
    await rig.wait_for(lambda: any(v.phase == phase for v in desk(rig).hub.latest(call.linkedid)), timeout,
                       f"payment phase {phase}")


async def key(call, digits: str) -> None:
    for digit in digits:
        await call.press(digit)


def heard_during(call, start: float, end: float) -> list:
    return [h for h in call.agent_heard if start <= h[2] <= end]


async def test_a_card_payment_end_to_end(pay_rig: Rig, gateway: PaymentGateway) -> None:
    rig = pay_rig
    call = await bridged_call(rig)
    await call.press("5")  # before the payment: the agent hears it, as on any call
    assert [h[:2] for h in call.agent_heard] == [("dtmf", "5"), ("tone", "5")]
    payment_id = desk(rig).start(call.linkedid, amount="49.90", currency="GBP")
    await wait_phase(rig, call, "collecting")
    started = rig.pbx.now()
    half = call.agent_far.name
    assert rig.sent("Setvar", channel=half, variable="FRAME_DROP(RX)", value="DTMF_BEGIN,DTMF_END")
    assert rig.sent("MuteAudio", channel=half, direction="in", state="on")
    assert not [a for _, a in rig.pbx.actions if "FRAME_DROP(TX)" in a.get("variable", "")]
    assert call.recording.muted  # PBX-confirmed before any prompt
    await key(call, TEST_CARD[:12])
    await rig.wait_for(lambda: "card: 12 of 16 digits, Visa" in desk(rig).hub.latest(payment_id)[-1].lines())
    await key(call, TEST_CARD[12:] + "#" + "1230" + "123")
    await rig.wait_kind(call.linkedid, "payment-ended")
    ended_at = rig.pbx.now()
    await rig.wait_kind(call.linkedid, "recording-unmuted")
    assert heard_during(call, started, ended_at) == []  # no DTMF, no tone audio reached the agent
    assert not call.recording.muted
    ended = rig.entry(call.linkedid, "payment-ended").data
    assert (ended["outcome"], ended["brand"], ended["last4"]) == ("approved", "visa", "1111")
    assert ended["token"].startswith("tok_")
    assert rig.entry(call.linkedid, "payment-started").data["staff_leg"] == call.agent.name
    kinds = rig.kinds(call.linkedid)
    assert kinds.index("payment-started") < kinds.index("recording-muted") < kinds.index("payment-step")
    await rig.wait_for(lambda: call.player is None, what="the prompt player to hang up")
    assert [f.rsplit("/", 1)[-1] for f in call.caller_heard] == [
        "pay-start", "pay-card-number", "pay-expiry", "pay-cvv", "pay-processing", "pay-approved"]
    assert rig.sent("Setvar", channel=half, variable="FRAME_DROP(RX)", value="")
    assert rig.sent("MuteAudio", channel=half, direction="in", state="off")
    [charge] = [c for c in gateway.charges if c.reference == payment_id]
    assert (charge.amount, charge.last4) == ("49.90", "1111")
    await call.press("7")  # after it: the agent hears keys again
    assert call.agent_heard[-2][:2] == ("dtmf", "7")
    await call.hangup()
    await rig.settle(call)
    assert not any(TEST_CARD in str(e.data) for e in rig.timeline(call.linkedid))


async def test_bad_luhn_is_asked_again(pay_rig: Rig) -> None:
    rig = pay_rig
    call = await bridged_call(rig)
    desk(rig).start(call.linkedid, amount="5", currency="GBP")
    await wait_phase(rig, call, "collecting")
    await key(call, "4111111111111112#")
    await rig.wait_kind(call.linkedid, "payment-step", outcome="rejected", reason="luhn")
    await key(call, TEST_CARD + "#12301")
    await key(call, "23")
    await rig.wait_kind(call.linkedid, "payment-ended", outcome="approved")
    await rig.wait_for(lambda: call.player is None, what="the prompt player to finish")
    assert "pay-retry" in [f.rsplit("/", 1)[-1] for f in call.caller_heard]


async def test_cancel_mid_capture(pay_rig: Rig) -> None:
    rig = pay_rig
    call = await bridged_call(rig)
    desk(rig).start(call.linkedid, amount="5", currency="GBP")
    await wait_phase(rig, call, "collecting")
    await key(call, "4111")
    assert desk(rig).cancel(call.linkedid, by="api")
    await rig.wait_kind(call.linkedid, "payment-ended", outcome="cancelled")
    await rig.wait_kind(call.linkedid, "recording-unmuted")
    assert [h for h in call.agent_heard if h[1] in "4111"] == []


async def test_hangup_mid_capture(pay_rig: Rig, gateway: PaymentGateway) -> None:
    rig = pay_rig
    call = await bridged_call(rig)
    payment_id = desk(rig).start(call.linkedid, amount="5", currency="GBP")
    await wait_phase(rig, call, "collecting")
    await key(call, TEST_CARD[:8])
    await call.hangup()
    await rig.settle(call)
    await rig.wait_kind(call.linkedid, "payment-ended", outcome="hangup")
    assert desk(rig).active(call.linkedid) is None
    assert not [c for c in gateway.charges if c.reference == payment_id]


@pytest.mark.parametrize("pay_rig", [{"connector": {"read_timeout_s": 0.3, "attempts": 2, "backoff_s": 0.05}}],
                         indirect=True)
async def test_connector_timeout_keeps_the_recording_muted_until_the_payment_ends(
        pay_rig: Rig, gateway: PaymentGateway) -> None:
    rig = pay_rig
    gateway.delay_s = 2.0
    call = await bridged_call(rig)
    desk(rig).start(call.linkedid, amount="5", currency="GBP")
    await wait_phase(rig, call, "collecting")
    await key(call, TEST_CARD + "#" + "1230123")
    await wait_phase(rig, call, "submitting")
    assert call.recording.muted
    await rig.wait_kind(call.linkedid, "payment-ended", outcome="unknown")
    await rig.wait_for(lambda: call.player is None, what="the prompt player to finish")
    assert "pay-failed" in call.caller_heard[-1]
    await rig.wait_kind(call.linkedid, "recording-unmuted")


async def test_listener_link_lost_mid_capture_asks_again_and_never_unguards(pay_rig: Rig) -> None:
    rig = pay_rig
    call = await bridged_call(rig)
    desk(rig).start(call.linkedid, amount="5", currency="GBP")
    await wait_phase(rig, call, "collecting")
    await key(call, "41111111")
    logins = rig.pbx.logins
    rig.pbx.drop_connections()
    await call.press("1")  # lost with the link: nobody reads it, the agent still cannot hear it
    await rig.wait_for(lambda: rig.pbx.logins > logins and rig.listener.manager.connected, 15.0, "reconnect")
    await rig.wait_for(lambda: rig.listener.resyncs >= 2, 15.0, "resync")
    await rig.wait_for(lambda: "card: waiting" in desk(rig).hub.latest(call.linkedid)[-1].lines(), 10.0,
                       "the card number asked again")
    assert call.recording.muted
    assert [h for h in call.agent_heard if h[1] in "41"] == []
    await key(call, TEST_CARD + "#1230123")
    await rig.wait_kind(call.linkedid, "payment-ended", outcome="approved")


async def test_an_agent_not_behind_a_local_channel_cannot_be_guarded(pay_rig: Rig) -> None:
    rig = pay_rig
    call = await bridged_call(rig)
    session_call = rig.listener.calls[call.linkedid]
    for channel in session_call.channels.values():
        if channel.role == "agent":
            channel.name = "PJSIP/agent-101-0000002a"  # as if dialled directly
    desk(rig).start(call.linkedid, amount="5", currency="GBP")
    await rig.wait_kind(call.linkedid, "payment-ended", outcome="error")
    assert "not a Local channel" in rig.entry(call.linkedid, "payment-ended").data["reason"]


async def test_leak_search_finds_the_card_nowhere(rig: Rig, gateway: PaymentGateway, tmp_path, caplog) -> None:
    """A known test card through the real path: logs, the ledger database, the recording - zero hits."""
    import logging

    from callguard.vault.dtmf import scan
    from callguard.vault.leaks import classify, recording_window, summary

    card = "4012888888881881"
    caplog.set_level(logging.DEBUG)
    rig.pbx.write_recordings = True
    rig.config = make_config(rig.pbx.port, payments={"url": gateway.url},
                             asterisk={"recording_dir": str(tmp_path / "rec")}, vault={"ingest_on_stop": False})
    connector = HttpsConnector(ConnectorSettings(gateway.url, gateway.api_key, connect_timeout_s=20.0),
                               verify=gateway.client_context())
    await rig.start_listener(connector=connector)
    call = await bridged_call(rig)
    await asyncio.sleep(0.3)
    await call.press("5")  # before the payment, recorded: the scan must find this one (it can find tones)
    await asyncio.sleep(0.3)
    desk(rig).start(call.linkedid, amount="12.00", currency="GBP")
    await wait_phase(rig, call, "collecting")
    await key(call, card + "#" + "1230" + "737")
    await rig.wait_kind(call.linkedid, "payment-ended", outcome="approved")
    await rig.wait_kind(call.linkedid, "recording-unmuted")
    await asyncio.sleep(0.3)
    await call.hangup()
    await rig.settle(call)
    entries = rig.timeline(call.linkedid)
    rig.ledger.flush(5)
    windows = {card[i:i + 8] for i in range(len(card) - 7)} | {card[:-4]}
    haystacks = {"logs": caplog.text,
                 "ledger entries": "\n".join(repr(e.data) for e in entries),
                 "payment progress": repr([v.as_dict() for v in desk(rig).hub.latest()])}
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.suffix in (".sqlite", ".sqlite-wal", ".sqlite-shm", ".wav", ".jsonl", ".log"):
            haystacks[str(path)] = path.read_bytes().decode("latin-1")
    assert any(p.endswith(".sqlite") for p in haystacks)
    hits = {where: [w for w in windows if w in text] for where, text in haystacks.items()}
    assert not any(hits.values()), hits
    assert call.agent_heard and not [h for h in call.agent_heard if h[1] != "5"]
    # The recording: the keypad tones of the payment were never written, the earlier one was.
    [recording] = call.recordings
    tones, _ = scan(recording.audio.path)
    window = recording_window(entries, recording.file)
    found = summary(classify(tones, window), window)
    assert found["leaked_digits"] == "5" and found["mute_failures"] == 0
    assert not [t for t in found["tones"] if t["in_payment_segment"]]


async def test_a_listener_stopping_mid_capture_ends_it_and_releases_the_agent(pay_rig: Rig) -> None:
    rig = pay_rig
    call = await bridged_call(rig)
    desk(rig).start(call.linkedid, amount="5", currency="GBP")
    await wait_phase(rig, call, "collecting")
    await key(call, "4111")
    half = call.agent_far
    assert "in" in half.muted_audio
    running, rig.running = rig.running, None
    await running.stop()  # graceful: SIGTERM
    assert "in" not in half.muted_audio and half.variables["FRAME_DROP(RX)"] == ""
    await rig.wait_for(lambda: call.player is None, what="the prompt player to finish")
    assert call.caller_heard[-1].endswith("pay-cancelled")
    ended = rig.entry(call.linkedid, "payment-ended").data
    assert ended["outcome"] == "cancelled" and ended["reason"] == "cancelled by listener-stop"


async def test_the_guard_goes_on_the_local_half_in_the_callers_bridge_whichever_leg_was_called_agent(
        pay_rig: Rig) -> None:
    """Real Asterisk 22: the agent's side of callguard-agent forms its own bridge (;2 + the agent's phone)
    before ;1 joins the caller's, all with the call's Linkedid, so the listener may name the phone "agent"."""
    from callguard.adapters.asterisk.listener import _Channel

    rig = pay_rig
    call = await bridged_call(rig)
    wired = rig.listener.calls[call.linkedid]
    for channel in wired.channels.values():
        if channel.role == "agent":
            channel.role = "joiner"
    wired.channels["PJSIP/agent-101-0000002a"] = _Channel("PJSIP/agent-101-0000002a", "agent")
    desk(rig).start(call.linkedid, amount="5", currency="GBP")
    await wait_phase(rig, call, "collecting")
    assert rig.sent("Setvar", channel=call.agent_far.name, variable="FRAME_DROP(RX)", value="DTMF_BEGIN,DTMF_END")
    await key(call, "4111")
    assert [h for h in call.agent_heard if h[1] == "4"] == []
    assert desk(rig).cancel(call.linkedid)
    await rig.wait_kind(call.linkedid, "payment-ended", outcome="cancelled")


async def test_the_agent_starts_and_cancels_with_hotkeys_confirmed_by_getvar(pay_rig: Rig) -> None:
    """*8 / *9: acted on only once Getvar reads back what the card Gosub wrote on the staff channel."""
    rig = pay_rig
    call = await bridged_call(rig)
    call.agent.variables.update({"CALLGUARD_PAY_AMOUNT": "12.50", "CALLGUARD_PAY_CURRENCY": "EUR"})  # the CRM's
    await call.hotkey("card-start")
    await wait_phase(rig, call, "collecting")
    started = rig.entry(call.linkedid, "payment-started").data
    assert (started["source"], started["staff_leg"], started["amount"], started["currency"]) == (
        "agent-hotkey", call.agent.name, "12.50", "EUR")
    await key(call, "4111")
    rejected = rig.listener.rejected
    # a forged card-cancel (a caller's CR/LF caller id can write whole frames): no Gosub wrote anything
    rig.pbx._user_event(call, call.agent, "card-cancel", "agent-hotkey")
    await rig.wait_for(lambda: rig.listener.rejected > rejected, what="the forged cancel refused")
    assert desk(rig).active(call.linkedid) is not None
    # a replay of the genuine start cannot start a second one (its sequence was acted on)
    rig.pbx._user_event(call, call.agent, "card-start", "agent-hotkey")
    await rig.wait_for(lambda: rig.listener.rejected > rejected + 1, what="the replayed start refused")
    await call.hotkey("card-cancel")
    await rig.wait_kind(call.linkedid, "payment-ended", outcome="cancelled", reason="cancelled by agent-hotkey")
    assert [h for h in call.agent_heard if h[1] == "4"] == []
    assert len([e for e in rig.timeline(call.linkedid) if e.kind == "payment-started"]) == 1


async def test_an_ivr_step_starts_a_card_payment(pay_rig: Rig) -> None:
    rig = pay_rig
    call = await bridged_call(rig)
    call.channel.variables.update({"CALLGUARD_PAY_AMOUNT": "3.00", "CALLGUARD_PAY_CURRENCY": "GBP"})
    await call.ivr("card-start")  # Gosub(callguard-card,ivr,1) on the caller's channel
    await wait_phase(rig, call, "collecting")
    await key(call, TEST_CARD + "#1230123")
    await rig.wait_kind(call.linkedid, "payment-ended", outcome="approved")
    started = rig.entry(call.linkedid, "payment-started").data
    assert (started["source"], started["amount"]) == ("ivr", "3.00")
    assert rig.entry(call.linkedid, "payment-ended").data["last4"] == "1111"
