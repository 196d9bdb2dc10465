"""The regime table: which consent regime applies where, held as data.

Sources are the guides in ``shared/seeds``: the seven all-party US states
they name (California, Florida, Illinois, Maryland, Massachusetts,
Pennsylvania, Washington), GDPR for the EU/EEA and the UK, one-party for the
rest of the US and for Canada (federal one-party rule; PIPEDA's notice and
opt-out are what the one-party regime does anyway).  The further US states
listed in ``EXTRA_ALL_PARTY_US`` are commonly treated as all-party by
counsel ("roughly a dozen U.S. states require two-party consent"); sites
can override any entry in ``callguard.toml`` under ``[policy.jurisdictions]``.

Everything here is plain data so a compliance officer can read it and a
site can replace it without touching code paths.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping


@dataclass(frozen=True, slots=True)
class RegimeSpec:
    """What a consent regime demands before and while recording."""

    name: str
    rank: int  #: higher is stricter; the strictest party's regime wins
    recording_allowed: bool
    notice_required: bool
    explicit_consent: bool
    lawful_basis_required: bool
    summary: str


#: The regimes, strictest last.  ``gdpr.explicit_consent`` can be relaxed by
#: config (``[policy] gdpr_explicit_consent = false``) for sites relying on
#: legitimate interest; the default is the stricter reading.
REGIMES: Mapping[str, RegimeSpec] = MappingProxyType(
    {
        "one-party": RegimeSpec(
            "one-party", 1, True, True, False, False,
            "one party's consent suffices; callguard still gives notice and honours an opt-out",
        ),
        "gdpr": RegimeSpec(
            "gdpr", 2, True, True, True, True,
            "inform before recording, record the lawful basis, explicit consent where configured",
        ),
        "all-party": RegimeSpec(
            "all-party", 3, True, True, True, False,
            "every party must be informed and agree before recording",
        ),
        "never": RegimeSpec(
            "never", 4, False, False, False, False,
            "recording is not permitted",
        ),
    }
)

ALL_PARTY_US_SEEDS = ("CA", "FL", "IL", "MD", "MA", "PA", "WA")
EXTRA_ALL_PARTY_US = ("CT", "DE", "MI", "MT", "NV", "NH", "OR")

GDPR_COUNTRIES = (
    # EU
    "AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU",
    "IE", "IT", "LV", "LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE",
    # EEA
    "IS", "LI", "NO",
    # UK GDPR, and Switzerland's revised FADP which works the same way here
    "GB", "CH",
    # Crown dependencies and EU outermost regions with their own calling codes
    "GG", "JE", "IM", "GP", "MQ", "RE", "YT", "GF",
)


def _default_table() -> dict[str, str]:
    table: dict[str, str] = {"US": "one-party", "CA": "one-party"}
    for state in ALL_PARTY_US_SEEDS + EXTRA_ALL_PARTY_US:
        table[f"US-{state}"] = "all-party"
    for country in GDPR_COUNTRIES:
        table[country] = "gdpr"
    return table


#: Jurisdiction code -> regime name.  Codes are ISO 3166-1 alpha-2 for
#: countries and ``CC-XX`` for US states / Canadian provinces.
DEFAULT_JURISDICTIONS: Mapping[str, str] = MappingProxyType(_default_table())

#: Names phonenumbers' geocoder uses for North American areas -> code.
US_STATES: Mapping[str, str] = MappingProxyType({
    "Alabama": "AL", "Alaska": "AK", "Arizona": "AZ", "Arkansas": "AR", "California": "CA",
    "Colorado": "CO", "Connecticut": "CT", "Delaware": "DE", "Florida": "FL", "Georgia": "GA",
    "Hawaii": "HI", "Idaho": "ID", "Illinois": "IL", "Indiana": "IN", "Iowa": "IA",
    "Kansas": "KS", "Kentucky": "KY", "Louisiana": "LA", "Maine": "ME", "Maryland": "MD",
    "Massachusetts": "MA", "Michigan": "MI", "Minnesota": "MN", "Mississippi": "MS",
    "Missouri": "MO", "Montana": "MT", "Nebraska": "NE", "Nevada": "NV",
    "New Hampshire": "NH", "New Jersey": "NJ", "New Mexico": "NM", "New York": "NY",
    "North Carolina": "NC", "North Dakota": "ND", "Ohio": "OH", "Oklahoma": "OK",
    "Oregon": "OR", "Pennsylvania": "PA", "Rhode Island": "RI", "South Carolina": "SC",
    "South Dakota": "SD", "Tennessee": "TN", "Texas": "TX", "Utah": "UT", "Vermont": "VT",
    "Virginia": "VA", "Washington": "WA", "Washington State": "WA", "West Virginia": "WV",
    "Wisconsin": "WI", "Wyoming": "WY", "Washington D.C.": "DC", "District of Columbia": "DC",
})

CA_PROVINCES: Mapping[str, str] = MappingProxyType({
    "Alberta": "AB", "British Columbia": "BC", "Manitoba": "MB", "New Brunswick": "NB",
    "Newfoundland and Labrador": "NL", "Newfoundland": "NL", "Nova Scotia": "NS",
    "Ontario": "ON", "Prince Edward Island": "PE", "Quebec": "QC", "Saskatchewan": "SK",
    "Northwest Territories": "NT", "Nunavut": "NU", "Yukon": "YT",
    "Nova Scotia/Prince Edward Island": "NS", "Yukon/Northwest Territories/Nunavut": "YT",
})

#: Country (or subdivision) -> prompt language; anything else uses the
#: configured default language.
DEFAULT_LANGUAGES: Mapping[str, str] = MappingProxyType({
    **{cc: "es" for cc in (
        "ES", "MX", "AR", "CO", "CL", "PE", "VE", "EC", "GT", "CU", "BO", "DO", "HN",
        "PY", "SV", "NI", "CR", "PA", "UY", "PR",
    )},
    **{cc: "fr" for cc in ("FR", "MC", "LU", "SN", "CI", "CM", "ML", "BF", "NE", "CA-QC")},
    **{cc: "en" for cc in ("US", "GB", "IE", "CA", "AU", "NZ")},
})


def jurisdiction_codes() -> frozenset[str]:
    """Every code :meth:`Policy.locate` can produce: phonenumbers' regions, ``US-XX``, ``CA-XX``.

    A site's ``home`` or ``[policy.jurisdictions]`` key outside this set can
    never match a caller, so the config loader refuses it instead of letting
    the default regime apply in silence (``US-CAL`` for ``US-CA``).
    """
    import phonenumbers

    subdivisions = {f"US-{code}" for code in US_STATES.values()} | {f"CA-{code}" for code in CA_PROVINCES.values()}
    return frozenset(phonenumbers.SUPPORTED_REGIONS) | frozenset(subdivisions)
