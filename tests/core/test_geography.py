"""Place names read selectively must equal phonenumbers' own geocoder, without loading the world."""

from __future__ import annotations

import subprocess
import sys

import phonenumbers
import pytest
from phonenumbers import geocoder

from callguard.core import geography


def _numbers_for_every_nanp_prefix() -> list[phonenumbers.PhoneNumber]:
    geography.warm_up()
    out = []
    for prefix in geography._DATA.nanp:
        national = (prefix[1:] + "5550123")[:10] if len(prefix) <= 4 else (prefix[1:] + "0000000")[:10]
        try:
            out.append(phonenumbers.parse("+1" + national))
        except phonenumbers.NumberParseException:
            continue
    return out


def test_every_nanp_prefix_is_described_exactly_as_the_geocoder_does():
    numbers = _numbers_for_every_nanp_prefix()
    assert len(numbers) > 30_000
    different = [(phonenumbers.format_number(n, phonenumbers.PhoneNumberFormat.E164), geography.describe(n),
                  geocoder.description_for_number(n, "en"))
                 for n in numbers if geography.describe(n) != geocoder.description_for_number(n, "en")]
    assert different == []


@pytest.mark.parametrize("region", sorted(phonenumbers.SUPPORTED_REGIONS))
def test_country_names_equal_the_geocoders(region):
    number = phonenumbers.example_number(region)
    if number is None:
        pytest.skip(f"no example number for {region}")
    assert geography.country_name(number) == geocoder.country_name_for_number(number, "en")
    assert geography.describe(number) == (geocoder.description_for_number(number, "en")
                                          if number.country_code == 1 else geocoder.country_name_for_number(number, "en"))


def test_the_policy_never_loads_the_whole_worlds_place_names():
    """The full geodata package costs ~100 MiB resident; locating callers must not import it."""
    code = ("import sys\n"
            "from callguard.core.policy import Policy\n"
            "p = Policy(); p.warm_up()\n"
            "r = p.evaluate(['+14155550123', '+18005550199', '+442079460000', '+33142685300', '+61293744000'])\n"
            "assert r.parties[0].jurisdiction.code == 'US-CA', r\n"
            "print('phonenumbers.geodata' in sys.modules, 'phonenumbers.geocoder' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
