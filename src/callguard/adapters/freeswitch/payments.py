"""Card payments on FreeSWITCH: the caller's keys from ESL, the other legs guarded, prompts to the caller.

What this relies on, exactly (read in FreeSWITCH 1.10.12's source; README "Taking payments"):

* **Keys**: ``DTMF`` events on the listener's inbound connection.  FreeSWITCH
  fires one per key when the channel's DTMF queue is read
  (``switch_channel_dequeue_dtmf``), on the leg the key was pressed on, with
  its ``Unique-ID`` but no ``variable_*`` headers: keys are mapped by
  Unique-ID, and only the recorded (customer) leg of a call feeds its
  capture.  No event at all is fired while the leg has ``sensitive_dtmf=true``
  (the same check), so a capture refuses to start during a spoken payment
  segment, which sets it.
* **Keeping digits from everyone else**: every other leg of the call runs
  ``block_dtmf`` (mod_dptools -> ``switch_ivr_block_dtmf_session``: send and
  receive DTMF hooks on *that* leg, so the bridge's
  ``switch_core_session_send_dtmf`` to it stops before the phone while the
  customer's own DTMF events still fire on the customer's leg).  It is sent
  as ``sendmsg <leg>`` / ``execute block_dtmf`` - a private event that the
  bridge loop executes, the same path as ``uuid_broadcast <leg> app::``;
  its ``CHANNEL_EXECUTE_COMPLETE`` is the confirmation.  ``uuid_audio <leg>
  start write mute 1`` (mod_commands -> ``switch_ivr_session_audio``: a
  ``WRITE_REPLACE`` media bug that zeroes every frame written *to* that leg)
  keeps the in-band tones, and the caller's voice meanwhile, from its phone;
  the leg can still talk.  It answers ``+OK`` once the bug is on.  Undone
  with ``unblock_dtmf`` and ``uuid_audio <leg> stop``.  The recording is
  masked by the engine (``uuid_record ... mask``, PBX-confirmed), never by
  these.
* **Prompts**: ``sendmsg <customer>`` / ``execute playback <file>`` (what
  ``uuid_broadcast <customer> <file> aleg`` queues): played on the caller's
  leg only, one after another in the order sent.
* **digits_dialed**: FreeSWITCH keeps every key read on a channel (unless
  sensitive) and writes them into the ``digits_dialed`` variable at hangup -
  the CDR and the hang-up event would hold the card number.  When a capture
  starts callguard sets ``digits_dialed_filter`` on the caller's leg, which
  writes every key of that call as ``X``.
* FreeSWITCH's own log prints ``RECV DTMF <digit>`` at INFO for every key
  that is not sensitive: a box that takes card payments keeps its log level
  at NOTICE (README).

Starting one from the PBX (``dialplan/freeswitch/callguard_features.xml``):
``CUSTOM callguard::card_start`` from a staff leg (the agent's ``*8``) or
from the recorded caller's own leg (an IVR step), with the amount in the
firing leg's ``callguard_pay_amount`` / ``callguard_pay_currency`` (none: the
card is tokenized).  A start makes the recording hear less, so it acts at
once.  ``callguard::card_cancel`` (the agent's ``*9``) ends the capture and
unmutes: it acts only from a staff leg of that call, and only once
FreeSWITCH confirms, out of band, ``callguard_card=cancel`` on that leg and
its staff mark - what only that leg's feature extension can have written.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from callguard.core import events as ev
from callguard.core.commands import PromptRef
from callguard.payments.desk import PaymentRefused

from .commands import WireError
from .translate import event_time, marked, safe_uuid
from .wire import ESLEvent, Frame, api, sendmsg_execute

if TYPE_CHECKING:
    from callguard.payments.desk import PaymentDesk
    from callguard.payments.orphans import Orphan

    from .listener import CallState, FreeSwitchListener, _Api

log = logging.getLogger("callguard.freeswitch")

#: Events the inbound connection needs for card capture.
PAYMENT_EVENTS = ("DTMF", "CHANNEL_EXECUTE_COMPLETE")
#: CUSTOM subclasses the shipped feature extensions fire to start / cancel a capture.
CARD_START, CARD_CANCEL = "callguard::card_start", "callguard::card_cancel"
CARD_SIGNALS = (CARD_START, CARD_CANCEL)
#: on the leg that fires card_start: what to charge (unset: tokenize only)
AMOUNT_VARIABLE, CURRENCY_VARIABLE = "callguard_pay_amount", "callguard_pay_currency"
#: what callguard_card_cancel writes on the pressing leg, read back before a cancel acts
CARD_VARIABLE = "callguard_card"
#: ``digits_dialed_filter`` that masks every key of the call (the first match's groups become X).
MASK_ALL_DIGITS = "(.+)"


@dataclass
class _Guard:
    """The legs of one call kept from the caller's keys, and the confirmations still due."""

    legs: set[str] = field(default_factory=set)
    #: leg -> what FreeSWITCH has not confirmed yet ("dtmf": block_dtmf ran, "audio": uuid_audio +OK)
    due: dict[str, set[str]] = field(default_factory=dict)
    failed: bool = False


