"""Jurisdiction and strictest-rule resolution against real numbering data."""

from __future__ import annotations

import pytest

from callguard.core.policy import Policy, PolicyError

policy = Policy(home="US-TX")

# One real-format number per all-party state the seeds name (area codes
# from phonenumbers' geocoding data).
SEVEN_ALL_PARTY = {
    "US-CA": "+14155550123",  # San Francisco
    "US-FL": "+13055550100",  # Miami
    "US-IL": "+13125550100",  # Chicago
    "US-MD": "+14105550100",  # Baltimore
    "US-MA": "+16175550100",  # Boston
    "US-PA": "+12155550100",  # Philadelphia
    "US-WA": "+12065550100",  # Seattle
}


@pytest.mark.parametrize("code,number", sorted(SEVEN_ALL_PARTY.items()))
def test_seven_all_party_states(code, number):
    party = policy.party_rule(number)
    assert party.jurisdiction.code == code
    assert party.regime == "all-party"
    rule = policy.evaluate([number])
    assert rule.explicit_consent and rule.notice_required and rule.recording_allowed


@pytest.mark.parametrize("number,code", [
    ("+12125550123", "US-NY"), ("+12145550100", "US-TX"), ("+14045550100", "US-GA"),
    ("+14165550100", "CA-ON"), ("+15145550100", "CA-QC"),
])
def test_one_party_places(number, code):
    party = policy.party_rule(number)
    assert (party.jurisdiction.code, party.regime) == (code, "one-party")
    assert policy.evaluate([number]).explicit_consent is False


@pytest.mark.parametrize("number,country", [
    ("+442079460000", "GB"), ("+33142685300", "FR"), ("+4930901820", "DE"), ("+34912345678", "ES"),
    ("+390612345678", "IT"), ("+31201234567", "NL"), ("+4721234567", "NO"), ("+353123456789", "IE"),
])
def test_eu_eea_uk_numbers_are_gdpr(number, country):
    party = policy.party_rule(number)
    assert party.jurisdiction.country == country
    assert party.regime == "gdpr"
    rule = policy.evaluate([number])
    assert rule.lawful_basis_required and rule.explicit_consent


def test_gdpr_explicit_consent_can_be_relaxed_by_config():
    relaxed = Policy(gdpr_explicit_consent=False)
    rule = relaxed.evaluate(["+442079460000"])
    assert rule.regime == "gdpr" and not rule.explicit_consent and rule.lawful_basis_required


def test_mixed_one_party_and_all_party_is_all_party():
    rule = policy.evaluate(["+12125550123", "+14155550123"])
    assert rule.regime == "all-party" and rule.explicit_consent
    assert any("strictest rule wins" in r for r in rule.reasons)
    assert [p.regime for p in rule.parties] == ["one-party", "all-party"]


def test_mixed_one_party_and_gdpr_needs_lawful_basis_and_consent():
    rule = policy.evaluate(["+12125550123", "+442079460000"])
    assert rule.regime == "gdpr" and rule.lawful_basis_required and rule.explicit_consent


@pytest.mark.parametrize("raw", [None, "", "anonymous", "Anonymous", "<unknown>", "restricted", "withheld"])
def test_withheld_numbers_count_as_strictest(raw):
    party = policy.party_rule(raw)
    assert party.jurisdiction.code == "unknown"
    assert party.regime == "all-party"


@pytest.mark.parametrize("raw", [
    "../../etc/passwd", "${SHELL(rm -rf /)}", "+1415\r\nAction: Hangup", "9" * 10_000, "+1 (800) 555-0100",
    "+99912345", "\udcff\udcfe", "+", "++14155550123",
])
def test_malformed_and_non_geographic_numbers_are_unknown(raw):
    party = policy.party_rule(raw)
    assert party.jurisdiction.code == "unknown", party
    assert party.regime == "all-party"
    assert len(party.number) <= 60 and "\n" not in party.number and "\r" not in party.number


def test_unlisted_country_uses_the_default_regime():
    party = policy.party_rule("+8613800138000")
    assert party.jurisdiction.country == "CN" and party.regime == "all-party"
    assert "not in the regime table" in party.reason


def test_site_overrides_are_data_not_code():
    site = Policy.with_overrides({"US-NY": "all-party", "CN": "one-party"}, home="US-TX")
    assert site.party_rule("+12125550123").regime == "all-party"
    assert site.party_rule("+8613800138000").regime == "one-party"


def test_never_regime_forbids_recording():
    site = Policy.with_overrides({"DE": "never"})
    rule = site.evaluate(["+12125550123", "+4930901820"])
    assert rule.regime == "never" and not rule.recording_allowed


def test_internal_extensions_take_the_home_jurisdiction():
    party = policy.party_rule("2001")
    assert party.jurisdiction.internal and party.jurisdiction.code == "internal:US-TX"
    assert party.regime == "one-party"
    homeless = Policy().party_rule("2001")
    assert homeless.jurisdiction.internal and homeless.regime == "all-party"


def test_national_numbers_parse_with_a_default_region():
    local = Policy(default_region="GB")
    assert local.party_rule("020 7946 0000").jurisdiction.code == "GB"
    assert Policy().party_rule("020 7946 0000").jurisdiction.code == "unknown"


def test_bad_regime_names_are_rejected_with_the_key():
    with pytest.raises(PolicyError, match=r"jurisdictions.US-NY: unknown regime 'two-party'"):
        Policy.with_overrides({"US-NY": "two-party"})


@pytest.mark.parametrize("number,available,language", [
    ("+34912345678", None, "es"), ("+33142685300", None, "fr"), ("+15145550100", None, "fr"),
    ("+14165550100", None, "en"), ("+33142685300", {"en"}, "en"), ("anonymous", None, "en"),
])
def test_language_follows_the_callers_country(number, available, language):
    assert policy.language_for(number, available) == language
