"""The control surface over a running engine: live calls, and pause/resume/payment by request.

The web console, the API and ``callguard payment start`` all act on live
calls through :class:`CallControl`.  It feeds the *same* core events a
hotkey or a dialplan signal produces (``PauseRequested``,
``PaymentStarted``, ...) into the same :class:`~callguard.runtime.Engine`,
with source ``api`` and the authenticated user, so an API pause takes the
engine path and writes the ledger entries a hotkey does; nothing here talks
to the PBX or the ledger directly.

It also keeps the live view: the engine calls :meth:`CallControl.observe`
with every ledger entry (``Engine.observers``), right after the session
moved; a PBX-confirmed change (``recording-muted``) reaches waiting API
calls and live-update subscribers in a callback queued right behind the
event that carried it - no polling, and nothing added before the PBX
commands of that event (a hotkey's mute is not delayed by the console).  Everything runs on the engine's thread (the
asyncio loop both listeners run the engine on).

Ownership ("agents act only on their own calls") is decided from the PBX's
channel names, never from caller ID (a caller controls that): a user's
endpoint ``PJSIP/agent-101`` owns the calls one of whose legs is a channel
``PJSIP/agent-101-0000002a``.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable, Iterable

from callguard.core import events as ev
from callguard.core.commands import LedgerEntry
from callguard.core.session import CallSession, State
from callguard.runtime import Engine

if TYPE_CHECKING:
    from callguard.payments.capture import Progress
    from callguard.payments.desk import PaymentDesk

#: States in which the PBX has not yet confirmed what the engine asked for.
PENDING = frozenset({State.STARTING, State.MUTING, State.UNMUTING})
#: Ledger entries kept per live call for its live timeline.
RECENT_ENTRIES = 200
#: How long a pause waits for the PBX beyond the engine's own confirm limit
#: (the engine stops the recording when the limit passes: that is an answer too).
CONFIRM_MARGIN_S = 1.0

#: ``<tech>/<resource>-<8 hex>`` and Local channels' ``;1``/``;2`` halves.
_CHANNEL_SUFFIX = re.compile(r"-[0-9a-fA-F]{8}(?:;[12])?$")


def channel_endpoint(channel: str) -> str:
    """The endpoint a PBX channel belongs to: ``PJSIP/agent-101-0000002a`` -> ``PJSIP/agent-101``.

    Asterisk names channels ``<tech>/<resource>-<sequence>``; a channel with
    no such suffix (a FreeSWITCH UUID) is its own endpoint.
    """
    return _CHANNEL_SUFFIX.sub("", channel)


class ControlError(Exception):
    """A control request that cannot be carried out; the message says why and what to do."""


class CallNotFound(ControlError):
    """No live call with that id (or no current call for that endpoint)."""


class NotYourCall(ControlError):
    """An agent addressed a call none of whose legs is one of their endpoints."""


class CardPaymentRefused(ControlError):
    """A card payment cannot start (or be found) on this call; the message says why and what to do."""


@dataclass(frozen=True)
class PartyView:
    channel: str
    number: str | None
    name: str | None
    role: str
    endpoint: str
    jurisdiction: str | None
    where: str | None
    regime: str | None
    staff: bool
    present: bool


@dataclass(frozen=True)
class CallView:
    """One live call as the console shows it (times are PBX epoch seconds)."""

    call_id: str
    state: str
    channel: str
    parties: tuple[PartyView, ...]
    regime: str | None
    explicit_consent: bool | None
    decision: str
    answered_at: float | None
    recording: bool
    muted: bool  #: the PBX confirmed the recording writes silence
    pending: bool  #: a recording command awaits the PBX's confirmation
    mute_reasons: tuple[str, ...]
    paused_by: str | None
    payment_by: str | None
    #: since when the call is paused or in payment (first request), for the live timer
    paused_since: float | None
    #: PBX confirmation times of the last recording changes
    confirmed: dict[str, float] = field(default_factory=dict)
    ended: bool = False
    version: int = 0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (shallow copies: every field is already a plain value; asdict's deep copy
        cost more than the rest of an API pause)."""
        out = dict(self.__dict__)
        out["parties"] = [dict(p.__dict__) for p in self.parties]
        out["mute_reasons"] = list(self.mute_reasons)
        out["confirmed"] = dict(self.confirmed)
        return out


@dataclass(frozen=True)
class Change:
    """What a live-update subscriber receives: one call changed (``view`` None: it ended)."""

    call_id: str
    kind: str
    view: CallView


