"""The acceptance suite: the same end-to-end scenarios against a fake PBX (CI) or a real one.

Without any environment variable every scenario runs against the fakes in
``callguard.testing`` (real sockets, the real listener, a real SQLite
ledger).  Given a real PBX's address and credentials it runs, unchanged,
against that PBX instead:

=========================================  ==================================================
``CALLGUARD_ACCEPTANCE_FREESWITCH``         ``host:port`` of a FreeSWITCH event socket
``CALLGUARD_ACCEPTANCE_FREESWITCH_PASSWORD``  its password
``CALLGUARD_ACCEPTANCE_FREESWITCH_LISTEN_PORT``  where callguard.xml's ``socket`` connects (8084)
=========================================  ==================================================

Each PBX module (``freeswitch.py``; the Asterisk one alongside) offers
``targets(tmp, environ)``; every scenario runs once per target.  A target
that cannot drive a step says why and the scenario is skipped for it.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from . import freeswitch

#: modules with a ``targets(tmp, environ)`` function, one per PBX
TARGET_MODULES = [freeswitch]


def _names() -> list[str]:
    return [f"{module.__name__.rsplit('.', 1)[-1]}" for module in TARGET_MODULES]


@pytest.fixture(params=_names())
def target(request: pytest.FixtureRequest, tmp_path: Any) -> Any:
    module = TARGET_MODULES[_names().index(request.param)]
    chosen = module.targets(tmp_path, dict(os.environ))
    if not chosen:
        pytest.skip(f"no {request.param} target configured")
    return chosen[0]
