"""What a scenario may ask of a PBX, whichever PBX (and whether fake or real) is behind it.

The acceptance scenarios in ``test_scenarios.py`` speak only this
vocabulary, so the same test runs against the fakes in CI and, given a
PBX's address and credentials in the environment, unchanged against a real
Asterisk or FreeSWITCH (see ``conftest.py``).  A backend implements
:class:`Pbx` and :class:`Call` for one PBX kind; the listener under test is
always a real ``callguard run <pbx>`` process (:mod:`.listener`).
"""

from __future__ import annotations

import abc
from typing import Any


class Call(abc.ABC):
    """One scripted customer call: the customer, the staff leg the dialplan routes it to."""

    #: the call id the listener uses in the ledger (Asterisk Linkedid, FreeSWITCH UUID)
    call_id: str
    number: str

    @abc.abstractmethod
    async def answer_notice(self, digits: str, timeout: float = 30.0) -> None:
        """Wait until the notice (a consent gather) plays to the customer, then press ``digits``."""

    @abc.abstractmethod
    async def wait_decided(self, timeout: float = 30.0) -> str:
        """Until the dialplan has its decision; returns it (granted, declined, not-recorded, ...)."""

    @abc.abstractmethod
    async def wait_bridged(self, timeout: float = 30.0) -> None:
        """Until the customer talks to the staff leg."""

    @abc.abstractmethod
    async def hotkey(self, action: str) -> None:
        """The staff leg presses the pause / resume hotkey."""

    @abc.abstractmethod
    async def payment(self, seconds: float) -> tuple[float, float]:
        """An IVR payment segment on the customer's leg; returns its (start, end) on the PBX clock.

        ``start`` is when the dialplan let the payment audio flow (after its guard).
        """

    @abc.abstractmethod
    async def join(self, number: str, digits: str | None) -> None:
        """An outside party is dialled in through the join Gosub; presses ``digits`` at its notice."""

    @abc.abstractmethod
    async def hangup(self) -> None:
        """The customer hangs up (the call ends for everyone)."""

    @abc.abstractmethod
    async def wait_ended(self, timeout: float = 30.0) -> None: ...

    @abc.abstractmethod
    def audible_between(self, t0: float, t1: float) -> bool:
        """Did the recording hold audio (not silence) anywhere in ``(t0, t1)`` (PBX clock)?"""

    @abc.abstractmethod
    def recorded(self) -> bool:
        """Was a recording started on this call at all?"""


class Pbx(abc.ABC):
    """One PBX the listener is pointed at."""

    kind: str  #: "asterisk" or "freeswitch": the ``callguard run`` subcommand
    real: bool

    @abc.abstractmethod
    def listener_settings(self) -> dict[str, Any]:
        """The ``[<kind>]`` section of callguard.toml that reaches this PBX."""

    @abc.abstractmethod
    async def listener_alive(self) -> bool:
        """Does the PBX see a fresh heartbeat from the listener?"""

    @abc.abstractmethod
    async def call(self, number: str, name: str = "Accept Caller") -> Call:
        """Place a customer call into callguard's inbound dialplan."""

    @abc.abstractmethod
    async def hostile_call(self, victim: Call, action: str) -> Call:
        """A customer whose caller number forges ``action`` (e.g. resume) for ``victim``'s call."""

    async def close(self) -> None:
        """Hang up whatever is left."""
