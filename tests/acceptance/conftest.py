"""The acceptance suite: the same end-to-end scenarios against a fake PBX (CI) or a real one.

Without any environment variable every scenario runs against the fakes in
``callguard.testing`` (real sockets, the real listener, a real SQLite
ledger).  Given a real PBX's address and credentials it runs, unchanged,
against that PBX instead:

=================================================  ==================================================
``CALLGUARD_ACCEPTANCE_FREESWITCH``                 ``host:port`` of a FreeSWITCH event socket
``CALLGUARD_ACCEPTANCE_FREESWITCH_PASSWORD``        its password
``CALLGUARD_ACCEPTANCE_FREESWITCH_LISTEN_PORT``     where callguard.xml's ``socket`` connects (8084)
``CALLGUARD_ACCEPTANCE_ASTERISK``                   ``host:port`` of Asterisk's AMI
``CALLGUARD_ACCEPTANCE_ASTERISK_USER`` / ``_SECRET``  an AMI user with read/write ``all``
``CALLGUARD_ACCEPTANCE_ASTERISK_RECORDINGS``        the PBX's MixMonitor directory, readable here
=================================================  ==================================================

Two kinds of scenario share these PBXs:

* ``test_scenarios.py``: scripted calls in the project's Scenario format,
  played by a *target* (``target`` fixture).  Each PBX module
  (``freeswitch.py``, ``asterisk.py``) offers ``targets(tmp, environ)``;
  every scenario runs once per target; a target that cannot drive a step
  says why and the scenario is skipped for it.
* ``test_lifecycle.py``: interactive calls against a real ``callguard run
  <pbx>`` *process* (``pbx`` and ``listener`` fixtures,
  :mod:`.interactive`, :mod:`.listener`), for what a script cannot say:
  the listener killed, restarted, stalled or stopped mid-call, a hostile
  caller against a neighbour's call.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any, AsyncIterator

import pytest

from . import asterisk, freeswitch
from .interactive import Pbx
from .listener import ListenerProcess

#: modules with a ``targets(tmp, environ)`` function, one per PBX
TARGET_MODULES = [freeswitch, asterisk]


def _names() -> list[str]:
    return [f"{module.__name__.rsplit('.', 1)[-1]}" for module in TARGET_MODULES]


@pytest.fixture(params=_names())
def target(request: pytest.FixtureRequest, tmp_path: Any) -> Any:
    module = TARGET_MODULES[_names().index(request.param)]
    chosen = module.targets(tmp_path, dict(os.environ))
    if not chosen:
        pytest.skip(f"no {request.param} target configured")
    return chosen[0]


# -- interactive PBXs and the listener process (test_lifecycle.py) --------------------------------


def _interactive() -> list[str]:
    found = ["asterisk-fake"]
    if os.environ.get("CALLGUARD_ACCEPTANCE_ASTERISK"):
        found.append("asterisk-real")
    return found


async def _open(backend: str) -> Pbx:
    if backend == "asterisk-fake":
        from .asterisk_fake import FakeAsteriskPbx
        return await FakeAsteriskPbx().start()
    if backend == "asterisk-real":
        from .asterisk_real import RealAsteriskPbx
        return await RealAsteriskPbx.from_environment()
    raise ValueError(backend)


@pytest.fixture(params=_interactive())
async def pbx(request: pytest.FixtureRequest) -> AsyncIterator[Pbx]:
    opened = await _open(request.param)
    try:
        yield opened
    finally:
        await opened.close()


async def until(predicate: Any, timeout: float = 30.0, what: str = "") -> None:
    """Wait for a condition (async or plain), polling; generous by default for loaded CI machines."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what or predicate}")
        await asyncio.sleep(0.02)


async def start_listener(pbx: Pbx, tmp: Path, **sections: Any) -> ListenerProcess:
    listener = ListenerProcess(pbx.kind, tmp, pbx.listener_settings(), **sections)
    await listener.start()
    try:
        await until(pbx.listener_alive, 90, "the listener's heartbeat on the PBX")
    except AssertionError:
        raise AssertionError(f"listener did not come up; its log:\n{listener.log_text[-3000:]}") from None
    return listener


@pytest.fixture
async def listener(pbx: Pbx, tmp_path: Path) -> AsyncIterator[ListenerProcess]:
    running = await start_listener(pbx, tmp_path)
    try:
        yield running
    finally:
        if running.running:
            running.resume()
            await running.terminate()
        running.close()
