"""The payments desk: runs card captures next to the engine, with the PBX, timers and the connector.

:class:`PaymentDesk` is the I/O shell around
:class:`~callguard.payments.capture.CaptureSession` (the sans-IO machine).
It is the one place that knows all the collaborators:

* the :class:`~callguard.runtime.Engine` - a capture starts by feeding
  ``CaptureStarted`` to the call (the call's session mutes the recording
  and writes ``payment-started``) and ends by feeding ``CaptureEnded``
  (``payment-ended`` with the result; the recording is unmuted).  The desk
  watches the engine's ledger entries (``Engine.observers``) for the PBX's
  confirmation of the mute and for the caller's hang-up;
* a :class:`PaymentDriver` - the listener, which guards the agent's leg,
  plays prompts to the caller, and reports the caller's keys
  (:meth:`caller_key`) and its own confirmations back;
* the connector (:class:`~callguard.payments.connector.HttpsConnector`),
  called on the event loop; the card it sends is wiped when it returns;
* a :class:`~callguard.payments.progress.ProgressHub` for the agent's screens.

Everything runs on the engine's event loop thread.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, Callable, Protocol

from callguard.core import events as ev
from callguard.core.commands import CancelTimer, Command, LedgerEntry, PromptRef, StartTimer
from callguard.core.session import CallSession, State
from callguard.payments import capture as cap
from callguard.payments.connector import GatewayAnswer
from callguard.payments.progress import ProgressHub
from callguard.payments.secret import CardData
from callguard.runtime import Engine, TimerHandle

if TYPE_CHECKING:
    from callguard.payments.settings import PaymentsConfig

log = logging.getLogger("callguard.payments")


class PaymentRefused(ValueError):
    """A payment cannot start on this call; the message says why and what to do."""


class PaymentDriver(Protocol):
    """What a listener does for a payment (answers come back through the desk's methods)."""

    def payment_guard(self, call_id: str, payment_id: str, on: bool) -> None:
        """Keep (``on``) or stop keeping the caller's DTMF and audio from the agent; confirm with
        :meth:`PaymentDesk.guard_confirmed`."""

    def payment_prompt(self, call_id: str, payment_id: str, prompt: PromptRef) -> None:
        """Play ``prompt`` to the caller; report failure with :meth:`PaymentDesk.prompt_failed`."""


class Connector(Protocol):
    async def charge(self, card: CardData, amount: Decimal, currency: str, key: str,
                     reference: str) -> GatewayAnswer: ...

    async def tokenize(self, card: CardData, key: str, reference: str) -> GatewayAnswer: ...


@dataclass
class _Payment:
    capture: cap.CaptureSession
    call_id: str
    guarded: bool = False
    #: payment-started is committed to the ledger: a process that dies from here on leaves a trace the
    #: next one finds (callguard.payments.orphans), so no digit is asked for before
    durable: bool = False
    protected_sent: bool = False
    timers: dict[str, TimerHandle] | None = None


#: Call states where a payment may begin (the notice is over and the call goes on).
_PAYABLE = frozenset({State.STARTING, State.RECORDING, State.MUTING, State.MUTED, State.UNMUTING, State.UNRECORDED})


def parse_amount(amount: str | Decimal | None, currency: str) -> tuple[Decimal | None, str]:
    """Validate an amount and ISO 4217 currency code from the API or CLI."""
    currency = (currency or "").strip().upper()
    if amount is None or amount == "":
        return None, currency
    try:
        value = Decimal(str(amount))
    except InvalidOperation:
        raise PaymentRefused(f"amount {amount!r} is not a number; write it like 49.90") from None
    if not value.is_finite() or value <= 0 or value.as_tuple().exponent < -3:  # type: ignore[operator]
        raise PaymentRefused(f"amount {amount!r} must be positive with at most 3 decimals")
    if len(currency) != 3 or not currency.isalpha() or not currency.isascii():
        raise PaymentRefused(f"currency {currency!r} must be a three-letter ISO 4217 code like GBP")
    return value, currency


class PaymentDesk:
    """All card captures of one listener."""

    def __init__(self, engine: Engine, driver: PaymentDriver, connector: Connector | None,
                 settings: cap.CaptureSettings, *, hub: ProgressHub | None = None,
                 clock: Callable[[], float] = time.time):
        self.engine = engine
        self.driver = driver
        self.connector = connector
        self.settings = settings
        self.hub = hub or ProgressHub()
        self.clock = clock
        self.payments: dict[str, _Payment] = {}  #: by payment id
        self._by_call: dict[str, str] = {}
        self.results: dict[str, cap.PaymentResult] = {}
        self._tasks: set[asyncio.Task] = set()
        self._orphans_checked = False
        engine.observers.append(self._observe)

    # -- starting and stopping -----------------------------------------------------------------

    def start(self, call_id: str, *, amount: str | Decimal | None = None, currency: str = "",
              source: ev.Source = ev.Source.API, staff_leg: str = "", actor: str = "") -> str:
        """Begin a card capture on a live call; returns the payment id.

        Raises :class:`PaymentRefused` when the call is unknown, not past its
        notice, already taking a payment, or no connector is configured.
        """
        value, code = parse_amount(amount, currency)
        session = self.engine.session(call_id)
        if session is None:
            raise PaymentRefused(f"no live call {call_id!r} on this listener; list calls with `callguard calls`")
        if session.state not in _PAYABLE:
            raise PaymentRefused(f"call {call_id} is still in its notice ({session.state.value}); start the payment "
                                 "once the caller is talking to the agent")
        if call_id in self._by_call:
            raise PaymentRefused(f"call {call_id} is already taking payment {self._by_call[call_id]}; "
                                 "cancel it first")
        if self.connector is None:
            raise PaymentRefused("no payment connector is configured; set [payments] url (see README, "
                                 "'Taking payments')")
        payment_id = uuid.uuid4().hex
        now = self.engine.pbx_now()
        staff = staff_leg or next((p.channel for p in session.parties if p.role == "agent"), "")
        capture = cap.CaptureSession(payment_id, call_id, self.settings, self.engine.prompts, session.language,
                                     amount=value, currency=code, started_at=now)
        payment = _Payment(capture, call_id, timers={})
        self.payments[payment_id] = payment
        self._by_call[call_id] = payment_id
        self.engine.feed(call_id, ev.CaptureStarted(now, payment_id, source, staff, capture.operation,
                                                    "" if value is None else str(value), code, actor))
        self._run(payment, capture.start())
        self._spawn(self._make_durable(payment), f"callguard-payment-durable-{payment_id}")
        return payment_id

    async def _make_durable(self, payment: _Payment) -> None:
        from callguard.payments.orphans import readable_ledger

        ledger = await asyncio.to_thread(readable_ledger, self.engine.ledger)  # may open a reader: off the loop
        flush = getattr(ledger, "flush", None)
        if flush is not None and not await asyncio.to_thread(flush, 5.0):
            log.warning("payment %s: the ledger did not confirm payment-started within 5 s; collecting anyway",
                        payment.capture.payment_id)
        payment.durable = True
        session = self.engine.session(payment.call_id)
        if session is not None:
            self._check_protected(payment, session)

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def cancel(self, call_or_payment: str, by: str = "api") -> bool:
        """Cancel the payment (by its id or its call's id); False when none is running."""
        payment = self._find(call_or_payment)
        if payment is None:
            return False
        self._handle(payment, cap.Cancel(self.engine.pbx_now(), by))
        return True

    def active(self, call_or_payment: str) -> cap.CaptureSession | None:
        payment = self._find(call_or_payment)
        return payment.capture if payment else None

    async def aclose(self, timeout: float = 30.0) -> None:
        """The listener stops: end each capture still collecting (the caller is told, the agent's leg
        released), let connector calls in flight finish (a charge is never abandoned half-way), close it."""
        now = self.engine.pbx_now()
        for payment in list(self.payments.values()):
            if payment.capture.phase in (cap.Phase.ARMING, cap.Phase.COLLECTING):
                self._handle(payment, cap.Cancel(now, "listener-stop"))
        drain = getattr(self.driver, "drain", None)
        if drain is not None:
            await drain(min(timeout, 5.0))  # the release and the prompt leave before the PBX link closes
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)
        close = getattr(self.connector, "aclose", None)
        if close is not None:
            await close()

    # -- what the listener reports ---------------------------------------------------------------

    def caller_key(self, call_id: str, digit: str, at: float) -> None:
        """A key the caller pressed on the recorded leg (the listener checked the leg)."""
        payment = self._find(call_id)
        if payment is not None:
            self._handle(payment, cap.Key(at, digit))

    def guard_confirmed(self, call_id: str, on: bool, ok: bool = True, reason: str = "") -> None:
        payment = self._find(call_id)
        if payment is None or not on:
            if not ok:
                log.error("call %s: could not lift the payment guard on the agent's leg: %s", call_id, reason)
            return
        if not ok:
            self._handle(payment, cap.ProtectionFailed(self.engine.pbx_now(), f"agent guard: {reason}"))
            return
        payment.guarded = True
        session = self.engine.session(call_id)
        if session is not None:
            self._check_protected(payment, session)

    def prompt_failed(self, call_id: str, reason: str) -> None:
        payment = self._find(call_id)
        if payment is not None:
            self._handle(payment, cap.PromptFailed(self.engine.pbx_now(), reason))

    def check_orphans(self) -> None:
        """Once per process, at the first PBX login: end the captures an earlier process left unfinished.

        See :mod:`callguard.payments.orphans`; needs a ledger that can be read
        (``engine``/``chain_id``) and a driver with ``payment_orphan``.
        """
        if self._orphans_checked:
            return
        self._orphans_checked = True
        if hasattr(self.driver, "payment_orphan"):
            self._spawn(self._end_orphans(), "callguard-payment-orphans")

    async def _end_orphans(self) -> None:
        from callguard.payments.orphans import end_orphans, readable_ledger

        # Off the loop: with the ledger writer in its own process, the first look opens a
        # reading engine here (SQLAlchemy's import alone holds the loop for a second or more).
        ledger = await asyncio.to_thread(readable_ledger, self.engine.ledger)
        if ledger is None:
            return
        await end_orphans(ledger.engine, ledger.chain_id, self.driver,  # type: ignore[attr-defined]
                          self.engine.ledger.append, now=self.clock, pbx_now=self.engine.pbx_now,
                          ours=lambda pid: pid in self.payments or pid in self.results)

    def link_restored(self, call_id: str) -> None:
        """The PBX link came back: keys may have been lost meanwhile; re-guard and ask again."""
        payment = self._find(call_id)
        if payment is None:
            return
        self.driver.payment_guard(call_id, payment.capture.payment_id, True)
        self._handle(payment, cap.Key(self.engine.pbx_now(), "*"))

    # -- internals --------------------------------------------------------------------------------

    def _find(self, call_or_payment: str) -> _Payment | None:
        payment_id = self._by_call.get(call_or_payment, call_or_payment)
        return self.payments.get(payment_id)

    def _observe(self, entry: LedgerEntry) -> None:
        """Every call's ledger entry passes here: the PBX confirmed a mute, a stop, or the call ended."""
        payment_id = self._by_call.get(entry.call_id)
        if payment_id is None:
            return
        payment = self.payments[payment_id]
        session = self.engine.session(entry.call_id)
        if session is None or session.finished:
            self._handle(payment, cap.CallEnded(self.engine.pbx_now()))
            return
        if entry.kind == "party-joined" and not payment.capture.finished:
            # Someone new is on the call mid-capture: keep the caller's keys from them too (a driver
            # that cannot ends the payment: ProtectionFailed).
            self.driver.payment_guard(payment.call_id, payment.capture.payment_id, True)
        self._check_protected(payment, session)

    def _check_protected(self, payment: _Payment, session: CallSession) -> None:
        if payment.protected_sent or not payment.guarded or not payment.durable or not session.audio_protected:
            return
        if payment.capture.phase is not cap.Phase.ARMING:
            return
        payment.protected_sent = True
        self._handle(payment, cap.Protected(self.engine.pbx_now()))

    def _handle(self, payment: _Payment, event: cap.PayEvent) -> None:
        self._run(payment, payment.capture.handle(event))

    def _run(self, payment: _Payment, commands: list[Command]) -> None:
        for command in commands:
            self._dispatch(payment, command)

    def _dispatch(self, payment: _Payment, command: Command) -> None:
        capture, call_id = payment.capture, payment.call_id
        if isinstance(command, cap.ShowProgress):
            self.hub.publish(command.progress)
        elif isinstance(command, cap.PlayToCaller):
            self.driver.payment_prompt(call_id, capture.payment_id, command.prompt)
        elif isinstance(command, cap.GuardAgent):
            self.driver.payment_guard(call_id, capture.payment_id, command.on)
        elif isinstance(command, LedgerEntry):
            self.engine.ledger.append(command, self.clock())
        elif isinstance(command, StartTimer):
            self._cancel_timer(payment, command.name)
            assert payment.timers is not None
            payment.timers[command.name] = self.engine.scheduler.call_later(
                command.seconds, self._fire, payment, command.name)
        elif isinstance(command, CancelTimer):
            self._cancel_timer(payment, command.name)
        elif isinstance(command, cap.Submit):
            self._spawn(self._submit(payment, command), f"callguard-payment-{capture.payment_id}")
        elif isinstance(command, cap.Finish):
            self._finish(payment, command.result)

    def _fire(self, payment: _Payment, name: str) -> None:
        if payment.timers is not None:
            payment.timers.pop(name, None)
        if not payment.capture.finished:
            self._handle(payment, cap.Timeout(self.engine.pbx_now(), name))

    def _cancel_timer(self, payment: _Payment, name: str) -> None:
        handle = payment.timers.pop(name, None) if payment.timers is not None else None
        if handle is not None:
            handle.cancel()

    async def _submit(self, payment: _Payment, submit: cap.Submit) -> None:
        card = submit.card
        capture = payment.capture
        try:
            assert self.connector is not None
            if submit.operation == "charge" and submit.amount is not None:
                answer = await self.connector.charge(card, submit.amount, submit.currency, submit.idempotency_key,
                                                     capture.payment_id)
            else:
                answer = await self.connector.tokenize(card, submit.idempotency_key, capture.payment_id)
        except Exception as exc:  # a connector bug must still end the payment (and unmute)
            log.error("payment %s: connector failed: %s", capture.payment_id, type(exc).__name__)
            answer = GatewayAnswer("unknown", detail=f"connector error: {type(exc).__name__}")
        finally:
            card.wipe()
        self._handle(payment, cap.ConnectorReplied(self.engine.pbx_now(), answer.status, answer.token,
                                                   answer.reference, answer.detail, answer.attempts))

    def _finish(self, payment: _Payment, result: cap.PaymentResult) -> None:
        capture = payment.capture
        for name in list(payment.timers or {}):
            self._cancel_timer(payment, name)
        self.payments.pop(capture.payment_id, None)
        self._by_call.pop(payment.call_id, None)
        self.results[capture.payment_id] = result
        while len(self.results) > 1024:
            self.results.pop(next(iter(self.results)))
        log.info("payment %s on call %s: %s %s", capture.payment_id, payment.call_id, result.outcome, result.reason)
        session = self.engine.session(payment.call_id)
        if session is not None and not session.finished:
            self.engine.feed(payment.call_id, ev.CaptureEnded(self.engine.pbx_now(), capture.payment_id,
                                                              result.as_dict()))
        else:
            # The call is gone (hang-up): its session wrote its last entries; the result still belongs
            # in the call's evidence.
            self.engine.ledger.append(LedgerEntry(payment.call_id, "payment-ended", self.engine.pbx_now(), {
                "source": ev.Source.ENGINE.value, "capture": True, "after_hangup": True, **result.as_dict()}),
                self.clock())


def status(desk: PaymentDesk, call_or_payment: str) -> dict[str, Any]:
    """What the API's ``payment status`` answers: the live view or the result."""
    views = desk.hub.latest(call_or_payment)
    result = desk.results.get(call_or_payment)
    return {"progress": views[-1].as_dict() if views else None, "result": result.as_dict() if result else None}


__all__ = ["Connector", "PaymentDesk", "PaymentDriver", "PaymentRefused", "parse_amount", "status"]


def open_desk(config: "PaymentsConfig", engine: Engine, driver: PaymentDriver, *,
              connector: Connector | None = None) -> PaymentDesk | None:
    """The listener's desk from ``[payments]`` (``None`` when no gateway is configured).

    ``connector`` overrides the configured one (the demo's embedded gateway).
    """
    from callguard.payments.connector import HttpsConnector
    from callguard.payments.settings import capture_settings, connector_settings

    if connector is None:
        if not config.url:
            return None
        connector = HttpsConnector(connector_settings(config))
    return PaymentDesk(engine, driver, connector, capture_settings(config))
