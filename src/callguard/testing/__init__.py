"""Public test helpers: fake PBX servers on real sockets and scenario runners.

Like ``structlog.testing``, this is part of the public API so sites can test
their own dialplans and policies against the same fakes callguard's own
suite uses.
"""

from importlib import import_module
from typing import Any

#: Public names, imported on first use (the fakes pull in asyncio servers).
_EXPORTS = {
    "FakeAsterisk": "callguard.testing.fake_asterisk",
    "FakeAsteriskThread": "callguard.testing.fake_asterisk",
    "FakeFreeSWITCH": "callguard.testing.fake_freeswitch",
    "FakeWitness": "callguard.testing.witness",
    "Scenario": "callguard.testing.scenario",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'callguard.testing' has no attribute {name!r}")
    return getattr(import_module(module), name)


__all__ = sorted(_EXPORTS)
