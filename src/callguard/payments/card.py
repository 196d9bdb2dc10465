"""Card fields as a caller keys them: brand, lengths, Luhn, expiry, masks.

Pure functions over digit strings; nothing here logs, stores or formats a
full number.  The only views of a number that leave this module are
:func:`masked` (``************1111``), :func:`last_four` and the brand.

Brands come from their issuer identification number (IIN) ranges as the
schemes publish them.  Order matters: the first matching range wins, so the
narrow ranges (Discover's 622126-622925 inside UnionPay's 62) come first.
The Luhn check is python-stdnum's (a well-kept implementation of ISO/IEC
7812-1 Annex B) rather than our own loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from stdnum import luhn
from stdnum.exceptions import ValidationError as _StdnumError


@dataclass(frozen=True, slots=True)
class Brand:
    """A card scheme: which lengths its numbers have and how long its security code is."""

    key: str  #: a fixed word for the ledger and the connector (``visa``, ``amex``, ...)
    name: str  #: what the agent sees (``Visa``)
    lengths: tuple[int, ...]  #: valid primary account number lengths
    cvv_length: int
    usual_length: int  #: shown as "12 of 16 digits" until the caller keys more

    @property
    def max_length(self) -> int:
        return max(self.lengths)


VISA = Brand("visa", "Visa", (13, 16, 19), 3, 16)
MASTERCARD = Brand("mastercard", "Mastercard", (16,), 3, 16)
AMEX = Brand("amex", "American Express", (15,), 4, 15)
DISCOVER = Brand("discover", "Discover", (16, 17, 18, 19), 3, 16)
DINERS = Brand("diners", "Diners Club", (14, 15, 16, 17, 18, 19), 3, 14)
JCB = Brand("jcb", "JCB", (16, 17, 18, 19), 3, 16)
UNIONPAY = Brand("unionpay", "UnionPay", (16, 17, 18, 19), 3, 16)
MAESTRO = Brand("maestro", "Maestro", tuple(range(12, 20)), 3, 16)
BRANDS = (VISA, MASTERCARD, AMEX, DISCOVER, DINERS, JCB, UNIONPAY, MAESTRO)

#: (first, last, brand) over prefixes of the same width, most specific first.
_RANGES: tuple[tuple[str, str, Brand], ...] = (
    ("622126", "622925", DISCOVER),
    ("6011", "6011", DISCOVER),
    ("644", "649", DISCOVER),
    ("65", "65", DISCOVER),
    ("2221", "2720", MASTERCARD),
    ("51", "55", MASTERCARD),
    ("34", "34", AMEX),
    ("37", "37", AMEX),
    ("3528", "3589", JCB),
    ("3095", "3095", DINERS),
    ("300", "305", DINERS),
    ("36", "36", DINERS),
    ("38", "39", DINERS),
    ("62", "62", UNIONPAY),
    ("4", "4", VISA),
    ("50", "50", MAESTRO),
    ("56", "69", MAESTRO),
)

#: Longest number any scheme issues (ISO/IEC 7812).
MAX_PAN_LENGTH = 19
MIN_PAN_LENGTH = 12


def brand_of(digits: str) -> Brand | None:
    """The scheme of a (possibly partial) number, once its prefix decides it.

    ``None`` until enough digits are known (``"6"`` could be Discover,
    UnionPay or Maestro) or when no scheme issues that prefix.
    """
    candidates = possible_brands(digits)
    return candidates[0] if len(candidates) == 1 else None


def possible_brands(digits: str) -> list[Brand]:
    """Every scheme whose ranges the prefix ``digits`` can still fall into.

    Ranges are tried most specific first: one that the prefix fully
    matches decides, and the broader ranges after it are not considered.
    """
    out: list[Brand] = []
    for first, last, brand in _RANGES:
        width = len(first)
        head = digits[:width]
        if not first[:len(head)] <= head <= last[:len(head)]:
            continue
        if brand not in out:
            out.append(brand)
        if len(digits) >= width:
            break
    return out


def luhn_ok(digits: str) -> bool:
    """The number's check digit is right (ISO/IEC 7812-1)."""
    try:
        luhn.validate(digits)
    except _StdnumError:
        return False
    return True


def number_problem(digits: str) -> str | None:
    """Why a complete card number is not acceptable, or ``None`` when it is.

    The reasons are fixed words (they go to the ledger and the agent's
    screen): ``unknown-brand``, ``wrong-length``, ``luhn``.
    """
    if not digits.isdigit() or not MIN_PAN_LENGTH <= len(digits) <= MAX_PAN_LENGTH:
        return "wrong-length"
    brand = brand_of(digits)
    if brand is None:
        return "unknown-brand"
    if len(digits) not in brand.lengths:
        return "wrong-length"
    if not luhn_ok(digits):
        return "luhn"
    return None


@dataclass(frozen=True, slots=True)
class Expiry:
    month: int
    year: int  #: four digits

    def as_mmyy(self) -> str:
        return f"{self.month:02d}{self.year % 100:02d}"


#: Cards are not issued for longer than this; a later year is a typing mistake.
MAX_YEARS_AHEAD = 20


def parse_expiry(digits: str, today: date) -> tuple[Expiry | None, str | None]:
    """``MMYY`` as keyed -> (expiry, None), or (None, reason).

    A card is valid through the last day of its expiry month, so the
    current month is accepted.  Reasons: ``wrong-length``, ``month``,
    ``expired``, ``too-far``.
    """
    if len(digits) != 4 or not digits.isdigit():
        return None, "wrong-length"
    month, yy = int(digits[:2]), int(digits[2:])
    if not 1 <= month <= 12:
        return None, "month"
    year = today.year - today.year % 100 + yy
    if year < today.year - 50:  # pragma: no cover - only near a century boundary
        year += 100
    if (year, month) < (today.year, today.month):
        return None, "expired"
    if year > today.year + MAX_YEARS_AHEAD:
        return None, "too-far"
    return Expiry(month, year), None


def masked(digits: str) -> str:
    """Every digit but the last four replaced by ``*`` (PCI DSS 3.4's display rule, stricter)."""
    return "*" * max(len(digits) - 4, 0) + digits[-4:]


def last_four(digits: str) -> str:
    return digits[-4:]


__all__ = ["AMEX", "BRANDS", "Brand", "DINERS", "DISCOVER", "Expiry", "JCB", "MAESTRO", "MASTERCARD",
           "MAX_PAN_LENGTH", "MIN_PAN_LENGTH", "UNIONPAY", "VISA", "brand_of", "last_four", "luhn_ok",
           "masked", "number_problem", "parse_expiry", "possible_brands"]
