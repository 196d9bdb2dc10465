"""Which consent rule applies to a call: jurisdiction per party, strictest wins.

The rule is computed from every party's number:

1. :meth:`Policy.locate` turns a raw caller-ID string into a
   :class:`Jurisdiction` with ``phonenumbers`` (country; for North American
   numbers the state or province of the area code).  Internal extensions
   (matching ``internal_numbers``) take the site's home jurisdiction; what
   cannot be located is ``unknown``.
2. :meth:`Policy.regime_for` looks the jurisdiction up in the regime table
   (subdivision first, then country, then the configured default for
   unlisted countries).  ``unknown`` maps to ``unknown_regime``, all-party by
   default: the seeds' rule "if unsure, follow an all-party consent approach".
3. :meth:`Policy.evaluate` merges all parties: the strictest regime names the
   rule, and each requirement (notice, explicit consent, lawful basis) holds
   if any party's regime demands it.

Pure computation (phonenumbers' metadata is in-process data): no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable, Mapping

import phonenumbers

from callguard.core import geography
from callguard.core.jurisdictions import (
    CA_PROVINCES,
    DEFAULT_JURISDICTIONS,
    DEFAULT_LANGUAGES,
    REGIMES,
    US_STATES,
    RegimeSpec,
)

UNKNOWN = "unknown"
_WITHHELD = {"", "<unknown>", "unknown", "anonymous", "restricted", "private", "withheld", "unavailable"}
_MAX_SHOWN = 40


def display_number(raw: str | None) -> str:
    """A safe, bounded rendering of a caller-controlled number for messages."""
    if raw is None:
        return "<none>"
    text = raw if len(raw) <= _MAX_SHOWN else raw[:_MAX_SHOWN] + "..."
    return text.encode("unicode_escape", "backslashreplace").decode("ascii")


@dataclass(frozen=True, slots=True)
class Jurisdiction:
    """Where a party is, as far as the number tells."""

    code: str  #: "US-CA", "GB", "internal:US-TX", "internal" or "unknown"
    country: str | None
    subdivision: str | None
    description: str
    internal: bool = False  #: a site extension (staff), not an outside party
    #: what was given is not a usable phone number (as opposed to withheld or unlisted)
    malformed: bool = False

    @property
    def lookup_keys(self) -> tuple[str, ...]:
        """Regime-table keys to try, most specific first."""
        keys: list[str] = []
        if self.country and self.subdivision:
            keys.append(f"{self.country}-{self.subdivision}")
        if self.country:
            keys.append(self.country)
        return tuple(keys)


@dataclass(frozen=True, slots=True)
class PartyRule:
    """One party's jurisdiction and regime, with the reason for each."""

    number: str
    jurisdiction: Jurisdiction
    regime: str
    reason: str


