"""Card field rules: brands by IIN, lengths per brand, Luhn, expiry, masks."""

from __future__ import annotations

from datetime import date

import pytest

from callguard.payments import card as cards

# Test numbers payment providers publish (never real cards).
GOOD = {
    "4111111111111111": "visa", "4012888888881881": "visa", "5555555555554444": "mastercard",
    "2223003122003222": "mastercard", "378282246310005": "amex", "371449635398431": "amex",
    "6011111111111117": "discover", "3056930009020004": "diners", "36227206271667": "diners",
    "3566002020360505": "jcb", "6200000000000005": "unionpay",
}


@pytest.mark.parametrize("number,brand", sorted(GOOD.items()))
def test_published_test_cards_are_valid_with_their_brand(number: str, brand: str) -> None:
    assert cards.number_problem(number) is None
    assert cards.brand_of(number).key == brand


@pytest.mark.parametrize("number,problem", [
    ("4111111111111112", "luhn"),
    ("411111111111111", "wrong-length"),  # 15 digits: no Visa has 15
    ("37828224631000", "wrong-length"),  # 14-digit Amex
    ("9111111111111111", "unknown-brand"),
    ("41111111111", "wrong-length"),
    ("41111111111111111111", "wrong-length"),
    ("4111-1111-1111-1111", "wrong-length"),
])
def test_bad_numbers_say_why(number: str, problem: str) -> None:
    assert cards.number_problem(number) == problem


def test_brand_waits_until_the_prefix_decides() -> None:
    assert cards.brand_of("") is None
    assert cards.brand_of("5") is None  # Mastercard or Maestro
    assert cards.brand_of("51").key == "mastercard"
    assert cards.brand_of("6") is None
    assert cards.brand_of("6011").key == "discover"
    assert cards.brand_of("622126").key == "discover"  # inside UnionPay's 62, claimed by Discover
    assert cards.brand_of("622100").key == "unionpay"
    assert cards.brand_of("3") is None  # Amex, JCB or Diners


def test_amex_security_code_has_four_digits() -> None:
    assert cards.AMEX.cvv_length == 4 and cards.VISA.cvv_length == 3


TODAY = date(2026, 11, 22)


@pytest.mark.parametrize("digits,reason", [
    ("1126", None), ("1226", None), ("0130", None), ("1026", "expired"), ("1325", "month"), ("0026", "month"),
    ("126", "wrong-length"), ("12345", "wrong-length"), ("1299", "too-far"),
])
def test_expiry_must_be_a_real_month_not_in_the_past(digits: str, reason: str | None) -> None:
    expiry, problem = cards.parse_expiry(digits, TODAY)
    assert problem == reason
    assert (expiry is None) == (reason is not None)


def test_expiry_keeps_the_century() -> None:
    expiry, _ = cards.parse_expiry("0531", TODAY)
    assert expiry == cards.Expiry(5, 2031) and expiry.as_mmyy() == "0531"


def test_masks_show_only_the_last_four() -> None:
    assert cards.masked("4111111111111111") == "************1111"
    assert cards.last_four("378282246310005") == "0005"
