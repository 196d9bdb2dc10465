"""Place names for numbers, from phonenumbers' data, loading only what the policy needs.

``phonenumbers.geocoder`` imports the whole world's prefix descriptions
(``phonenumbers.geodata``: ~40 MB of source, ~100 MiB resident) the first
time it is used.  The policy needs far less: the state or province of a
North American number (to pick the state's consent law) and a country's
English name for the evidence text.  So this module reads, from the same
package files, only the ``+1`` prefix descriptions (the first few
``geodata/dataN.py`` files, ~9 MiB resident) and the region names
(``geodata/locale.py``), and answers exactly as
``geocoder.description_for_number(number, "en")`` does for those
numbers (tested against it over every +1 prefix).  Nothing else is loaded,
so an idle listener stays small.

The data files are read as modules of phonenumbers' own package (they
only import ``phonenumbers.util``); if a future phonenumbers lays them out
differently, :func:`describe` falls back to the full geocoder (correct,
just larger) and says so once in the log.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import threading
from types import ModuleType
from typing import Any

import phonenumbers
from phonenumbers import PhoneNumberType

log = logging.getLogger("callguard.policy")

_GEODATA = os.path.join(os.path.dirname(phonenumbers.__file__), "geodata")
_LANG = "en"


def _load_data_module(name: str) -> ModuleType:
    path = os.path.join(_GEODATA, f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"phonenumbers.geodata.{name}", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"no phonenumbers data file {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _LeanGeodata:
    """The +1 prefix descriptions and the region names, loaded once on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaded = False
        self.nanp: dict[str, dict[str, str]] = {}
        self.longest = 0
        self.regions: dict[str, dict[str, str]] = {}
        self.full: Any = None  #: phonenumbers.geocoder, only if the lean read failed

    def load(self) -> None:
        with self._lock:
            if self._loaded:
                return
            try:
                self._read_lean()
            except Exception as exc:  # noqa: BLE001 - any layout surprise: use the library as-is
                log.warning("reading phonenumbers' place names selectively failed (%s); loading all of them "
                            "(about 100 MiB more memory)", exc)
                from phonenumbers import geocoder

                self.full = geocoder
            self._loaded = True

    def _read_lean(self) -> None:
        index = 0
        while True:
            data = _load_data_module(f"data{index}").data
            first = min(data)
            if first[0] > "1":
                break  # sorted files: this one and every later one start past +1
            self.nanp.update((prefix, names) for prefix, names in data.items() if prefix.startswith("1"))
            if max(data)[0] > "1":
                break
            index += 1
        if not self.nanp:
            raise ImportError("no +1 prefixes found in phonenumbers.geodata")
        self.longest = max(len(prefix) for prefix in self.nanp)
        self.regions = _load_data_module("locale").LOCALE_DATA


_DATA = _LeanGeodata()


def warm_up() -> None:
    """Load the place names now (seconds), not during the first call."""
    _DATA.load()


def _region_name(region: str) -> str:
    names = _DATA.regions.get(region)
    if not names:
        return ""
    name = names.get(_LANG, "")
    if name.startswith("*"):
        name = names.get(name[1:], "")
    return name


def country_name(number: phonenumbers.PhoneNumber) -> str:
    """``geocoder.country_name_for_number(number, "en")``."""
    _DATA.load()
    if _DATA.full is not None:
        return _DATA.full.country_name_for_number(number, _LANG)
    regions = phonenumbers.region_codes_for_country_code(number.country_code)
    if len(regions) == 1:
        return _region_name(regions[0])
    valid_in = [r for r in regions if phonenumbers.is_valid_number_for_region(number, r)]
    return _region_name(valid_in[0]) if len(valid_in) == 1 else ""


def describe(number: phonenumbers.PhoneNumber) -> str:
    """``geocoder.description_for_number(number, "en")`` for a +1 number; the country name otherwise."""
    _DATA.load()
    if _DATA.full is not None:
        return _DATA.full.description_for_number(number, _LANG)
    if number.country_code != 1:
        return country_name(number)
    kind = phonenumbers.number_type(number)
    if kind == PhoneNumberType.UNKNOWN:
        return ""
    if not phonenumbers.is_number_type_geographical(kind, number.country_code):
        return country_name(number)
    digits = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)[1:]
    for length in range(min(_DATA.longest, len(digits)), 0, -1):
        names = _DATA.nanp.get(digits[:length])
        if names is not None and _LANG in names:
            return names[_LANG] or country_name(number)
    return country_name(number)