@dataclass(frozen=True, slots=True)
class Rule:
    """The rule for the whole call after strictest-wins resolution."""

    regime: str
    recording_allowed: bool
    notice_required: bool
    explicit_consent: bool
    lawful_basis_required: bool
    parties: tuple[PartyRule, ...]
    reasons: tuple[str, ...] = field(default=())

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form for the ledger and ``policy explain --json``."""
        return {
            "regime": self.regime,
            "recording_allowed": self.recording_allowed,
            "notice_required": self.notice_required,
            "explicit_consent": self.explicit_consent,
            "lawful_basis_required": self.lawful_basis_required,
            "reasons": list(self.reasons),
            "parties": [
                {
                    "number": p.number,
                    "jurisdiction": p.jurisdiction.code,
                    "where": p.jurisdiction.description,
                    "regime": p.regime,
                    "reason": p.reason,
                }
                for p in self.parties
            ],
        }


class PolicyError(ValueError):
    """A policy setting is invalid (unknown regime name, bad pattern)."""


@dataclass(frozen=True)
class Policy:
    """The site's consent policy: regime table plus overrides.

    ``jurisdictions`` maps jurisdiction codes to regime names (the defaults
    from :mod:`callguard.core.jurisdictions` merged with site overrides).
    ``home`` is the site's own jurisdiction, used for internal extensions.
    ``default_region`` parses numbers dialled without ``+``.
    """

    jurisdictions: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_JURISDICTIONS))
    default_regime: str = "all-party"
    unknown_regime: str = "all-party"
    gdpr_explicit_consent: bool = True
    home: str | None = None
    internal_numbers: str = r"^[0-9]{2,6}$"
    default_region: str | None = None
    languages: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_LANGUAGES))
    default_language: str = "en"

    def __post_init__(self) -> None:
        for where, name in [("default_regime", self.default_regime), ("unknown_regime", self.unknown_regime)] + [
            (f"jurisdictions.{code}", name) for code, name in self.jurisdictions.items()
        ]:
            if name not in REGIMES:
                raise PolicyError(
                    f"{where}: unknown regime {name!r}; use one of {', '.join(REGIMES)}"
                )
        try:
            object.__setattr__(self, "_internal_re", re.compile(self.internal_numbers))
        except re.error as exc:
            raise PolicyError(f"internal_numbers: not a valid regular expression: {exc}") from exc

    @classmethod
    def with_overrides(cls, overrides: Mapping[str, str] | None = None, **settings: object) -> "Policy":
        """Defaults plus a site's ``[policy.jurisdictions]`` table."""
        table = dict(DEFAULT_JURISDICTIONS)
        table.update({k.upper(): v for k, v in (overrides or {}).items()})
        return cls(jurisdictions=table, **settings)  # type: ignore[arg-type]

    # -- single party -------------------------------------------------------

    def spec(self, regime: str) -> RegimeSpec:
        """The regime's requirements with site settings applied."""
        spec = REGIMES[regime]
        if regime == "gdpr" and not self.gdpr_explicit_consent:
            return RegimeSpec(spec.name, spec.rank, True, True, False, True, spec.summary)
        return spec

    def internal(self, what: str = "internal extension") -> Jurisdiction:
        """The site's own jurisdiction, for a leg that is staff (``what`` says how we know)."""
        if self.home:
            country, _, sub = self.home.upper().partition("-")
            return Jurisdiction(f"internal:{self.home.upper()}", country, sub or None,
                                f"{what} (site home {self.home.upper()})", internal=True)
        return Jurisdiction("internal", None, None, f"{what}, but no [policy] home is configured", internal=True)

    def locate(self, raw: str | None, *, extensions: bool = True) -> Jurisdiction:
        """Jurisdiction of a raw caller-ID string; never raises.

        ``extensions=False`` when the adapter has already decided the leg is
        NOT staff: a short number is then just an unknown outside number (a
        caller could set their caller id to "100"), never an internal one.
        """
        text = (raw or "").strip()
        if text.lower() in _WITHHELD:
            return Jurisdiction(UNKNOWN, None, None, "number withheld or unavailable")
        if extensions and self._internal_re.fullmatch(text):  # type: ignore[attr-defined]
            return self.internal()
        if len(text) > 32 or not re.fullmatch(r"\+?[0-9 ()./-]{3,}", text):
            return Jurisdiction(UNKNOWN, None, None, f"not a phone number: {display_number(raw)}", malformed=True)
        try:
            number = phonenumbers.parse(text, None if text.startswith("+") else self.default_region)
        except phonenumbers.NumberParseException as exc:
            return Jurisdiction(UNKNOWN, None, None, f"unparseable number {display_number(raw)} ({exc._msg})",
                                malformed=True)
        if not phonenumbers.is_valid_number(number):
            return Jurisdiction(UNKNOWN, None, None, f"invalid number {display_number(raw)}", malformed=True)
        country = phonenumbers.region_code_for_number(number)
        if not country or country == "001":
            return Jurisdiction(UNKNOWN, None, None, f"non-geographic number {display_number(raw)}")
        # Only North American numbers need the area's name (state / province).
        where = geography.describe(number) if country in ("US", "CA") else ""
        subdivision = None
        if country in ("US", "CA"):
            subdivision = _subdivision(country, where)
            if subdivision is None:
                # Toll-free and non-geographic NANP numbers carry no state:
                # the location is unknown, which must not relax the rule.
                return Jurisdiction(UNKNOWN, country, None,
                                    f"{country} number with no state/province ({where or 'non-geographic'})")
        code = f"{country}-{subdivision}" if subdivision else country
        if not where:
            where = geography.country_name(number)
        return Jurisdiction(code, country, subdivision, where or country)

    def regime_for(self, where: Jurisdiction) -> tuple[str, str]:
        """(regime, reason) for one jurisdiction."""
        if where.code == UNKNOWN or not where.lookup_keys:
            return self.unknown_regime, f"location unknown ({where.description}): strictest rule applies"
        for key in where.lookup_keys:
            if key in self.jurisdictions:
                regime = self.jurisdictions[key]
                return regime, f"{key} is {regime}: {REGIMES[regime].summary}"
        return self.default_regime, f"{where.code} not in the regime table: default {self.default_regime}"

    def party_rule(self, raw: str | None, staff: bool | None = None) -> PartyRule:
        """One party's rule.  ``staff`` is what the PBX marked on the leg.

        True: a staff leg (the dialplan marked it; its caller id may well be
        the customer's, as on a FreeSWITCH b-leg), the site's home rule.
        False: an outside party whatever its number looks like.  None: the
        adapter cannot tell, so ``internal_numbers`` decides (legacy).
        """
        where = self.internal("staff leg marked by the PBX") if staff else \
            self.locate(raw, extensions=staff is None)
        regime, reason = self.regime_for(where)
        return PartyRule(display_number(raw), where, regime, reason)

    # -- whole call ---------------------------------------------------------

    def warm_up(self) -> None:
        """Load the numbering and geocoding metadata now, not on the first call.

        ``phonenumbers`` loads its region and geocoder data lazily; the first
        lookup takes seconds, which would otherwise stall a listener's event
        loop (and every call's pause path) when the first caller arrives.
        One North American, one UK, one French number and an extension
        touch every table a lookup uses.
        """
        self.evaluate(["+14155550123", "+442079460000", "+33142685300", "100"])

    def evaluate(self, numbers: Iterable[str | None]) -> Rule:
        """Strictest-wins rule over every party on the call (identified by number only)."""
        return self.combine(self.party_rule(n) for n in numbers)

    def combine(self, party_rules: Iterable[PartyRule]) -> Rule:
        """Strictest-wins rule over parties already located."""
        parties = tuple(party_rules)
        if not parties:
            parties = (self.party_rule(None),)
        specs = [self.spec(p.regime) for p in parties]
        strictest = max(specs, key=lambda s: s.rank)
        reasons = [f"party {p.number}: {p.reason}" for p in parties]
        if len({s.name for s in specs}) > 1:
            reasons.append(f"strictest rule wins across all parties: {strictest.name}")
        return Rule(
            regime=strictest.name,
            recording_allowed=all(s.recording_allowed for s in specs),
            notice_required=any(s.notice_required for s in specs),
            explicit_consent=any(s.explicit_consent for s in specs),
            lawful_basis_required=any(s.lawful_basis_required for s in specs),
            parties=parties,
            reasons=tuple(reasons),
        )

    def language_for(self, raw: str | None, available: Iterable[str] | None = None) -> str:
        """Prompt language for a caller: their area's language, else the default.

        ``available`` limits the choice to languages the catalogue has, so a
        caller from a country we have no recordings for hears the default.
        """
        where = self.locate(raw)
        choices = set(available) if available is not None else None
        for key in where.lookup_keys:
            language = self.languages.get(key)
            if language and (choices is None or language in choices):
                return language
        return self.default_language


def _subdivision(country: str, where: str) -> str | None:
    names = US_STATES if country == "US" else CA_PROVINCES
    if where in names:
        return names[where]
    match = re.search(r",\s*([A-Z]{2})$", where)
    if match and match.group(1) in names.values():
        return match.group(1)
    return None
