"""The card capture state machine: every path a caller, an agent or a gateway can take it down."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callguard.core.commands import CancelTimer, StartTimer
from callguard.payments import capture as cap
from tests.payments.support import AMEX_CARD, TEST_CARD, Till, text_of


def pay(till: Till, number: str = TEST_CARD, expiry: str = "1230", cvv: str = "123") -> None:
    till.keys(number + "#" + expiry + cvv)


def test_nothing_is_asked_before_the_pbx_confirmed_protection() -> None:
    till = Till(protect=False)
    assert till.capture.phase is cap.Phase.ARMING
    assert [type(c) for c in till.commands[:3]] == [cap.GuardAgent, StartTimer, StartTimer]
    assert till.of(cap.GuardAgent)[0].on is True
    till.keys("4111")  # keys now: nobody asked, nothing counts
    assert till.prompts() == [] and till.capture.holds_digits is False
    till.feed(cap.Protected)
    assert till.prompts() == ["pay-start", "pay-card-number"]
    assert till.last_lines() == ["card: waiting", "expiry: waiting", "CVV: waiting"]


def test_protection_not_confirmed_in_time_ends_the_payment_and_lifts_the_guard() -> None:
    till = Till(protect=False)
    till.feed(cap.Timeout, cap.ARM_TIMER)
    assert till.capture.finished and till.result.outcome == "error"
    assert "not protected" in till.result.reason
    assert till.of(cap.GuardAgent)[-1].on is False
    assert till.prompts() == ["pay-failed"]


def test_a_good_card_goes_to_the_connector_once_with_masked_progress() -> None:
    till = Till()
    till.keys(TEST_CARD[:12])
    assert till.last_lines()[0] == "card: 12 of 16 digits, Visa"
    till.keys(TEST_CARD[12:] + "#")
    assert till.last_lines()[:2] == ["card: ok, Visa", "expiry: waiting"]
    till.keys("12")
    assert till.last_lines()[1] == "expiry: 2 of 4 digits"
    till.keys("30")
    assert till.last_lines()[1:] == ["expiry: ok", "CVV: waiting"]
    till.keys("12")
    assert till.last_lines()[2] == "CVV: 2 of 3 digits"
    till.keys("3")
    assert till.capture.phase is cap.Phase.SUBMITTING
    [submit] = till.of(cap.Submit)
    assert submit.card.fields() == {"number": TEST_CARD, "exp_month": 12, "exp_year": 2030, "cvc": "123"}
    assert submit.operation == "charge" and str(submit.amount) == "49.90" and submit.idempotency_key == "cg-pay-1"
    assert not till.capture.holds_digits  # the card object is now the only holder
    assert till.prompts()[-1] == "pay-processing"
    till.feed(cap.ConnectorReplied, "approved", "tok_9", "ch_1")
    result = till.result
    assert (result.outcome, result.brand, result.last4, result.token, result.reference) == (
        "approved", "visa", "1111", "tok_9", "ch_1")
    assert result.idempotency_key == "cg-pay-1"
    assert till.of(cap.GuardAgent)[-1].on is False
    assert till.prompts()[-1] == "pay-approved"


def test_no_amount_means_a_token_for_the_card() -> None:
    till = Till(amount=None)
    pay(till)
    assert till.of(cap.Submit)[0].operation == "tokenize"
    till.feed(cap.ConnectorReplied, "approved", "tok_1")
    assert till.result.outcome == "tokenized"


def test_bad_luhn_is_asked_again_and_a_good_retry_goes_through() -> None:
    till = Till()
    till.keys("4111111111111112#")
    [rejected] = till.entries("payment-step")[1:]
    assert dict(rejected.data) == {"payment_id": "pay-1", "step": "number", "outcome": "rejected", "reason": "luhn",
                                   "digits_entered": 16, "attempt": 1}
    assert till.prompts()[-2:] == ["pay-retry", "pay-card-number"]
    assert till.last_lines()[0] == "card: 0 digits (again: luhn)"
    pay(till)
    assert till.capture.phase is cap.Phase.SUBMITTING


def test_three_bad_numbers_end_the_payment() -> None:
    till = Till()
    for _ in range(3):
        till.keys("4111111111111112#")
    assert till.result.outcome == "failed" and till.result.reason.startswith("number: luhn")
    assert till.of(cap.Submit) == []


def test_amex_wants_fifteen_digits_and_a_four_digit_code() -> None:
    till = Till()
    till.keys(AMEX_CARD)  # the only Amex length: complete without '#'
    assert till.last_lines()[0] == "card: ok, American Express"
    till.keys("1230")
    till.keys("123")
    assert till.last_lines()[2] == "CVV: 3 of 4 digits"
    till.keys("4")
    assert till.of(cap.Submit)[0].card.fields()["cvc"] == "1234"


def test_star_starts_the_current_field_again() -> None:
    till = Till()
    till.keys("41111111")
    till.keys("*")
    assert till.last_lines()[0] == "card: waiting"
    assert till.prompts()[-1] == "pay-card-number"
    pay(till)
    assert till.of(cap.Submit)[0].card.fields()["number"] == TEST_CARD


def test_expiry_in_the_past_is_asked_again() -> None:
    till = Till()
    till.keys(TEST_CARD + "#" + "0120")
    assert till.entries("payment-step")[-1].data["reason"] == "expired"
    assert till.last_lines()[1] == "expiry: 0 of 4 digits (again: expired)"


def test_postcode_is_collected_when_configured() -> None:
    till = Till(cap.CaptureSettings(collect_postcode=True, postcode_min_digits=5, postcode_max_digits=5))
    pay(till)
    assert till.prompts()[-1] == "pay-postcode"
    till.keys("94103")
    assert till.of(cap.Submit)[0].card.fields()["postcode"] == "94103"


def test_silence_asks_again_then_gives_up() -> None:
    till = Till(cap.CaptureSettings(max_attempts=2))
    till.feed(cap.Timeout, cap.FIELD_TIMER)
    assert till.entries("payment-step")[-1].data["reason"] == "no-input"
    till.feed(cap.Timeout, cap.FIELD_TIMER)
    assert till.result.outcome == "failed"


def test_a_pause_in_typing_ends_the_field() -> None:
    till = Till()
    till.keys(TEST_CARD)
    till.feed(cap.Timeout, cap.FIELD_TIMER)
    assert till.last_lines()[0] == "card: ok, Visa"


@pytest.mark.parametrize("event,args,outcome", [
    (cap.Cancel, ("api",), "cancelled"), (cap.CallEnded, (), "hangup"), (cap.Timeout, (cap.TOTAL_TIMER,), "timeout"),
    (cap.PromptFailed, ("file missing",), "error"),
])
def test_every_way_out_wipes_the_digits_and_lifts_the_guard(event, args, outcome) -> None:
    till = Till()
    till.keys(TEST_CARD + "#12")
    assert till.capture.holds_digits
    till.feed(event, *args)
    assert till.capture.finished and till.result.outcome == outcome
    assert not till.capture.holds_digits
    assert till.of(cap.GuardAgent)[-1].on is False
    assert {c.name for c in till.of(CancelTimer)} >= {cap.FIELD_TIMER, cap.TOTAL_TIMER}
    assert till.feed(cap.Key, "1") == []  # over is over


def test_a_hangup_while_the_gateway_decides_waits_for_its_answer() -> None:
    till = Till()
    pay(till)
    till.feed(cap.CallEnded)
    till.feed(cap.Cancel, "api")
    assert till.capture.phase is cap.Phase.SUBMITTING
    till.feed(cap.ConnectorReplied, "approved", "tok_1", "ch_1")
    assert till.result.outcome == "approved" and "hangup" in till.result.reason
    assert "pay-approved" not in till.prompts()  # nobody is there to hear it


@pytest.mark.parametrize("status,outcome,prompt", [
    ("declined", "declined", "pay-declined"), ("failed", "failed", "pay-failed"), ("unknown", "unknown", "pay-failed"),
    ("weird", "failed", "pay-failed"),
])
def test_connector_answers(status: str, outcome: str, prompt: str) -> None:
    till = Till()
    pay(till)
    till.feed(cap.ConnectorReplied, status, "", "", "card_declined")
    assert (till.result.outcome, till.prompts()[-1]) == (outcome, prompt)


def test_keys_while_submitting_do_nothing() -> None:
    till = Till()
    pay(till)
    assert till.keys("5555#*") == []


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789*#ABCD", max_size=60))
def test_a_hostile_keypad_only_ever_fills_the_current_field(keys: str) -> None:
    """Whatever is keyed: no digit appears in any command but the connector's card, no field overflows."""
    till = Till()
    till.keys(keys)
    text = text_of(till.commands)
    runs = re.findall(r"\d{5,}", text)  # the last four may be shown, nothing longer
    assert not [r for r in runs if r in keys], runs
    for submit in till.of(cap.Submit):
        card = submit.card.fields()
        assert str(card["number"]).isdigit() and 12 <= len(str(card["number"])) <= 19
        assert str(card["cvc"]).isdigit()
    for line in till.last_lines():
        assert "#" not in line and "*" not in line


def test_transition_table_has_a_way_out_of_every_live_phase() -> None:
    for phase in (cap.Phase.ARMING, cap.Phase.COLLECTING):
        for inp in (cap.Input.CANCEL, cap.Input.HANGUP, cap.Input.TIMEOUT):
            assert cap.TRANSITIONS[(phase, inp)][0] is cap.Phase.ENDED
    assert cap.TRANSITIONS[(cap.Phase.SUBMITTING, cap.Input.REPLIED)][0] is cap.Phase.ENDED
