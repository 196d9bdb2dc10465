"""Sensitive speech in a timed transcript: card numbers, expiry dates, security codes, patterns.

Pure functions over :class:`~callguard.transcripts.engines.Word` lists (no
audio, no I/O), so every rule is testable on a word list.

How a card number is found.  Words become *digit tokens* ("four" -> 4,
"oh"/"zero" -> 0, "double four" -> 44, "triple" likewise, "forty one" -> 41,
"eleven" -> 11, numerals such as "4111" from engines that write them).
Fillers ("um", "uh", "so", "and", ...) and pauses of up to ``MAX_GAP_S`` may
sit between digits; any other word ends the run.  Inside a run, a card
number is a stretch of 13-19 digits that passes the Luhn check, starts with
a card-network digit (2-6) and begins and ends on a *group boundary* (the
run's ends, a pause, a filler, the edge of a spoken group such as "double
four").  The boundary rule is what keeps decoys out: a 16-digit order number
that fails Luhn contains many 13-15 digit stretches, one in ten of which
would pass Luhn by chance, but people do not pause in the middle of them.

Recognisers get digits wrong, and Luhn needs all of them right, so there
is a second, recall-oriented rule (:func:`find_card_context`): after a card
keyword ("card", "visa", "the long number"), 12 or more digits said within
15 seconds are redacted as a card number whether or not they pass Luhn.

Near a card number (``near_card_s``): digits after "expiry"/"expires"/
"valid until" or a month name are an expiry date, digits after "security
code"/"CVV"/"on the back" are a security code, and 3-4 digits left over in
the card's own run (read straight on) are taken as expiry then code.

Configured patterns are regular expressions over the *compact* text: the
words joined by spaces, but digit tokens run together and "at"/"dot"
written as "@"/"." - so "john dot smith at example dot com" matches an
email pattern and "q q one two three four five six c" an NI number.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

from callguard.transcripts.engines import Word

MAX_GAP_S = 3.0  #: a longer silence between two digits ends the run
GROUP_GAP_S = 0.25  #: a silence at least this long between two digits is a group boundary
CARD_LENGTHS = range(13, 20)
CARD_FIRST_DIGITS = frozenset("23456")
CONTEXT_WINDOW_S = 15.0  #: after a card keyword, digits said within this many seconds ...
CONTEXT_MIN_DIGITS = 12  #: ... at least this many of them, are taken as a card number (see find_card_context)

CARD = "card-number"
EXPIRY = "expiry-date"
SECURITY_CODE = "security-code"
LABELS = {CARD: "card number", EXPIRY: "expiry date", SECURITY_CODE: "security code"}

_DIGITS = {"zero": "0", "oh": "0", "o": "0", "nought": "0", "one": "1", "two": "2", "three": "3", "four": "4",
           "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9"}
_TEENS = {w: str(10 + i) for i, w in enumerate(
    "ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen".split())}
_TENS = {w: str(20 + 10 * i)[0] for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split())}
_REPEAT = {"double": 2, "triple": 3}
FILLERS = frozenset("um uh er erm ah eh hmm mm so and then okay ok right yeah yes it's its is that's".split())
_EXPIRY_WORDS = frozenset("expiry expires expiration expire valid until exp".split())
_CARD_WORDS = frozenset("card visa mastercard amex debit credit long".split())  # "the long number"
_CODE_WORDS = frozenset("security code cvv cvc cv2 verification back".split())
_MONTHS = {w: f"{i + 1:02d}" for i, w in enumerate(
    "january february march april may june july august september october november december".split())}
_KEYWORD_REACH = 4  #: words between a keyword ("expiry") and the digits it introduces


@dataclass(frozen=True, slots=True)
class Digit:
    """One digit of a run, with the word it came from and whether a group boundary precedes it."""

    char: str
    word: int
    last_word: int  #: the last word of the token ("double four", "forty one" use two)
    start: float
    end: float
    boundary: bool


@dataclass(frozen=True, slots=True)
class Finding:
    """Something sensitive that was said: its kind, the words (indices) and the time span."""

    kind: str
    first_word: int
    last_word: int
    start: float
    end: float

    @property
    def label(self) -> str:
        return LABELS.get(self.kind, self.kind.replace("_", " ").replace("-", " "))

    def as_dict(self) -> dict[str, object]:
        """What the ledger and the catalogue keep: never the words themselves."""
        return {"kind": self.kind, "start_s": round(self.start, 3), "end_s": round(self.end, 3),
                "words": self.last_word - self.first_word + 1}


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _token_digits(words: Sequence[Word], i: int) -> tuple[str, int] | None:
    """The digits word ``i`` starts (and how many words it uses), or None if it is no number word."""
    text = words[i].text
    nxt = words[i + 1].text if i + 1 < len(words) else ""
    if text in _REPEAT and nxt in _DIGITS:
        return _DIGITS[nxt] * _REPEAT[text], 2
    if text in _DIGITS:
        return _DIGITS[text], 1
    if text in _TEENS:
        return _TEENS[text], 1
    if text in _TENS:
        if nxt in _DIGITS and _DIGITS[nxt] != "0":
            return _TENS[text] + _DIGITS[nxt], 2
        return _TENS[text] + "0", 1
    stripped = text.replace("-", "").replace(",", "")
    if stripped.isdigit():
        return stripped, 1
    return None


def digit_runs(words: Sequence[Word]) -> list[list[Digit]]:
    """Runs of spoken digits (fillers and short pauses allowed inside, anything else ends a run)."""
    runs: list[list[Digit]] = []
    current: list[Digit] = []
    boundary = True
    i = 0
    while i < len(words):
        token = _token_digits(words, i)
        if token is None:
            if words[i].text in FILLERS and current:
                boundary = True
            elif current:
                runs.append(current)
                current, boundary = [], True
            i += 1
            continue
        digits, used = token
        start, end = words[i].start, words[i + used - 1].end
        if current and start - current[-1].end > MAX_GAP_S:
            runs.append(current)
            current, boundary = [], True
        if current and start - current[-1].end >= GROUP_GAP_S:
            boundary = True
        for k, ch in enumerate(digits):
            current.append(Digit(ch, i, i + used - 1, start, end, boundary if k == 0 else False))
        boundary = used > 1 or len(digits) > 1  # "double four", "forty one", "4111" are groups of their own
        i += used
    if current:
        runs.append(current)
    return runs


def _boundaries(run: Sequence[Digit]) -> list[int]:
    """Positions in ``run`` where a group may start or end (0 and len included)."""
    cuts = {0, len(run)}
    cuts.update(k for k, d in enumerate(run) if d.boundary)
    cuts.update(k for k in range(1, len(run)) if run[k].word != run[k - 1].word and
                _token_edge(run, k))
    return sorted(cuts)


def _token_edge(run: Sequence[Digit], k: int) -> bool:
    """A multi-digit word ("4111", "forty one") is a group: its edges are boundaries."""
    same_before = sum(1 for d in run if d.word == run[k - 1].word)
    same_after = sum(1 for d in run if d.word == run[k].word)
    return same_before > 1 or same_after > 1


def _finding(kind: str, digits: Sequence[Digit]) -> Finding:
    return Finding(kind, digits[0].word, digits[-1].last_word, digits[0].start, digits[-1].end)


def _candidates(run: Sequence[Digit], cuts: Sequence[int], k: int) -> Iterable[tuple[int, int]]:
    """(start, end) stretches of card length from group boundaries, earliest start and longest first."""
    for a in (c for c in cuts if c >= k):
        for b in reversed(cuts):
            if b - a < CARD_LENGTHS.start:
                break
            if b - a in CARD_LENGTHS:
                yield a, b


def _card_at(run: Sequence[Digit], stretches: Iterable[tuple[int, int]]) -> tuple[int, int] | None:
    for a, b in stretches:
        digits = "".join(d.char for d in run[a:b])
        if digits[0] in CARD_FIRST_DIGITS and luhn_ok(digits):
            return a, b
    return None


def find_cards(runs: Sequence[Sequence[Digit]], words: Sequence[Word] = ()) -> list[tuple[Finding, list[Digit]]]:
    """Card numbers (longest first within a run), each with the run's digits left after it.

    After a card keyword ("card", "visa", ...) the recogniser's favourite
    mistake is forgiven too: one extra digit at either edge of the run ("is"
    heard as "eight" just before the number).  Without the keyword the
    stretch must sit on group boundaries (see the module docstring).
    """
    out = []
    for run in runs:
        cuts = _boundaries(run)
        relaxed = bool(words) and _keyword_before(words, run[0].word, _CARD_WORDS, reach=6)
        k = 0
        while k < len(run):
            best = _card_at(run, _candidates(run, cuts, k))
            if best is None and relaxed:
                edges = sorted({*cuts, min(k + 1, len(run)), max(len(run) - 1, k)})
                best = _card_at(run, _candidates(run, edges, k))
            if best is None:
                break
            a, b = best
            out.append((_finding(CARD, run[a:b]), list(run[b:])))
            k = b
            cuts = [c for c in cuts if c >= b]
    return out


def _keyword_before(words: Sequence[Word], index: int, keywords: frozenset[str], reach: int = _KEYWORD_REACH) -> bool:
    return any(w.text in keywords for w in words[max(0, index - reach):index])


def _near_card_details(words: Sequence[Word], runs: Sequence[Sequence[Digit]], card: Finding,
                       leftover: Sequence[Digit], near_s: float) -> list[Finding]:
    out: list[Finding] = []
    if leftover:  # read straight on after the card: expiry (MMYY) then security code
        rest = list(leftover)
        if len(rest) >= 4 and "01" <= "".join(d.char for d in rest[:2]) <= "12":
            out.append(_finding(EXPIRY, rest[:4]))
            rest = rest[4:]
        if 3 <= len(rest) <= 4:
            out.append(_finding(SECURITY_CODE, rest))
    for run in runs:
        if run[0].word <= card.last_word and run[-1].last_word >= card.first_word:
            continue  # the card's own run
        if not (card.start - near_s <= run[0].start <= card.end + near_s):
            continue
        first = run[0].word
        month = first > 0 and words[first - 1].text in _MONTHS
        if month or _keyword_before(words, first, _EXPIRY_WORDS):
            last = run[min(2 if month else 4, len(run)) - 1]
            out.append(Finding(EXPIRY, first - 1 if month else first, last.last_word,
                               words[first - 1].start if month else run[0].start, last.end))
        elif _keyword_before(words, first, _CODE_WORDS) or 3 <= len(run) <= 4:
            if len(run) <= 4 or _keyword_before(words, first, _CODE_WORDS):
                out.append(_finding(SECURITY_CODE, run[:4]))
    return out


def compact_text(words: Sequence[Word]) -> tuple[str, list[int]]:
    """The compact text for patterns and, per character, the index of the word it came from."""
    text: list[str] = []
    owner: list[int] = []
    previous = ""
    i = 0
    while i < len(words):
        token = _token_digits(words, i)
        form, used = (token if token else ({"at": "@", "dot": "."}.get(words[i].text, words[i].text), 1))
        glue = previous and not (token and previous == "digit") and form not in "@." and previous not in "@."
        if glue:
            text.append(" ")
            owner.append(i)
        for ch in form:
            text.append(ch)
            owner.append(i + used - 1 if ch == form[-1] else i)
        previous = "digit" if token else form
        i += used
    return "".join(text), owner


def find_patterns(words: Sequence[Word], patterns: Mapping[str, str]) -> list[Finding]:
    text, owner = compact_text(words)
    out = []
    for name, pattern in patterns.items():
        for match in re.finditer(pattern, text, flags=re.IGNORECASE):
            if match.end() > match.start():
                a, b = owner[match.start()], owner[match.end() - 1]
                out.append(Finding(name, a, b, words[a].start, words[b].end))
    return out


def find_card_context(words: Sequence[Word], runs: Sequence[Sequence[Digit]],
                      already: Sequence[Finding]) -> list[Finding]:
    """Card numbers the recogniser got partly wrong: many digits said soon after a card keyword.

    Luhn needs every digit right, and a recogniser that gets 97% of digits
    right gets a whole 16-digit number right only 60% of the time.  So after
    "card" / "visa" / ... (usually the agent asking for it), any stretch of
    at least ``CONTEXT_MIN_DIGITS`` digits within ``CONTEXT_WINDOW_S`` -
    runs joined across a few misheard words - is redacted as a card number
    whether or not it passes Luhn.  Over-redaction is the safe direction
    here; decoys without a card keyword before them are untouched.
    """
    out: list[Finding] = []
    keyword_times = [w.end for w in words if w.text in _CARD_WORDS]
    for t in keyword_times:
        near = [d for run in runs for d in run if t <= d.start <= t + CONTEXT_WINDOW_S]
        if len(near) < CONTEXT_MIN_DIGITS:
            continue
        if any(f.kind == CARD and f.start <= near[-1].end and f.end >= near[0].start for f in [*already, *out]):
            continue
        out.append(_finding(CARD, near))
    return out


def find_sensitive(words: Sequence[Word], *, near_card_s: float = 20.0,
                   patterns: Mapping[str, str] | None = None) -> list[Finding]:
    """Every finding in ``words``, in time order, overlapping findings kept (redaction merges spans)."""
    runs = digit_runs(words)
    findings: list[Finding] = []
    for card, leftover in find_cards(runs, words):
        findings.append(card)
        findings.extend(_near_card_details(words, runs, card, leftover, near_card_s))
    for card in find_card_context(words, runs, findings):
        findings.append(card)
        findings.extend(_near_card_details(words, runs, card, [], near_card_s))
    findings.extend(find_patterns(words, patterns or {}))
    return sorted(set(findings), key=lambda f: (f.start, f.end, f.kind))


def redact_words(words: Sequence[Word], findings: Iterable[Finding]) -> list[Word]:
    """The transcript with each finding's words replaced by one ``[<label> redacted]`` word."""
    by_first: dict[int, Finding] = {}
    covered: set[int] = set()
    for f in sorted(findings, key=lambda f: (f.first_word, -f.last_word)):
        if f.first_word in covered:
            continue
        by_first[f.first_word] = f
        covered.update(range(f.first_word, f.last_word + 1))
    out = []
    for i, word in enumerate(words):
        if i in by_first:
            f = by_first[i]
            out.append(Word(f"[{f.label} redacted]", words[f.first_word].start, words[f.last_word].end))
        elif i not in covered:
            out.append(word)
    return out


__all__ = ["CARD", "EXPIRY", "FILLERS", "Finding", "SECURITY_CODE", "compact_text", "digit_runs", "find_cards",
           "find_patterns", "find_sensitive", "luhn_ok", "redact_words"]