@dataclass
class _Live:
    """What the control surface remembers about one live call beyond its session."""

    entries: deque[LedgerEntry] = field(default_factory=lambda: deque(maxlen=RECENT_ENTRIES))
    confirmed: dict[str, float] = field(default_factory=dict)
    paused_since: float | None = None
    version: int = 0
    last: CallView | None = None


_CONFIRMED_KINDS = ("recording-started", "recording-muted", "recording-unmuted", "recording-stopped")


class CallControl:
    """Live calls of one engine, and the requests users may make on them."""

    def __init__(self, engine: Engine, *, confirm_timeout_s: float | None = None,
                 endpoint_of: Callable[[str], str] = channel_endpoint, clock: Callable[[], float] = time.time,
                 payments: "PaymentDesk | None" = None):
        self.engine = engine
        #: card captures the agent never hears (None: [payments] url not set on this listener)
        self.payments = payments
        self.endpoint_of = endpoint_of
        self.clock = clock
        self.confirm_timeout_s = (confirm_timeout_s if confirm_timeout_s is not None
                                  else max(engine.settings.confirm_timeout_s, engine.settings.start_timeout_s))
        self._live: dict[str, _Live] = {}
        self._loop = asyncio.get_running_loop()
        self._dirty: dict[str, tuple[str, _Live]] = {}
        self._flush_scheduled = False
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._subscribers: set[asyncio.Queue[Change | None]] = set()
        #: counters for /metrics: requests by action, and API pause->confirmed latencies
        self.requests: dict[str, int] = {}
        engine.observers.append(self.observe)

    # -- the engine's side ------------------------------------------------------

    def observe(self, entry: LedgerEntry) -> None:
        """Every ledger entry of every call (engine thread): note it now, publish after the event.

        This runs inside ``Engine.feed``, before the commands that follow
        the entry (a pause's ``pause-requested`` comes before its mute), so
        it only does bookkeeping; building views, waking waiters and
        publishing happen in a callback right after the event was handled.
        The call's last view is built here only at its hangup (the session
        is forgotten when the event is done).
        """
        live = self._live.get(entry.call_id)
        if live is None:
            live = self._live[entry.call_id] = _Live()
        live.entries.append(entry)
        live.version += 1
        kind = entry.kind
        if kind in _CONFIRMED_KINDS and entry.data.get("confirmed_by") == "pbx":
            live.confirmed[kind] = entry.at
        session = self.engine.session(entry.call_id)
        wanted = session is not None and session.desired_muted
        if wanted and live.paused_since is None:
            live.paused_since = entry.at
        elif not wanted:
            live.paused_since = None
        if kind == "hangup" or session is None or session.finished:
            live.last = self._view(entry.call_id, session, live, ended=True)
            self._live.pop(entry.call_id, None)
        self._dirty[entry.call_id] = (kind, live)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        """Publish what changed since the last flush: one view per call, waiters woken."""
        self._flush_scheduled = False
        dirty, self._dirty = self._dirty, {}
        for call_id, (kind, live) in dirty.items():
            session = self.engine.session(call_id)
            view = live.last if session is None and live.last is not None else self._view(call_id, session, live)
            live.last = view
            for waiter in self._waiters.pop(call_id, ()):
                if not waiter.done():
                    waiter.set_result(None)
            self._publish(Change(call_id, kind, view))

    # -- queries ------------------------------------------------------------------

    def calls(self, endpoints: Iterable[str] | None = None) -> list[CallView]:
        """Every live call (or only those with a leg on one of ``endpoints``), oldest first."""
        wanted = None if endpoints is None else set(endpoints)
        out = []
        for call_id, session in list(self.engine.sessions.items()):
            if wanted is not None and not self._has_endpoint(session, wanted):
                continue
            out.append(self._view(call_id, session, self._live.get(call_id)))
        return out

    def call(self, call_id: str) -> CallView:
        session = self.engine.session(call_id)
        if session is None:
            raise CallNotFound(f"no live call {call_id!r} on this listener (it may have ended; "
                               f"see its evidence with `callguard ledger show {call_id}`)")
        return self._view(call_id, session, self._live.get(call_id))

    def recent_entries(self, call_id: str) -> list[LedgerEntry]:
        """The ledger entries this listener wrote for a live call, oldest first."""
        live = self._live.get(call_id)
        return list(live.entries) if live is not None else []

    def owns(self, call_id: str, endpoints: Iterable[str]) -> bool:
        session = self.engine.session(call_id)
        return session is not None and self._has_endpoint(session, set(endpoints))

    def current_call(self, endpoints: Iterable[str]) -> str:
        """The live call on one of ``endpoints`` answered last ("my current call")."""
        wanted = set(endpoints)
        if not wanted:
            raise CallNotFound("you have no endpoint configured, so there is no 'current call' to find; "
                               "ask an admin to add yours (callguard console user add NAME --endpoint ...)")
        mine = [(s.answered_at or 0.0, cid) for cid, s in list(self.engine.sessions.items())
                if self._has_endpoint(s, wanted)]
        if not mine:
            raise CallNotFound(f"no live call on your endpoint(s) {', '.join(sorted(wanted))}")
        return max(mine)[1]

    # -- requests -------------------------------------------------------------------

    async def pause(self, call_id: str, actor: str, *, wait: bool = True) -> CallView:
        """Pause the recording as a hotkey would; returns once the PBX confirmed (or the engine gave up)."""
        return await self._request(call_id, "pause", ev.PauseRequested, actor, wait)

    async def resume(self, call_id: str, actor: str, *, wait: bool = True) -> CallView:
        return await self._request(call_id, "resume", ev.ResumeRequested, actor, wait)

    async def start_payment(self, call_id: str, actor: str, *, wait: bool = True) -> CallView:
        """Open a payment segment (the recording is muted until it ends)."""
        return await self._request(call_id, "payment-start", ev.PaymentStarted, actor, wait)

    async def cancel_payment(self, call_id: str, actor: str, *, wait: bool = True) -> CallView:
        """End the payment segment (the recording resumes unless something else keeps it muted)."""
        return await self._request(call_id, "payment-cancel", ev.PaymentEnded, actor, wait)

    async def _request(self, call_id: str, action: str, event_type: type, actor: str, wait: bool) -> CallView:
        self.call(call_id)  # raises CallNotFound
        self.requests[action] = self.requests.get(action, 0) + 1
        self.engine.feed(call_id, event_type(self.engine.pbx_now(), source=ev.Source.API, actor=actor))
        if wait:
            await self.settled(call_id, self.confirm_timeout_s + CONFIRM_MARGIN_S)
        session = self.engine.session(call_id)
        live = self._live.get(call_id)
        if session is None:  # hung up meanwhile: the last view says how it ended
            if live is not None and live.last is not None:
                return live.last
            raise CallNotFound(f"call {call_id!r} ended while the request was handled")
        return self._view(call_id, session, live)

    async def settled(self, call_id: str, timeout: float) -> bool:
        """Wait until the PBX confirmed what the engine last asked for on ``call_id`` (or it ended)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            session = self.engine.session(call_id)
            if session is None or session.state not in PENDING:
                return True
            left = deadline - loop.time()
            if left <= 0:
                return False
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.setdefault(call_id, []).append(waiter)
            try:
                await asyncio.wait_for(waiter, left)
            except asyncio.TimeoutError:
                return False

    # -- card payments (callguard.payments): the desk runs them, this is the way in ---------

    async def start_card_payment(self, call_id: str, actor: str, *, amount: str | None = None,
                                 currency: str = "", wait: bool = True) -> dict[str, Any]:
        """Take a card from the caller's keypad; returns once the call is protected (or the payment ended).

        "Protected" is what the desk waits for before the first prompt: the
        recording muted and the agent's leg guarded, both confirmed by the PBX.
        """
        from callguard.payments.desk import PaymentRefused

        self.call(call_id)  # raises CallNotFound
        desk = self._desk()
        try:
            payment_id = desk.start(call_id, amount=amount, currency=currency, source=ev.Source.API, actor=actor)
        except PaymentRefused as exc:
            raise CardPaymentRefused(str(exc)) from None
        self.requests["card-payment"] = self.requests.get("card-payment", 0) + 1
        if wait:
            await self._card_moved(payment_id, desk.settings.arm_timeout_s + CONFIRM_MARGIN_S)
        return self.card_payment(payment_id)

    def cancel_card_payment(self, call_id: str, actor: str) -> dict[str, Any]:
        """Cancel the card payment running on ``call_id`` (the caller hears that it was cancelled)."""
        desk = self._desk()
        capture = desk.active(call_id)
        if capture is None:
            raise CardPaymentRefused(f"no card payment is running on call {call_id!r}")
        self.requests["card-cancel"] = self.requests.get("card-cancel", 0) + 1
        desk.cancel(call_id, by=ev.Source.API.value)
        return self.card_payment(capture.payment_id)

    def card_payment(self, call_or_payment: str) -> dict[str, Any]:
        """The masked progress of the latest payment of a call (or of one payment), and its result."""
        from callguard.payments.desk import status

        desk = self._desk()
        views = desk.hub.latest(call_or_payment)
        if not views:
            raise CardPaymentRefused(f"no card payment known for {call_or_payment!r} on this listener")
        payment_id = views[-1].payment_id
        return {"payment_id": payment_id, "call_id": views[-1].call_id, **status(desk, payment_id)}

    def card_views(self) -> "list[Progress]":
        """The latest masked view of every payment the desk remembers."""
        return self._desk().hub.latest()

    def subscribe_card_progress(self, maxsize: int = 1000) -> "tuple[asyncio.Queue[Progress | None], Callable[[], None]]":
        """A queue of every masked progress change from now on, and the function that stops it.

        A subscriber that falls ``maxsize`` behind is cut off with ``None``.
        """
        queue: asyncio.Queue[Progress | None] = asyncio.Queue(maxsize)
        holder: list[Callable[[], None]] = []

        def push(progress: "Progress") -> None:
            try:
                queue.put_nowait(progress)
            except asyncio.QueueFull:
                holder[0]()
                queue.get_nowait()
                queue.put_nowait(None)

        holder.append(self._desk().hub.subscribe(push))
        return queue, holder[0]

    def _desk(self) -> "PaymentDesk":
        if self.payments is None:
            raise CardPaymentRefused("this listener takes no card payments: set [payments] url in callguard.toml "
                                     "and restart it (README, 'Taking payments')")
        return self.payments

    async def _card_moved(self, payment_id: str, timeout: float) -> None:
        """Wait until the payment left ARMING (collecting, or ended)."""
        desk = self._desk()
        moved = asyncio.get_running_loop().create_future()

        def check(progress: "Progress") -> None:
            if progress.payment_id == payment_id and progress.phase != "arming" and not moved.done():
                moved.set_result(None)

        views = desk.hub.latest(payment_id)
        if views:
            check(views[-1])
        stop = desk.hub.subscribe(check)
        try:
            await asyncio.wait_for(moved, timeout)
        except asyncio.TimeoutError:
            pass
        finally:
            stop()

    # -- live updates ---------------------------------------------------------------

    def subscribe(self, maxsize: int = 1000) -> asyncio.Queue[Change | None]:
        """A queue of every change from now on; a subscriber that falls ``maxsize`` behind gets ``None``."""
        queue: asyncio.Queue[Change | None] = asyncio.Queue(maxsize)
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Change | None]) -> None:
        self._subscribers.discard(queue)

    def _publish(self, change: Change) -> None:
        for queue in list(self._subscribers):
            try:
                queue.put_nowait(change)
            except asyncio.QueueFull:  # too slow: cut it off; it reconnects and re-reads the list
                self._subscribers.discard(queue)
                queue.get_nowait()
                queue.put_nowait(None)

    # -- helpers --------------------------------------------------------------------

    def _has_endpoint(self, session: CallSession, endpoints: set[str]) -> bool:
        return any(self.endpoint_of(p.channel) in endpoints for p in session.parties if p.channel)

    def _view(self, call_id: str, session: CallSession | None, live: _Live | None, *,
              ended: bool = False) -> CallView:
        if session is None:  # gone: its last view, as an ended call
            assert live is not None and live.last is not None
            return replace(live.last, ended=True, state=State.ENDED.value)
        parties = tuple(
            PartyView(p.channel, p.number, p.name, p.role, self.endpoint_of(p.channel),
                      rule.jurisdiction.code if rule else None, rule.jurisdiction.description if rule else None,
                      rule.regime if rule else None, bool(rule and rule.jurisdiction.internal), present)
            for p, rule, present in session.party_rules())
        flags = session.flags
        return CallView(
            call_id=call_id, state=session.state.value, channel=session.channel, parties=parties,
            regime=session.rule.regime if session.rule else None,
            explicit_consent=session.rule.explicit_consent if session.rule else None,
            decision=session.decision, answered_at=session.answered_at, recording=session.recording,
            muted=session.muted, pending=session.state in PENDING, mute_reasons=tuple(flags.reasons()),
            paused_by=flags.paused_by.value if flags.paused_by else None,
            payment_by=flags.payment_by.value if flags.payment_by else None,
            paused_since=live.paused_since if live else None,
            confirmed=dict(live.confirmed) if live else {}, ended=ended or session.finished,
            version=live.version if live else 0)


__all__ = ["CallControl", "CallNotFound", "CallView", "CardPaymentRefused", "Change", "ControlError", "NotYourCall",
           "PartyView", "channel_endpoint"]
