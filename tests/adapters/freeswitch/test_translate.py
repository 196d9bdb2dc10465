"""The captured FreeSWITCH events translated into engine events (no sockets)."""

from __future__ import annotations

from callguard.adapters.freeswitch.wire import ESLParser, Frame
from callguard.adapters.freeswitch.translate import (
    offer_from_channel_data,
    translate_inbound,
    translate_outbound,
)
from callguard.core import events as ev
from callguard.testing.esl_wire import event_frame

from .streams import FIXTURES, server_bytes

CALL = "337c44b3-d15a-4ddc-8a6a-6f1275f058d7"
AGENT_LEG = "feb11acb-1cd6-481e-870a-70ae4ea2aad8"
PATH = f"/var/lib/freeswitch/recordings/callguard/{CALL}.wav"


def frames(name: str) -> list[Frame]:
    return ESLParser().feed(server_bytes(FIXTURES / name))


def inbound(name: str) -> list:
    out = []
    for frame in frames(name):
        if frame.is_event:
            t = translate_inbound(frame.event, received_at=0.0)
            if t is not None:
                out.append(t)
    return out


def test_connect_reply_is_the_call_offer() -> None:
    offer = offer_from_channel_data(frames("freeswitch1_10_consent_pause.outbound.esl")[0].headers, 0.0)
    assert offer is not None and not offer.is_join
    assert (offer.call_id, offer.channel) == (CALL, CALL)
    assert offer.party == ev.Party(CALL, "+14155550123", "José Cust", "caller", staff=False)
    assert offer.at == 1795373497.80858  # Event-Date-Timestamp, microseconds
    event = offer.event()
    assert isinstance(event, ev.CallOffered) and event.answered


def test_a_leg_carrying_another_calls_id_is_a_joiner() -> None:
    headers = frames("freeswitch1_10_consent_pause.outbound.esl")[0].headers.decoded()
    headers.update({"Unique-ID": AGENT_LEG, "variable_callguard_call": CALL, "Call-Direction": "outbound",
                    "Caller-Direction": "outbound", "Caller-Callee-ID-Number": "+13055550100",
                    "Caller-Callee-ID-Name": "Flo"})
    offer = offer_from_channel_data(headers, 0.0)
    assert offer is not None and offer.is_join and offer.call_id == CALL
    joined = offer.event()
    assert isinstance(joined, ev.PartyJoined) and joined.announceable
    assert joined.party == ev.Party(AGENT_LEG, "+13055550100", "Flo", "joiner", staff=False)


def test_consent_pause_inbound_events() -> None:
    got = inbound("freeswitch1_10_consent_pause.inbound.esl")
    kinds = [(t.call_id, type(t.event).__name__) for t in got]
    assert kinds[:3] == [(CALL, "RecordingStarted"), (CALL, "PauseRequested"), (CALL, "ResumeRequested")]
    started = got[0].event
    assert started.recording_ref == PATH and started.at == 1795373500.868523  # its Event-Date-Timestamp
    pause = got[1]
    # fired on the agent's leg, mapped to the recorded leg by variable_callguard_call
    assert pause.origin == AGENT_LEG and pause.event.source is ev.Source.HOTKEY
    assert pause.event.at == 1795373502.908605
    # the RECORD_STOP of a hanging-up channel is the hangup, not a stop someone asked for
    hangups = [t for t in got if isinstance(t.event, ev.HungUp)]
    assert (CALL, CALL) in [(t.call_id, t.event.channel) for t in hangups]
    assert not any(isinstance(t.event, ev.RecordingStopped) for t in got)
    assert all(t.event.cause == "normal" for t in hangups)


def test_decline_outbound_events_give_the_digit() -> None:
    out = [translate_outbound(f.event, CALL, CALL, 0.0, "callguard_digit")
           for f in frames("freeswitch1_10_decline.outbound.esl") if f.is_event]
    engine = [e for e in out if e is not None]
    assert [type(e).__name__ for e in engine[:2]] == ["NoticeStarted", "DigitsCollected"]
    assert engine[1].digits == "2" and engine[1].channel == CALL


def test_hangup_during_notice_outbound_gives_hangup_then_empty_gather() -> None:
    out = [translate_outbound(f.event, CALL, CALL, 0.0, "callguard_digit")
           for f in frames("freeswitch1_10_hangup_during_notice.outbound.esl") if f.is_event]
    engine = [type(e).__name__ for e in out if e is not None]
    assert engine[:3] == ["NoticeStarted", "HungUp", "DigitsCollected"]


def test_custom_event_without_a_call_id_is_ignored() -> None:
    frame = ESLParser().feed(event_frame([("Event-Subclass", "callguard::pause"), ("Event-Name", "CUSTOM"),
                                          ("Unique-ID", "not a uuid")]))[0]
    assert translate_inbound(frame.event, 0.0) is None


def test_unrelated_events_are_not_translated() -> None:
    for name in ("HEARTBEAT", "RE_SCHEDULE", "CHANNEL_STATE", "CUSTOM"):
        frame = ESLParser().feed(event_frame([("Event-Name", name), ("Unique-ID", CALL)]))[0]
        assert translate_inbound(frame.event, 0.0) is None