class FreeSwitchPayments:
    """The :class:`~callguard.payments.desk.PaymentDriver` for one :class:`FreeSwitchListener`."""

    def __init__(self, listener: "FreeSwitchListener"):
        self.listener = listener
        self.desk: "PaymentDesk | None" = None
        self._guards: dict[str, _Guard] = {}  #: by call id
        self._prompts: dict[str, list[str]] = {}  #: call id -> prompt files sent, not yet finished
        listener.payments = self

    @property
    def capturing(self) -> bool:
        """A capture runs somewhere (the inbound filter parses DTMF events only then)."""
        return bool(self.desk is not None and self.desk.payments)

    def wanted(self, body: bytes) -> bool:
        """An event without ``callguard`` in it that a capture needs (the inbound filter asks)."""
        return self.capturing and (b"Event-Name: DTMF\n" in body or b"Application: block_dtmf\n" in body)

    # -- PaymentDriver ---------------------------------------------------------------------------

    def payment_guard(self, call_id: str, payment_id: str, on: bool) -> None:
        state = self.listener.calls.get(call_id)
        if state is None:
            return
        if not on:
            self._unguard(state)
            return
        if state.sensitive:
            self._confirm(call_id, False, "a spoken payment segment is active: sensitive_dtmf hides the caller's "
                          "keys from callguard; end that segment first")
            return
        guard = self._guards.get(call_id)
        if guard is None:
            guard = self._guards[call_id] = _Guard()
            # Keys of this call never reach a CDR or the hang-up event in clear.
            self._send(state, "setvar", api(f"uuid_setvar {state.channel} digits_dialed_filter {MASK_ALL_DIGITS}"),
                       lambda item, frame, why: None)
        guard.failed = False
        # Every time (a re-guard after a reconnect or a join): block_dtmf and the mute are idempotent.
        legs = self._other_legs(state)
        guard.legs |= legs
        guard.due = {leg: {"dtmf", "audio"} for leg in legs}
        if not legs:
            self._confirm(call_id, True, "")  # nobody else on the call (yet): nobody to keep it from
            return
        for leg in legs:
            self._send(state, "guard", sendmsg_execute("block_dtmf", uuid=leg), self._on_block_sent)
            self._send(state, "guard", api(f"uuid_audio {leg} start write mute 1"), self._on_mute_reply(leg))

    def payment_prompt(self, call_id: str, payment_id: str, prompt: PromptRef) -> None:
        state = self.listener.calls.get(call_id)
        wire = self.listener.wire
        if state is None or wire is None:
            return
        try:
            path = wire.prompt_path(prompt, state.rate)
        except WireError as exc:
            self._prompt_failed(call_id, f"prompt not playable: {exc}")
            return
        self._prompts.setdefault(call_id, []).append(path)
        self._send(state, "prompt", sendmsg_execute("playback", path, uuid=state.channel), self._on_prompt_sent)

    # -- what FreeSWITCH tells us ------------------------------------------------------------------

    def on_event(self, name: str, event: ESLEvent, received_at: float) -> bool:
        """An event of the inbound connection; True when it was one of ours (nothing else wants it)."""
        if name == "CUSTOM":
            if event.subclass not in CARD_SIGNALS:
                return False
            self._on_card_signal(event, received_at)
            return True
        if name not in PAYMENT_EVENTS:
            return False
        uuid = safe_uuid(event.get("Unique-ID"))
        if uuid is not None and self.desk is not None:
            self._on_media_event(name, uuid, event, received_at)
        return True

    def _on_media_event(self, name: str, uuid: str, event: ESLEvent, received_at: float) -> None:
        assert self.desk is not None
        if name == "DTMF":
            state = self.listener.calls.get(uuid)  # a call's id is its recorded leg's UUID
            digit = event.get("DTMF-Digit") or ""
            if state is not None and state.channel == uuid and len(digit) == 1:
                self.desk.caller_key(state.call_id, digit, event_time(event, received_at))
            return
        application = event.get("Application") or ""
        if application == "block_dtmf":
            for call_id, guard in list(self._guards.items()):
                if uuid in guard.due:
                    self._confirmed(call_id, uuid, "dtmf")
        elif application == "playback":
            self._played(uuid, event.get("Application-Data") or "", event.get("Application-Response") or "")

    # -- starting and cancelling from the PBX --------------------------------------------------------

    def _on_card_signal(self, event: ESLEvent, received_at: float) -> None:
        origin = safe_uuid(event.get("Unique-ID"))
        legs = self.listener.legs.call_of_leg(origin) if origin else None
        if legs is None or self.desk is None or origin is None:
            return
        staff, recorded = origin in legs.staff, origin == legs.channel
        if not (staff or recorded):
            log.warning("call %s: %s from leg %s refused: neither a staff leg nor the recorded caller's",
                        legs.call_id, event.subclass, origin)
            return
        if event.subclass == CARD_START:
            self._start_from_pbx(legs.call_id, origin, staff, event)
        elif staff:
            self.listener._check(self._cancel_confirmed(legs.call_id, origin))
        else:
            log.warning("call %s: card_cancel from the recorded caller's own leg refused", legs.call_id)

    def _start_from_pbx(self, call_id: str, origin: str, staff: bool, event: ESLEvent) -> None:
        assert self.desk is not None
        amount = event.get(f"variable_{AMOUNT_VARIABLE}") or None
        currency = event.get(f"variable_{CURRENCY_VARIABLE}") or ""
        source = ev.Source.HOTKEY if staff else ev.Source.IVR
        try:
            self.desk.start(call_id, amount=amount, currency=currency, source=source,
                            staff_leg=origin if staff else "")
        except PaymentRefused as exc:
            log.warning("call %s: card payment from the %s not started: %s", call_id, source.value, exc)

    async def _cancel_confirmed(self, call_id: str, origin: str) -> None:
        """Cancel only once FreeSWITCH confirms what the staff leg's cancel extension wrote there."""
        card, mark = await asyncio.gather(self.listener._ask(origin, CARD_VARIABLE),
                                          self.listener._ask(origin, self.listener.staff_variable))
        if card != "cancel" or not marked(mark):
            log.warning("call %s: card_cancel refused: not confirmed by FreeSWITCH (%s=%r, %s=%r on %s)", call_id,
                        CARD_VARIABLE, card, self.listener.staff_variable, mark, origin)
            return
        proto, wire = self.listener.inbound, self.listener.wire
        if proto is not None and wire is not None:  # used up: a replayed event finds nothing to confirm it
            proto.send(api(f"uuid_setvar {origin} {CARD_VARIABLE}"), "setvar")
        if self.desk is not None:
            self.desk.cancel(call_id, by=ev.Source.HOTKEY.value)

    def link_restored(self) -> None:
        """After a reconnect: keys pressed meanwhile were lost; each capture re-guards and asks again."""
        if self.desk is None:
            return
        self.desk.check_orphans()  # the first login of this process: what an earlier one left unfinished
        for call_id in list(self.listener.calls):
            if self.desk.active(call_id) is not None:
                self.desk.link_restored(call_id)

    # -- a capture an earlier listener process left unfinished (callguard.payments.orphans) -----------

    async def payment_orphan(self, orphan: "Orphan") -> bool:
        """Release the legs that may still be guarded and tell the caller; False when the caller's leg is gone."""
        channel = safe_uuid(orphan.channel)
        if channel is None or await self._ask_api(f"uuid_exists {channel}") != "true":
            return False
        partner = safe_uuid(await self._ask_api(f"uuid_getvar {channel} bridge_to"))
        for leg in sorted({leg for leg in (safe_uuid(orphan.staff_leg), partner) if leg}):
            await self._request(sendmsg_execute("unblock_dtmf", uuid=leg))
            await self._request(api(f"uuid_audio {leg} stop"))
        engine, wire = self.listener.engine, self.listener.wire
        if engine is not None and wire is not None:
            ref = engine.prompts.resolve("pay-failed", orphan.language or engine.policy.default_language)
            await self._request(sendmsg_execute("playback", wire.prompt_path(ref, 8000), uuid=channel))
        return True

    async def _request(self, data: bytes) -> Frame:
        proto = self.listener.inbound
        if proto is None or not proto.connected:
            raise ConnectionError("not connected to FreeSWITCH")
        return await asyncio.wait_for(proto.send(data, "payment"), max(1.0, self.listener.fs.action_timeout_ms / 1000))

    async def _ask_api(self, command: str) -> str:
        return (await self._request(api(command))).text.strip()

    async def drain(self, timeout: float) -> None:
        """Wait (at most ``timeout``) until the guard and prompt commands queued for FreeSWITCH are answered."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline and any(i.kind in ("guard", "prompt") for s in self.listener.calls.values()
                                               for i in (*s.inflight, *s.pending) if s.inflight or s.pending):
            await asyncio.sleep(0.01)

    def call_ended(self, call_id: str) -> None:
        self._guards.pop(call_id, None)
        self._prompts.pop(call_id, None)

    # -- internals --------------------------------------------------------------------------------

    def _other_legs(self, state: "CallState") -> set[str]:
        """Every party of the call but the caller: the agent, and whoever else is in the bridge."""
        engine = self.listener.engine
        session = engine.session(state.call_id) if engine is not None else None
        if session is None:
            return set()
        return {p.channel for p in session.parties if p.channel != state.channel and safe_uuid(p.channel)}

    def _unguard(self, state: "CallState") -> None:
        guard = self._guards.pop(state.call_id, None)
        self._prompts.pop(state.call_id, None)
        if guard is None:
            return
        for leg in sorted(guard.legs):
            self._send(state, "guard", sendmsg_execute("unblock_dtmf", uuid=leg), self._on_unguard_reply)
            self._send(state, "guard", api(f"uuid_audio {leg} stop"), self._on_unguard_reply)

    def _send(self, state: "CallState", kind: str, data: bytes, on_reply) -> None:
        self.listener._api(state, kind, data, on_reply)

    def _on_block_sent(self, item: "_Api", frame: Frame | None, why: str) -> None:
        if frame is not None and not frame.ok():
            self._fail(item.call_id, f"block_dtmf not queued: {frame.reply_text.strip() or frame.text.strip()}")

    def _on_mute_reply(self, leg: str):
        def on_reply(item: "_Api", frame: Frame | None, why: str) -> None:
            if frame is None:
                return
            if frame.ok():
                self._confirmed(item.call_id, leg, "audio")
            else:
                self._fail(item.call_id, f"uuid_audio {leg}: {frame.text.strip()[:200]}")
        return on_reply

    def _on_unguard_reply(self, item: "_Api", frame: Frame | None, why: str) -> None:
        if frame is not None and not frame.ok():
            log.info("call %s: lifting the payment guard: %s", item.call_id,
                     (frame.reply_text or frame.text).strip()[:200])

    def _confirmed(self, call_id: str, leg: str, what: str) -> None:
        guard = self._guards.get(call_id)
        if guard is None or guard.failed or leg not in guard.due:
            return
        guard.due[leg].discard(what)
        if not guard.due[leg]:
            del guard.due[leg]
        if not guard.due:
            self._confirm(call_id, True, "")

    def _fail(self, call_id: str, reason: str) -> None:
        guard = self._guards.get(call_id)
        if guard is None or guard.failed:
            return
        guard.failed = True
        self._confirm(call_id, False, reason)

    def _confirm(self, call_id: str, ok: bool, reason: str) -> None:
        if self.desk is not None and self.listener.loop is not None:
            self.listener.loop.call_soon(self.desk.guard_confirmed, call_id, True, ok, reason)

    def _on_prompt_sent(self, item: "_Api", frame: Frame | None, why: str) -> None:
        if frame is not None and not frame.ok():
            self._prompt_failed(item.call_id, f"playback not queued: {(frame.reply_text or frame.text).strip()}")

    def _played(self, channel: str, path: str, response: str) -> None:
        sent = self._prompts.get(channel)  # the caller's leg: its UUID is the call id
        if not sent or path not in sent:
            return
        sent.remove(path)
        if response == "FILE NOT FOUND":  # mod_dptools playback_function; a hang-up ends the capture anyway
            self._prompt_failed(channel, f"{path}: file not found on the FreeSWITCH host")

    def _prompt_failed(self, call_id: str, reason: str) -> None:
        log.error("call %s: %s", call_id, reason)
        if self.desk is not None and self.listener.loop is not None:
            self.listener.loop.call_soon(self.desk.prompt_failed, call_id, reason)


__all__ = ["FreeSwitchPayments", "MASK_ALL_DIGITS", "PAYMENT_EVENTS"]
