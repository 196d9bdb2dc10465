"""The schema machinery behind ``callguard.toml`` (pydantic v2), apart from the sections.

A config section is a frozen dataclass validated by pydantic in strict mode
(``port = "5038"`` is an error, not a silent conversion), declared with
:func:`section`::

    # callguard/payments/settings.py
    from callguard.config_schema import section

    @section
    class PaymentsConfig:
        '''Card capture the agent never hears.'''
        gateway_url: str = ""
        timeout_s: float = 30.0

and registered in :class:`callguard.config.Config` with one field
(``payments: PaymentsConfig = field(default_factory=PaymentsConfig)``).
A check on one value is :func:`rule` in the annotation
(``timeout_s: Annotated[float, rule(lambda v: v > 0, "must be positive")]``);
checks across fields are pydantic ``field_validator`` s raising ``ValueError``
with the sentence to show; :func:`one_of` words the "what is accepted, did
you mean" part.  The loader turns every pydantic error
into ``<file or environment variable>: [section] key: <what is wrong>``.

This module imports nothing from callguard, so a capability's settings
module can use it without import cycles.  Sections stay real dataclasses:
``dataclasses.replace(config.asterisk, port=...)`` re-validates.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Collection
from typing import Any, TypeVar, dataclass_transform

import pydantic
import pydantic.dataclasses
from pydantic import ValidationError

T = TypeVar("T")

#: strict: TOML already has types, so a string where a number belongs is a
#: mistake to report, not to coerce; forbid: a misspelt key is an error.
SECTION_CONFIG = pydantic.ConfigDict(strict=True, extra="forbid")


@dataclass_transform(frozen_default=True, field_specifiers=(dataclasses.field, pydantic.Field))
def section(cls: type[T]) -> type[T]:
    """Make ``cls`` a validated, frozen config section (see the module docstring)."""
    built = pydantic.dataclasses.dataclass(frozen=True, config=SECTION_CONFIG)(cls)
    built.__callguard_section__ = True  # type: ignore[attr-defined]
    return built


def is_section(annotation: Any) -> bool:
    return isinstance(annotation, type) and getattr(annotation, "__callguard_section__", False)


def suggest(value: str, known: Collection[str]) -> str:
    """`` (did you mean 'x'?)`` for a near miss, else the empty string."""
    close = difflib.get_close_matches(value, list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def one_of(value: str, known: Collection[str], what: str, *, accepted: str | None = None) -> str:
    """``value`` if it is in ``known``; else ValueError: what it is not, what is accepted, a suggestion."""
    if value in known:
        return value
    shown = accepted or ", ".join(sorted(known))
    raise ValueError(f"unknown {what} {value!r}{suggest(value, known)}; accepted: {shown}")


def rule(ok: Callable[[Any], bool], message: str) -> pydantic.AfterValidator:
    """A check for ``Annotated[int, rule(lambda v: v >= 1, "must be at least 1")]``; ``{value}`` is filled in."""

    def check(value: Any) -> Any:
        if not ok(value):
            raise ValueError(message.format(value=value))
        return value

    return pydantic.AfterValidator(check)


def table_adapter(annotation: Any) -> pydantic.TypeAdapter[Any]:
    """A strict validator for a plain table section such as ``[retention]`` (``dict[str, int]``)."""
    return pydantic.TypeAdapter(annotation, config=SECTION_CONFIG)


# -- wording pydantic's errors ----------------------------------------------------

_TYPE_NAMES = {
    "int": "an integer", "float": "a number", "str": "a string", "bool": "true or false",
    "list": "a list", "dict": "a table", "literal": "one of the listed values",
}


def _expected(error_type: str) -> str | None:
    """``int_type`` / ``int_parsing`` / ``int_from_float`` -> 'an integer' (None: not a type error)."""
    kind = error_type.partition("_")[0]
    if error_type.endswith(("_type", "_parsing", "_from_float")) and kind in _TYPE_NAMES:
        return _TYPE_NAMES[kind]
    return None


def describe(error: Any, known_keys: Collection[str] = ()) -> tuple[str, str]:
    """One pydantic error -> (dotted key, what is wrong), in the config's own words."""
    loc = [str(part) for part in error["loc"] if part != "[key]"]
    key = ".".join(loc)
    kind = error["type"]
    if kind in ("unexpected_keyword_argument", "extra_forbidden"):
        close = suggest(loc[-1], known_keys)
        known = f"; known keys: {', '.join(known_keys)}" if not close and known_keys else ""
        return key, f"unknown key{close}{known}"
    if kind == "value_error":
        return key, str(error["ctx"]["error"])
    expected = _expected(kind)
    if expected:
        return key, f"expected {expected}, got {error['input']!r}"
    if kind == "literal_error":
        return key, f"must be {error['ctx']['expected']}, got {error['input']!r}"
    return key, f"{error['msg']}, got {error['input']!r}"


def field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def build(factory: Callable[..., T], raw: dict[str, Any]) -> tuple[T | None, list[tuple[str, str]]]:
    """``factory(**raw)`` or the (key, problem) pairs that stopped it."""
    try:
        return factory(**raw), []
    except ValidationError as exc:
        known = field_names(factory) if dataclasses.is_dataclass(factory) else []  # type: ignore[arg-type]
        return None, [describe(error, known) for error in exc.errors()]


__all__ = ["SECTION_CONFIG", "build", "describe", "field_names", "is_section", "one_of", "rule", "section", "suggest",
           "table_adapter"]
