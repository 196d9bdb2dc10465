"""A card capture on the call: muted until the capture itself ends, whatever else is signalled."""

from __future__ import annotations

from callguard.core import events as ev
from callguard.core.commands import MuteRecording, StopRecording, UnmuteRecording
from tests.core.conftest import Driver


def test_capture_mutes_and_only_its_own_end_unmutes(driver: Driver) -> None:
    driver.recording()
    out = driver.feed(ev.CaptureStarted, "pay-1", ev.Source.API, "PJSIP/agent-1", "charge", "49.90", "GBP")
    assert any(isinstance(c, MuteRecording) for c in out)
    started = driver.entries("payment-started")[-1].data
    assert (started["payment_id"], started["capture"], started["staff_leg"], started["amount"]) == (
        "pay-1", True, "PJSIP/agent-1", "49.90")
    assert not driver.session.audio_protected  # asked, not yet confirmed
    driver.feed(ev.RecordingMuted)
    assert driver.session.audio_protected
    # nothing but the capture's own end lifts it: not a resume, not a payment-end, not another id
    for event, args in ((ev.ResumeRequested, (ev.Source.HOTKEY,)), (ev.PaymentEnded, (ev.Source.IVR,)),
                        (ev.CaptureEnded, ("pay-other",))):
        assert not any(isinstance(c, UnmuteRecording) for c in driver.feed(event, *args))
    assert driver.state == "muted"
    out = driver.feed(ev.CaptureEnded, "pay-1", {"payment_id": "pay-1", "outcome": "approved", "last4": "1111"})
    assert any(isinstance(c, UnmuteRecording) for c in out)
    ended = driver.entries("payment-ended")[-1].data
    assert (ended["outcome"], ended["last4"], ended["capture"]) == ("approved", "1111", True)


def test_a_pause_still_holds_the_mute_after_the_capture_ends(driver: Driver) -> None:
    driver.muted()  # paused by hotkey
    driver.feed(ev.CaptureStarted, "pay-1")
    out = driver.feed(ev.CaptureEnded, "pay-1", {"outcome": "cancelled"})
    assert not any(isinstance(c, UnmuteRecording) for c in out)
    assert driver.entries("payment-ended")[-1].data["still_muted_for"] == ["pause"]


def test_unrecorded_calls_are_protected_once_any_stop_is_confirmed(driver: Driver) -> None:
    assert Driver().unrecorded().session.audio_protected
    driver.recording().feed(ev.CaptureStarted, "pay-1")
    out = driver.feed(ev.TimerFired, "mute-confirm")  # the PBX never confirmed the mute: fail safe stop
    assert any(isinstance(c, StopRecording) for c in out)
    assert not driver.session.audio_protected  # stop asked for, not confirmed
    driver.feed(ev.RecordingStopped)
    assert driver.session.audio_protected


def test_a_call_in_its_notice_is_not_protected() -> None:
    assert not Driver().notice().session.audio_protected
