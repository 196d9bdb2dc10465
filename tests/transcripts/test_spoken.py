"""Finding spoken card data in timed words (pure functions: no engine, no audio)."""

from __future__ import annotations

import pytest

from callguard.transcripts.engines import Word
from callguard.transcripts.redact import fill_spans, merge_spans
from callguard.transcripts.spoken import CARD, EXPIRY, SECURITY_CODE, find_sensitive, luhn_ok, redact_words

NI_EMAIL = {"ni_number": r"\b[a-z] ?[a-z] ?\d{6} ?[a-d]\b", "email": r"[a-z0-9._]+@[a-z0-9]+(\.[a-z]+)+"}


def words(script: str, step: float = 0.35, pause: float = 0.6) -> list[Word]:
    """Words 0.3 s long, 0.05 s apart; ``|`` is a pause of ``pause`` seconds."""
    out, t = [], 0.0
    for token in script.split():
        if token == "|":
            t += pause
            continue
        out.append(Word(token, t, t + 0.3))
        t += step
    return out


def kinds(script: str, **kw) -> list[str]:
    return [f.kind for f in find_sensitive(words(script), **kw)]


def test_luhn():
    assert luhn_ok("4111111111111111") and luhn_ok("5555555555554444") and luhn_ok("378282246310005")
    assert not luhn_ok("4111111111111112")


@pytest.mark.parametrize("script", [
    "my card number is four one one one | one one one one | one one one one | one one one one thanks",
    "it's four one double one | one one one one | um | one one one one | uh one one one one",
    "five five five five | five five five five | five five five five | four four four four",
    "five triple five | five five five five | five five five five | four double four four",
    "three seven eight two | eight two two four six | three one oh oh oh five",  # Amex, "oh" for zero
    "forty one eleven | eleven eleven | eleven eleven | eleven eleven",  # read as pairs
    "my card is 4111 1111 1111 1111 okay",  # engines that write numerals
])
def test_card_numbers_said_every_way(script):
    found = find_sensitive(words(script))
    assert [f.kind for f in found] == [CARD]
    redacted = " ".join(w.text for w in redact_words(words(script), found))
    assert "[card number redacted]" in redacted
    assert not any(d in redacted.split() for d in ("one", "four", "five", "eleven", "4111"))


@pytest.mark.parametrize("script", [
    "you can call me back on oh seven seven double oh | nine one two | three four five six",  # UK mobile
    "my order number is four five six seven | eight nine one two | three four five six | seven eight nine one",
    "the reference is four one one one | one one one one | one one one one | one one one two",  # fails Luhn
    "the amount is four hundred and twenty five dollars and ninety nine cents",
    "call me on four one five | five five five | oh one two three",  # a US phone number
])
def test_decoys_are_not_cards(script):
    assert kinds(script) == []


def test_a_long_pause_or_other_words_split_a_run():
    assert kinds("four one one one one one one one | | | | one one one one one one one one", ) == [CARD]
    gap = words("four one one one one one one one") + [Word(w.text, w.start + 10, w.end + 10)
                                                       for w in words("one one one one one one one one")]
    assert find_sensitive(gap) == []
    assert kinds("four one one one one one one one my dog one one one one one one one one") == []


def test_expiry_and_security_code_near_a_card():
    script = ("card number four one one one | one one one one | one one one one | one one one one | "
              "and the expiry is twelve twenty eight | security code one two three")
    found = find_sensitive(words(script))
    assert [f.kind for f in found] == [CARD, EXPIRY, SECURITY_CODE]
    text = " ".join(w.text for w in redact_words(words(script), found))
    assert text.endswith("[card number redacted] and the expiry is [expiry date redacted] security code "
                         "[security code redacted]")


def test_expiry_and_code_read_straight_on_and_by_month_name():
    assert kinds("four one one one | one one one one | one one one one | one one one one | oh nine two seven | "
                 "four four one") == [CARD, EXPIRY, SECURITY_CODE]
    assert kinds("four one one one | one one one one | one one one one | one one one one expires march "
                 "twenty nine") == [CARD, EXPIRY]


def test_short_numbers_far_from_a_card_are_left_alone():
    assert kinds("my pin is one two three four and the room is five five five") == []


def test_configured_patterns_ni_number_and_email():
    found = find_sensitive(words("my national insurance number is q q one two three four five six c and my email "
                                 "is john dot smith at example dot com thanks"), patterns=NI_EMAIL)
    assert [f.kind for f in found] == ["ni_number", "email"]
    text = " ".join(w.text for w in redact_words(words("email john dot smith at example dot com thanks"),
                                                 find_sensitive(words("email john dot smith at example dot com "
                                                                      "thanks"), patterns=NI_EMAIL)))
    assert text == "email [email redacted] thanks"


def test_findings_keep_no_content():
    found = find_sensitive(words("four one one one | one one one one | one one one one | one one one one"))
    assert set(found[0].as_dict()) == {"kind", "start_s", "end_s", "words"}


def test_spans_padded_merged_and_filled():
    assert merge_spans([(1.0, 2.0), (2.2, 3.0), (5.0, 5.5)], 0.15, 5.6) == [(0.85, 3.15), (4.85, 5.6)]
    import numpy as np

    audio = np.full(8000 * 2, 1000, dtype=np.int16)
    silenced = fill_spans(audio, 8000, [(0.5, 1.0)])
    assert not silenced[4000:8000].any() and (silenced[:4000] == 1000).all() and (silenced[8000:] == 1000).all()
    toned = fill_spans(audio, 8000, [(0.5, 1.0)], fill="tone", tone_hz=1000)
    assert toned[4000:8000].std() > 1000 and (audio == 1000).all()


def test_after_a_card_keyword_one_stray_digit_at_the_edge_is_forgiven():
    # "my card number is ..." with "is" heard as "eight": 17 digits, no pause after the stray one
    assert kinds("my card number eight four one one one one one one one one one one one one one one one") == [CARD]
    assert kinds("my order number eight four one one one one one one one one one one one one one one one") == []


def test_after_a_card_keyword_many_digits_are_redacted_even_when_misheard():
    # the recogniser dropped and garbled digits: no Luhn-valid stretch, but it followed "the long number on the card"
    script = ("the long number on the card please | four one one | i'd | one one one | um one one | call | "
              "one one one one one two")
    assert kinds(script) == [CARD]
    # the same digits after "order number": a decoy, left alone
    assert kinds(script.replace("the long number on the card", "your order number")) == []
