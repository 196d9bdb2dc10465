"""Card payments on Asterisk: the caller's keys from AMI, the agent guarded, prompts to the caller.

What this relies on, exactly (verified on Asterisk 22, fixtures in DESIGN.md, or read in its source):

* **Keys**: ``DTMFEnd`` with ``Direction: Received`` on the customer's
  channel (``Privilege: dtmf``: the AMI user needs the ``dtmf`` read class;
  ``callguard run asterisk --check`` says when it lacks it).  Only the
  recorded (customer) leg of the call feeds the capture; digits on any
  other leg - the agent's, the prompt player's - never do.
* **Keeping digits from the agent**: the agent is dialled through a Local
  channel (``Dial(Local/<agent>@callguard-agent/n)``, dialplan in
  ``dialplan/asterisk/extensions_callguard_payments.conf``).  Its ``;1``
  half sits in the customer's bridge, its ``;2`` half dials the agent's
  phone.  During a capture callguard sets, on the ``;2`` half:

  - ``Setvar FRAME_DROP(RX)=DTMF_BEGIN,DTMF_END``: DTMF frames the ``;2``
    half reads from its ``;1`` half (the customer's digits) are dropped
    before they reach the agent; an empty value turns it off.  RX is safe
    and toggles (asterisk22_framedrop_rx_toggle.ami) and, set downstream of
    the customer's channel, does not hide the customer's own DTMF events.
    ``FRAME_DROP(TX)`` is never used: it crashes Asterisk 22 on the first
    matching frame in a bridge (asterisk22_framedrop_tx_crash.ami);
  - ``MuteAudio Direction: in State: on`` (res_mutestream): the in-band
    tones, and the customer's voice meanwhile, do not reach the agent; the
    agent can still talk.  MuteAudio drops frames rather than writing
    silence, which is why it is applied only to this Local half and never
    to the recorded channel (the recording's timeline stays intact; the
    recording itself is muted with ``MixMonitorMute``, PBX-confirmed).

  Both answer ``Response: Success`` and are the guard's confirmation.  An
  agent leg that is not a Local channel cannot be guarded: the payment
  ends at once (fail safe) with a message saying so.
* **Prompts to the caller**: AMI cannot play into a bridge, so callguard
  originates a prompt player ``Local/pay-<id>@callguard-payment/n``: its
  ``;1`` half joins the customer's bridge with ``BridgeAdd`` (app_bridgeaddchan,
  Asterisk >= 14), its ``;2`` half waits in ``AGI(agi:async)`` where the
  prompts are played with ``STREAM FILE`` (queued in order); ``ASYNCAGI
  BREAK`` after the last one hangs it up.  The agent does not hear them
  (the guard mutes what comes from the customer's side).

Starting one from the PBX (``dialplan/asterisk/extensions_callguard_payments.conf``):
``UserEvent(CallGuard,Action: card-start)`` from the agent's ``*8`` (a staff
channel of the call) or from the IVR's ``Gosub(callguard-card,ivr,1)`` on the
recorded channel; ``card-cancel`` from the agent's ``*9``.  A caller can
forge AMI frames (DESIGN.md), so neither acts on what the event says: like a
resume, each acts only once ``Getvar`` on the named channel confirms the
variable the shipped Gosub wrote there (``CALLGUARD_HOTKEY`` /
``CALLGUARD_SIGNAL`` = ``card-start:<seq>``, newer than the last acted on,
and the staff mark; :func:`~callguard.adapters.asterisk.trust.check_signal`),
and the amount is read back from that channel too
(``CALLGUARD_PAY_AMOUNT`` / ``CALLGUARD_PAY_CURRENCY``; unset: tokenize).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from callguard.adapters.asterisk import agi
from callguard.adapters.asterisk.protocol import AmiError, ConnectionLost
from callguard.adapters.asterisk.trust import check_signal, variables_for_signal
from callguard.adapters.asterisk.wire import AmiMessage
from callguard.core import events as ev
from callguard.core.commands import PromptRef
from callguard.payments.desk import PaymentRefused

if TYPE_CHECKING:
    from callguard.adapters.asterisk.listener import AsteriskListener, _Call
    from callguard.payments.desk import PaymentDesk
    from callguard.payments.orphans import Orphan

log = logging.getLogger("callguard.asterisk")

PAYMENT_CONTEXT = "callguard-payment"
#: CallGuard UserEvent actions the card Gosubs send (the listener leaves them to this module)
CARD_ACTIONS = frozenset({"card-start", "card-cancel"})
#: on the channel that starts a payment: what to charge (unset: tokenize only)
AMOUNT_VARIABLE, CURRENCY_VARIABLE = "CALLGUARD_PAY_AMOUNT", "CALLGUARD_PAY_CURRENCY"
#: The channel-name mark of callguard's own payment prompt players (Local/pay-...@callguard-payment-...).
PLAYER_MARK = f"@{PAYMENT_CONTEXT}-"


def is_player(channel: str) -> bool:
    return channel.startswith("Local/pay-") and PLAYER_MARK in channel


def guard_half(agent_channel: str) -> str | None:
    """The ``;2`` half of the agent's Local channel, or ``None`` when the agent is not behind one."""
    if agent_channel.startswith("Local/") and agent_channel.endswith(";1"):
        return agent_channel[:-1] + "2"
    return None


