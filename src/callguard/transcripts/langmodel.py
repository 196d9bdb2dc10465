"""The "digits" language model: a small call-centre bigram model written as ARPA text.

PocketSphinx's bundled en-US model knows 130,000 words and decodes
telephone speech at about twice real time on one core here, hearing "one
one one" as "wendland".  What the redaction needs is the numbers people read
out, in the sentences they read them in.  This module generates a corpus of
such sentences (numbers of every length said digit by digit, with "oh",
"double", groups and fillers; card details, phone numbers, order numbers,
amounts, dates, the usual pleasantries) and estimates a bigram model with
absolute discounting and back-off.  It is deterministic (fixed seed), takes
well under a second, and is cached by content hash, so nothing is
downloaded and nothing large is shipped.  Words outside its vocabulary come
out as the nearest known word, which is fine: the transcript's job here is
to find numbers, and ``language_model = "general"`` is there for prose.
"""

from __future__ import annotations

import hashlib
import math
import os
import random
import tempfile
from collections import Counter
from functools import lru_cache
from pathlib import Path

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_TEENS = ("ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen").split()
_TENS = ("twenty thirty forty fifty sixty seventy eighty ninety").split()
_MONTHS = ("january february march april may june july august september october november december").split()

_TEMPLATES = (
    "my card number is {n}", "the card number is {n}", "it's {n}", "yes it's {n}", "okay it is {n}",
    "the long number on the front is {n}", "card number {n}", "{n}", "um {n}", "so {n}", "right {n}",
    "and the expiry is {e}", "expiry {e}", "it expires {e}", "the expiry date is {e}", "valid until {e}",
    "the security code is {s}", "security code {s}", "the three digits on the back are {s}", "it's {s}",
    "you can call me back on {n}", "my phone number is {n}", "my number is {n}", "call me on {n}",
    "my order number is {n}", "the order number is {n}", "the reference is {n}", "my account number is {n}",
    "the amount is {a} dollars", "it was {a} pounds", "i paid {a} dollars and {c} cents", "that's {a}",
    "my date of birth is the {d} of {m}", "on the {d} of {m}", "my email is {w} at {w} dot com",
    "hello how can i help you today", "hi i'd like to pay my bill please", "can i take your card details please",
    "sure let me get my card out", "one moment please", "thank you", "thanks very much", "is that right",
    "yes that's right", "no sorry", "could you repeat that please", "can you read that back to me",
    "let me check that for you", "is there anything else i can help you with", "no that's all thank you",
    "have a nice day", "bye", "good morning", "good afternoon", "i'm calling about my order",
    "i want to make a payment", "i'd like to change my address", "what's the balance on my account",
    "can i speak to a manager", "i have a question about my bill", "the delivery was late",
    "please hold while i transfer you", "your payment has been taken", "we'll send you an email confirmation",
)
_FILLERS = ("um", "uh", "er", "so", "and", "then", "okay", "right")
_NAMES = ("john", "mary", "smith", "jones", "mail", "example", "gmail", "work", "home", "info")


def _say_digits(rng: random.Random, digits: str) -> str:
    """How a person reads a digit string: groups, "oh"/"zero", "double", fillers between groups."""
    out: list[str] = []
    i = 0
    group = rng.choice((2, 3, 4, 4, 4, 5))
    since = 0
    while i < len(digits):
        d = digits[i]
        if i + 1 < len(digits) and digits[i + 1] == d and rng.random() < 0.3:
            out += ["double", "oh" if d == "0" and rng.random() < 0.6 else DIGIT_WORDS[int(d)]]
            i += 2
            since += 2
        else:
            out.append("oh" if d == "0" and rng.random() < 0.6 else DIGIT_WORDS[int(d)])
            i += 1
            since += 1
        if since >= group and i < len(digits) and rng.random() < 0.3:
            out.append(rng.choice(_FILLERS))
            since = 0
    return " ".join(out)


def _say_number(rng: random.Random, value: int) -> str:
    """A number said as a number (amounts, days, years): "forty two", "one hundred and five"."""
    if value < 10:
        return DIGIT_WORDS[value]
    if value < 20:
        return _TEENS[value - 10]
    if value < 100:
        tens, unit = divmod(value, 10)
        return _TENS[tens - 2] + ("" if unit == 0 else " " + DIGIT_WORDS[unit])
    hundreds, rest = divmod(value, 100)
    return f"{DIGIT_WORDS[hundreds]} hundred" + ("" if rest == 0 else f" and {_say_number(rng, rest)}")


def corpus(sentences: int = 20000, seed: int = 17) -> list[list[str]]:
    rng = random.Random(seed)
    out = []
    for _ in range(sentences):
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(3, 19)))
        month = rng.randint(1, 12)
        year = rng.randint(24, 35)
        expiry = rng.choice((f"{_say_digits(rng, f'{month:02d}')} {_say_number(rng, year)}",
                             f"{_MONTHS[month - 1]} twenty {_say_number(rng, year)}",
                             _say_digits(rng, f"{month:02d}{year:02d}"), f"{_say_number(rng, month)} {_say_number(rng, year)}"))
        text = rng.choice(_TEMPLATES).format(
            n=_say_digits(rng, digits), e=expiry, s=_say_digits(rng, str(rng.randint(100, 9999))),
            a=_say_number(rng, rng.randint(1, 999)), c=_say_number(rng, rng.randint(1, 99)),
            d=_say_number(rng, rng.randint(1, 31)), m=rng.choice(_MONTHS), w=rng.choice(_NAMES))
        out.append(["<s>", *text.split(), "</s>"])
    return out


def arpa_text(sentences: list[list[str]], discount: float = 0.5) -> str:
    """A bigram ARPA model with absolute discounting; the freed mass backs off to unigrams."""
    unigrams = Counter(w for s in sentences for w in s)
    bigrams = Counter((a, b) for s in sentences for a, b in zip(s, s[1:]))
    followers = Counter(a for a, _ in bigrams)
    total = sum(c for w, c in unigrams.items() if w != "<s>")
    lines = ["\\data\\", f"ngram 1={len(unigrams)}", f"ngram 2={len(bigrams)}", "", "\\1-grams:"]
    for word in sorted(unigrams):
        prob = -99.0 if word == "<s>" else math.log10(unigrams[word] / total)
        backoff = math.log10(discount * followers[word] / unigrams[word]) if followers[word] else 0.0
        lines.append(f"{prob:.4f}\t{word}\t{backoff:.4f}")
    lines += ["", "\\2-grams:"]
    for (a, b), count in sorted(bigrams.items()):
        lines.append(f"{math.log10((count - discount) / unigrams[a]):.4f}\t{a} {b}")
    lines += ["", "\\end\\", ""]
    return "\n".join(lines)


@lru_cache(maxsize=1)
def arpa_path() -> Path:
    """The model file, generated once per content version into the user's cache (or temp) directory."""
    text = arpa_text(corpus())
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "callguard"
    try:
        base.mkdir(parents=True, exist_ok=True)
    except OSError:
        base = Path(tempfile.gettempdir())
    path = base / f"digits-{digest}.arpa"
    if not path.exists():
        part = path.with_name(f"{path.name}.{os.getpid()}.part")
        part.write_text(text)
        os.replace(part, path)
    return path


__all__ = ["DIGIT_WORDS", "arpa_path", "arpa_text", "corpus"]