@dataclass
class _Player:
    payment_id: str
    exten: str
    channel: str = ""  #: the ;2 half once it is in AsyncAGI
    queued: list[str] = field(default_factory=list)  #: AGI commands waiting for the channel
    done: bool = False


class AsteriskPayments:
    """The :class:`~callguard.payments.desk.PaymentDriver` for one :class:`AsteriskListener`."""

    def __init__(self, listener: "AsteriskListener"):
        self.listener = listener
        self.desk: "PaymentDesk | None" = None
        self._players: dict[str, _Player] = {}  #: by call id
        self._by_exten: dict[str, str] = {}  #: player exten -> call id
        self._guarded: dict[str, str] = {}  #: call id -> the Local ;2 half guarded
        self._unguard_later: set[str] = set()  #: calls whose guard could not be lifted (link down)
        self._inflight: set[asyncio.Future] = set()  #: guard actions and originates awaiting Asterisk
        self._bridge_of: dict[str, str] = {}  #: channel -> the bridge it is in (BridgeEnter/BridgeLeave)
        listener.payments = self
        listener.manager.register_event("DTMFEnd", listener._guard(self._on_dtmf_end))
        listener.manager.register_event("AsyncAGIStart", listener._guard(self._on_agi_start))
        listener.manager.register_event("BridgeEnter", listener._guard(self._on_bridge_enter))
        listener.manager.register_event("UserEvent", listener._guard(self._on_user_event))
        listener.manager.register_event("BridgeLeave", listener._guard(self._on_bridge_leave))

    # -- PaymentDriver -------------------------------------------------------------------------

    def payment_guard(self, call_id: str, payment_id: str, on: bool) -> None:
        call = self.listener.calls.get(call_id)
        if call is None:
            return
        half = self._guarded.get(call_id) if not on else self._agent_half(call)
        if not on and half is None and call_id in self._unguard_later:
            half = self._agent_half(call)
        if half is None:
            if on:
                self._confirm(call_id, on, False, "the agent's leg is not a Local channel, so its DTMF cannot be "
                              "dropped; dial agents through callguard-agent (README: Taking payments)")
            return
        if on:
            self._guarded[call_id] = half
        else:
            self._guarded.pop(call_id, None)
            self._end_player(call_id)
        futures = [
            self.listener._send({"Action": "Setvar", "Channel": half, "Variable": "FRAME_DROP(RX)",
                                 "Value": "DTMF_BEGIN,DTMF_END" if on else ""}),
            self.listener._send({"Action": "MuteAudio", "Channel": half, "Direction": "in",
                                 "State": "on" if on else "off"}),
        ]
        gathered = self._track(asyncio.gather(*futures, return_exceptions=True))
        gathered.add_done_callback(lambda f: self._guard_answered(call_id, on, f))

    def payment_prompt(self, call_id: str, payment_id: str, prompt: PromptRef) -> None:
        call = self.listener.calls.get(call_id)
        if call is None:
            return
        try:
            text = agi.stream_file(self.listener.prompt_file(prompt))
        except Exception as exc:
            self._report_prompt_failure(call_id, f"prompt not playable: {exc}")
            return
        player = self._players.get(call_id)
        if player is None or player.payment_id != payment_id or player.done:
            player = self._start_player(call.call_id, call.controlled, payment_id)
        self._queue(call_id, player, text)

    # -- the prompt player -----------------------------------------------------------------------

    def _start_player(self, call_id: str, target: str, payment_id: str) -> _Player:
        """Originate the player that joins ``target``'s bridge (the caller's channel)."""
        exten = f"pay-{payment_id[:16]}"
        player = _Player(payment_id, exten)
        self._players[call_id] = player
        self._by_exten[exten] = call_id
        future = self._track(self.listener._send({
            "Action": "Originate", "Channel": f"Local/{exten}@{PAYMENT_CONTEXT}/n", "Context": PAYMENT_CONTEXT,
            "Exten": "join", "Priority": "1", "Async": "true", "CallerID": '"callguard payment" <>',
            "Variable": f"CALLGUARD_PAY_TARGET={target}"}))

        def answered(f: asyncio.Future) -> None:
            exc = f.exception()
            if exc is not None or not f.result().ok:
                reason = str(exc) if exc else (f.result().message or "Originate refused")
                self._report_prompt_failure(call_id, f"payment prompt player not started: {reason}")
        future.add_done_callback(answered)
        return player

    def _queue(self, call_id: str, player: _Player, text: str) -> None:
        if not player.channel:
            player.queued.append(text)
            return
        self.listener._agi(player.channel, text).add_done_callback(lambda f: self._played(call_id, player, f))

    def _played(self, call_id: str, player: _Player, future: asyncio.Future) -> None:
        exc = future.exception()
        if isinstance(exc, ConnectionLost):
            return  # the link comes back: link_restored() asks for the field again
        if exc is None and (future.result().ok or future.result().hangup):
            return
        if not player.done:
            self._report_prompt_failure(call_id, str(exc) if exc else (future.result().error or "STREAM FILE failed"))

    def _end_player(self, call_id: str) -> None:
        """After the last prompt: ``ASYNCAGI BREAK`` (queued behind it) hangs the player up."""
        player = self._players.pop(call_id, None)
        if player is None:
            return
        self._by_exten.pop(player.exten, None)
        player.done = True
        if player.channel:
            self.listener._agi(player.channel, agi.BREAK).add_done_callback(lambda f: f.exception())
        else:
            player.queued.append(agi.BREAK)
            self._by_exten[player.exten] = call_id  # still wanted: to be hung up when it arrives
            self._players[f"ending:{call_id}"] = player

    def _on_agi_start(self, msg: AmiMessage) -> None:
        if msg.get("Context", "") != PAYMENT_CONTEXT:
            return
        exten, channel = msg.get("Exten", ""), msg.get("Channel", "")
        call_id = self._by_exten.get(exten)
        player = self._players.get(call_id or "") or self._players.get(f"ending:{call_id}")
        if call_id is None or player is None or not is_player(channel):
            # not one we started (or its payment is over): let it go to its Hangup()
            self.listener._agi(channel, agi.BREAK).add_done_callback(lambda f: f.exception())
            return
        player.channel = channel
        queued, player.queued = player.queued, []
        if player.done:
            self._players.pop(f"ending:{call_id}", None)
            self._by_exten.pop(exten, None)
        for text in queued:
            self._queue(call_id, player, text)

    # -- starting and cancelling from the PBX ------------------------------------------------------

    def _on_user_event(self, msg: AmiMessage) -> None:
        from callguard.adapters.asterisk.listener import USER_EVENT, _channel_of, _lines

        if self.desk is None or USER_EVENT not in _lines(msg.get("UserEvent", "")):
            return
        actions = _lines(msg.get("Action", ""))
        if len(actions) != 1 or actions[0] not in CARD_ACTIONS:
            return  # not ours, or a forged header line doubled it: nothing acts on an ambiguous event
        claimed = _channel_of(msg)
        calls = {c.call_id: c for c in (self.listener._by_linkedid.get(x)
                                       for x in _lines(msg.get("Linkedid", ""), lower=False)) if c is not None}
        for call in calls.values():
            self.listener._spawn(self._confirm_card(call, actions[0], claimed))

    async def _confirm_card(self, call: "_Call", action: str, claimed: str) -> None:
        """Act on a card signal only once Asterisk confirms what the shipped Gosub wrote on ``claimed``."""
        if not claimed:
            return
        variables = [*variables_for_signal(claimed, call.controlled), AMOUNT_VARIABLE, CURRENCY_VARIABLE]
        facts = await self.listener.prober.facts(claimed, variables)
        signal, why = check_signal(action, claimed, call.controlled, call.linkedid, facts,
                                   call.signal_seq.get(claimed, 0), self.listener.staff)
        if signal is None or facts is None or self.desk is None:
            self.listener.rejected += 1
            log.warning("call %s: %s claimed by %s not confirmed by Asterisk (%s): ignored", call.call_id, action,
                        claimed[:80], why)
            return
        call.signal_seq[claimed] = signal.seq
        staff = claimed != call.controlled
        if action == "card-cancel":
            self.desk.cancel(call.call_id, by=ev.Source.HOTKEY.value if staff else ev.Source.IVR.value)
            return
        try:
            self.desk.start(call.call_id, amount=facts.get(AMOUNT_VARIABLE) or None,
                            currency=facts.get(CURRENCY_VARIABLE), source=ev.Source.HOTKEY if staff else ev.Source.IVR,
                            staff_leg=claimed if staff else "")
        except PaymentRefused as exc:
            log.warning("call %s: card payment from %s not started: %s", call.call_id, claimed[:80], exc)

    # -- keys -------------------------------------------------------------------------------------

    def _on_dtmf_end(self, msg: AmiMessage) -> None:
        if self.desk is None or msg.get("Direction", "") != "Received":
            return
        name = msg.get("Channel", "")
        call = self.listener._by_channel.get(name)
        if call is None or name != call.controlled:
            return  # only the customer's own leg keys a card
        digit = msg.get("Digit", "")
        if len(digit) == 1:
            self.desk.caller_key(call.call_id, digit, msg.at)

    # -- helpers ----------------------------------------------------------------------------------

    # -- a capture an earlier listener process left unfinished (callguard.payments.orphans) -----------

    async def payment_orphan(self, orphan: "Orphan") -> bool:
        """Release the agent's Local half and tell the caller; False when the caller's channel is gone."""
        if not orphan.channel:
            return False
        answer = await self.listener.manager.send_action({"Action": "Getvar", "Channel": orphan.channel,
                                                          "Variable": "CHANNEL(state)"})
        if not answer.ok:
            return False  # "No such channel": the call ended while no listener was there
        half = guard_half(orphan.staff_leg)
        if half is not None:
            await asyncio.gather(
                self.listener._send({"Action": "Setvar", "Channel": half, "Variable": "FRAME_DROP(RX)", "Value": ""}),
                self.listener._send({"Action": "MuteAudio", "Channel": half, "Direction": "in", "State": "off"}),
                return_exceptions=True)
        engine = self.listener.engine
        if engine is not None:
            language = orphan.language or engine.policy.default_language
            text = agi.stream_file(self.listener.prompt_file(engine.prompts.resolve("pay-failed", language)))
            self._queue(orphan.call_id, self._start_player(orphan.call_id, orphan.channel, orphan.payment_id), text)
            self._end_player(orphan.call_id)
        return True

    def _track(self, future: asyncio.Future) -> asyncio.Future:
        self._inflight.add(future)
        future.add_done_callback(self._inflight.discard)
        return future

    async def drain(self, timeout: float) -> None:
        """Wait (at most ``timeout``) for the guard actions and originates Asterisk has not answered yet."""
        if self._inflight:
            await asyncio.wait(set(self._inflight), timeout=timeout)

    def _agent_half(self, call: "_Call") -> str | None:
        """The ``;2`` half of the Local channel that sits in the caller's own bridge.

        Decided by where the channels are, not by which one the listener
        called "agent": on a real Asterisk 22 the agent's side of a
        ``callguard-agent`` Local channel forms its own bridge (``;2`` and the
        agent's phone) before ``;1`` joins the caller's, and all of them carry
        the call's Linkedid, so the first of them to enter a bridge - the
        ``;2`` half or the phone - is not the channel to guard (seen).
        """
        candidates = [c.name for c in call.channels.values()
                      if c.name != call.controlled and not is_player(c.name) and guard_half(c.name) is not None
                      and call.bridge is not None and self._bridge_of.get(c.name) == call.bridge]
        if candidates:
            return guard_half(candidates[0])
        agents = [c.name for c in call.channels.values() if c.role == "agent"]
        return guard_half(agents[0]) if agents else None

    def _on_bridge_enter(self, msg: AmiMessage) -> None:
        self._bridge_of[msg.get("Channel", "")] = msg.get("BridgeUniqueid", "")

    def _on_bridge_leave(self, msg: AmiMessage) -> None:
        self._bridge_of.pop(msg.get("Channel", ""), None)

    def _guard_answered(self, call_id: str, on: bool, future: asyncio.Future) -> None:
        problems = []
        if not on and any(isinstance(r, (ConnectionLost, AmiError)) for r in future.result()):
            self._unguard_later.add(call_id)  # still guarded (the safe side): lifted after the reconnect
        for result in future.result():
            if isinstance(result, BaseException):
                problems.append(str(result) or type(result).__name__)
            elif not result.ok:
                problems.append(result.message or "refused")
        self._confirm(call_id, on, not problems, "; ".join(problems))

    def _confirm(self, call_id: str, on: bool, ok: bool, reason: str) -> None:
        if self.desk is not None:
            asyncio.get_running_loop().call_soon(self.desk.guard_confirmed, call_id, on, ok, reason)

    def _report_prompt_failure(self, call_id: str, reason: str) -> None:
        log.error("call %s: %s", call_id, reason)
        if self.desk is not None:
            asyncio.get_running_loop().call_soon(self.desk.prompt_failed, call_id, reason)

    def link_restored(self) -> None:
        """After a reconnect: keys pressed meanwhile were lost; each capture re-guards and asks again."""
        if self.desk is None:
            return
        self.desk.check_orphans()  # the first login of this process: what an earlier one left unfinished
        for call_id in list(self.listener.calls):
            if self.desk.active(call_id) is not None:
                self.desk.link_restored(call_id)
            elif call_id in self._unguard_later:
                self.payment_guard(call_id, "", False)
        self._unguard_later.clear()


__all__ = ["AsteriskPayments", "PAYMENT_CONTEXT", "guard_half", "is_player"]
