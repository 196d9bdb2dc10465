"""``callguard run freeswitch``: the engine's driver for FreeSWITCH.

Threading model (two threads, one owner per object):

* **engine thread** - the asyncio event loop.  Owns the :class:`Engine`
  (every call's session), this listener's per-call state, the inbound ESL
  connection (:mod:`.inbound`), timers and the heartbeat.  ``execute``
  (the :class:`~callguard.runtime.PbxDriver` method) runs here.
* **gevent thread** - :class:`~.outbound.OutboundThread`: greenswitch's
  outbound server and one greenlet per parked channel, in a gevent hub of
  its own.  The process is never monkey-patched.

The only shared structure is ``self.parked`` (channel UUID -> the greenlet
object serving it): the gevent thread adds and removes entries, the engine
thread only reads them (single dict operations, atomic under the GIL).
Everything else crosses by message: gevent -> engine with
``loop.call_soon_threadsafe`` (:meth:`_post`), engine -> gevent with
:meth:`OutboundThread.submit` (a deque plus a gevent ``async`` watcher).
A command that reaches a greenlet which already let its channel go is
bounced back to the engine thread and reported as failed.

Which side carries what:

* per-call IVR work on the parked channel (outbound socket, in order, one
  application at a time): ``play_and_get_digits`` (notice + consent),
  ``playback``, ``record_session``, ``set callguard_decision=...``,
  ``transfer`` (decline destination), ``exit``;
* everything else (inbound connection, immediately, never queued behind an
  application): ``uuid_record <uuid> mask|unmask|stop``, ``uuid_setvar
  <uuid> sensitive_dtmf``, the heartbeat ``global_setvar``, and after a
  reconnect ``uuid_exists`` / ``uuid_getvar`` to resynchronise.

Pause path: a hotkey's ``CUSTOM callguard::pause`` event is parsed in the
inbound connection's ``data_received``; the engine runs in the same call
and its ``MuteRecording`` is written as ``api uuid_record ... mask`` before
that callback returns.  FreeSWITCH's ``+OK`` reply is the confirmation fed
back as :class:`RecordingMuted`.

Fail safe: commands for the inbound connection that cannot be sent (it is
down) wait and are sent first after the reconnect, collapsed so a pending
stop wins; commands that were on the wire when it dropped are sent again
(mask/unmask/stop are idempotent).  The engine's own timers stop a
recording whose mute is not confirmed in time.  After every reconnect the
listener checks each live call: a channel that is gone is hung up, a pause
or payment segment the dialplan flagged on the channel while we were away
(``callguard_paused`` / ``callguard_payment``) is applied, and recordings
that should be silent are masked again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from callguard.adapters.interpreter import freeze_startup_heap, tune_interpreter
from callguard.adapters.signals import stop_on_signals
from callguard.config import Config
from callguard.core import commands as cmd
from callguard.core import events as ev
from callguard.core.prompts import PromptResolver
from callguard.runtime import Engine, LedgerSink
from callguard.web.probe import ListenerProbe
from callguard.web.server import listener_service

from .adoption import MASKED_VARIABLE, AdoptionError, LiveCall, channel_rows, find_live_calls
from .inbound import InboundError, InboundProtocol, InboundRefused, open_inbound
from .mapping import (HOTKEY_VARIABLE, PAUSE_FLAG, PAYMENT_FLAG, LegMap, Legs, MappingSettings, Verdict,
                      on_join_path)
from .outbound import OutboundCall, OutboundThread, _App, _Exit
from .wire import ESLEvent, Frame
from .translate import INBOUND_CUSTOM, INBOUND_EVENTS, Membership, Offer, marked, translate_inbound
from .commands import PromptPath, Wire, check_destination
from .payments import CARD_SIGNALS, PAYMENT_EVENTS, FreeSwitchPayments

if TYPE_CHECKING:
    from callguard.ha.service import Term
    from callguard.payments.desk import Connector, PaymentDesk
    from callguard.vault.autoingest import AutoIngest

log = logging.getLogger("callguard.freeswitch")

_UNSET = ("", "_undef_", "false", "-ERR")


@dataclass
class _Api:
    """An ``api`` command for the inbound connection and what to do with its reply."""

    call_id: str
    kind: str  #: "mask" | "unmask" | "stop" | "start" | "setvar"
    data: bytes
    on_reply: Callable[[Frame | None, str], None]


@dataclass
class CallState:
    """What the listener knows about one call beyond the engine's session."""

    call_id: str
    channel: str
    rate: int = 8000
    file_name: str = ""
    sensitive: bool = False
    pending: list[_Api] = field(default_factory=list)  #: waiting for the inbound connection
    inflight: list[_Api] = field(default_factory=list)  #: sent, reply not yet in
    #: a joiner's notice, held until the mask asked for with it is answered
    after_mask: list[Callable[[], None]] = field(default_factory=list)

    def masking(self) -> bool:
        return any(item.kind == "mask" for item in (*self.inflight, *self.pending))

    def release_after_mask(self) -> None:
        held, self.after_mask = self.after_mask, []
        for send in held:
            send()


class FreeSwitchListener:
    """Both ESL sides, the engine and the glue; also the engine's PbxDriver."""

    def __init__(self, config: Config, ledger: LedgerSink, *, prompts: PromptResolver | None = None,
                 prompt_path: PromptPath | None = None, clock: Callable[[], float] = time.time,
                 connector: "Connector | None" = None, term: "Term | None" = None):
        fs = config.freeswitch
        self.config = config
        self.fs = fs
        self.ledger = ledger
        self.clock = clock
        if config.consent.decline_destination:
            check_destination(config.consent.decline_destination)
        self._prompts = prompts
        self._prompt_path = prompt_path
        self.wire: Wire | None = None
        self.engine: Engine | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.outbound: OutboundThread | None = None
        self.inbound: InboundProtocol | None = None
        self.parked: dict[str, OutboundCall] = {}
        self.calls: dict[str, CallState] = {}
        #: who is who (which call a leg belongs to, staff marks): see mapping.py
        self.legs = LegMap(MappingSettings.from_config(fs))
        #: a joining leg's socket session -> the call it joins (conference entrants carry no callguard_call)
        self._leg_call: dict[str, str] = {}
        #: arriving legs waiting for their socket session (set when it connects or the leg goes)
        self._arrivals: dict[str, asyncio.Event] = {}
        #: identification and confirmation round trips in progress (busy() counts them)
        self._checks: set[asyncio.Task[None]] = set()
        self._rates: dict[str, int] = {}  #: sample rate of joiner legs (prompt files per rate)
        self.outbound_port: int | None = None
        self.connected = asyncio.Event()
        self.stats: dict[str, int] = {"inbound_connects": 0, "inbound_drops": 0, "ignored_events": 0,
                                      "resent": 0, "signals_refused": 0, "heartbeats": 0}
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []
        self.last_error: str | None = None
        #: set when FreeSWITCH refused the first login (password, ACL): retrying will not help
        self.refused: asyncio.Future[str] | None = None
        #: encrypts recordings into the vault as calls end (None: not ingesting; logged at start)
        self.ingest: "AutoIngest | None" = None
        #: card payments ([payments] url, or ``connector``: the demo's gateway); see payments.py
        self._connector = connector
        self.payments: FreeSwitchPayments | None = None
        self.desk: "PaymentDesk | None" = None
        #: high availability: the lease term this listener acts in (None: HA off, always acts)
        self.term = term
        self._may_act = term.may_act if term is not None else None
        #: set once the calls an earlier process left on FreeSWITCH were adopted and the lost ones closed
        self.adoption = asyncio.Event()
        self.adopted: list[str] = []  #: call ids adopted at start-up
        self.lost: list[str] = []  #: call ids closed as listener-lost at start-up
        self._abandoned = False
        self._started_at = clock()

    # -- life cycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Build the engine, listen for the dialplan's sockets, connect inbound."""
        from callguard.wiring import build_engine, build_ingest, build_prompts

        self.loop = asyncio.get_running_loop()
        self._started_at = self.clock()  #: calls first seen before this are an earlier process's
        self.refused = self.loop.create_future()
        prompts = self._prompts if self._prompts is not None else build_prompts(self.config)
        prompt_path = self._prompt_path or _catalog_paths(prompts)
        self.wire = Wire(self.fs.recording_dir, prompt_path)
        # The same directory record_session / uuid_record write to (Wire.recording_path).
        self.ingest = build_ingest(self.config, self.ledger, self.wire.recording_dir,
                                      "[freeswitch] recording_dir")
        self.engine = build_engine(self.config, driver=self, ledger=self.ingest or self.ledger,
                                   scheduler=self.loop, prompts=prompts)
        self.engine.clock = self.clock
        from callguard.payments.desk import open_desk

        self.payments = FreeSwitchPayments(self)
        self.desk = self.payments.desk = open_desk(self.config.payments, self.engine, self.payments,
                                                   connector=self._connector)
        # Not while the first caller waits in silence on the socket.
        self.engine.policy.warm_up()
        # Everything loaded so far (numbering metadata, the catalogue) lives as long as the
        # process: keep it out of the cyclic GC's full collections (see adapters/interpreter.py).
        freeze_startup_heap()
        self.outbound = OutboundThread(self.fs.listen_host, self.fs.listen_port, self,
                                       max_calls=self.fs.max_calls,
                                       action_timeout_s=self.fs.action_timeout_ms / 1000.0, may_act=self._may_act)
        self.outbound.start()
        self.outbound_port = await asyncio.to_thread(self.outbound.wait_ready)
        self._tasks = [asyncio.create_task(self._inbound_loop(), name="callguard-inbound"),
                       asyncio.create_task(self._heartbeat_loop(), name="callguard-heartbeat")]
        if self.term is not None:
            await self._acting_started()

    async def _acting_started(self, timeout_s: float = 5.0) -> None:
        """Under a lease term, :meth:`start` returns once the live calls are adopted (or raises, having let go)."""
        try:
            await asyncio.wait_for(self.adoption.wait(), timeout_s)
        except asyncio.TimeoutError:
            await self.abandon()
            raise RuntimeError(f"could not adopt the live calls within {timeout_s:.0f} s "
                               f"({self.last_error or 'FreeSWITCH did not answer'})") from None

    async def abandon(self) -> None:
        """Stop acting at once: another node is about to adopt these calls (high availability).

        Nothing is sent to FreeSWITCH: no recording is stopped, no mask
        lifted, no parked channel released with a decision.  The event
        socket is closed, the dialplan's port too (its ``socket`` to this
        node now fails at once and goes to the next listener or the
        fail-closed path), and parked sessions are dropped (an undecided
        caller hears the fallback notice).  Engine timers are disarmed so
        nothing fires later.
        """
        self._stopping = self._abandoned = True
        if self.inbound is not None:
            self.inbound.close()
        for task in (*self._tasks, *self._checks):
            task.cancel()
        for task in (*self._tasks, *self._checks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.outbound is not None:
            await asyncio.to_thread(self.outbound.abandon, 1.0)
        if self.engine is not None:
            self.engine.close()
        if self.ingest is not None:
            ingest, self.ingest = self.ingest, None
            self._tasks.append(asyncio.ensure_future(ingest.aclose(5.0)))  # finished recordings only
        log.warning("stopped acting on FreeSWITCH (another node takes over): %d call(s) left as they are",
                    len(self.calls))

    async def stop(self) -> None:
        """Stop: end unsupervised recordings, release parked channels, finish ingests.

        A recording nobody supervises cannot be masked for a payment, so a
        graceful stop ends every recording still running (fail safe), as the
        Asterisk listener does.
        """
        if self._abandoned:
            return
        self._stopping = True
        if self.desk is not None:
            await self.desk.aclose()  # a charge in flight is never abandoned half-way
        await self._stop_unsupervised_recordings()  # while the event socket is still up
        if self.inbound is not None:
            self.inbound.close()  # nothing after the stops' confirmations: the calls are no longer ours
        for task in (*self._tasks, *self._checks):
            task.cancel()
        for task in (*self._tasks, *self._checks):
            try:
                await task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - shutting down
                pass
        if self.outbound is not None:
            # Parked calls go back to their dialplan undecided: with nobody left to
            # mask a recording, the fail-closed path (notice, no recording) is the safe one.
            await asyncio.to_thread(self.outbound.stop, 0.3, lambda: list(self.parked.values()))
        if self.ingest is not None:
            await self.ingest.aclose()  # the ingests of calls that ended finish first
            self.ingest = None
        if self.engine is not None:
            self.engine.close()  # no timer may fire into a closed ledger

    async def _stop_unsupervised_recordings(self, timeout: float = 0.5) -> None:
        """Every running recording stopped through the engine (one ledger entry each), replies awaited."""
        proto, engine = self.inbound, self.engine
        if proto is None or not proto.connected or engine is None:
            return
        stopping = [call_id for call_id, session in list(engine.sessions.items()) if session.recording]
        for call_id in stopping:
            engine.feed(call_id, ev.ListenerStopping(engine.pbx_now()))
        if not stopping:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline and any(s.inflight or s.pending for s in self.calls.values()):
            await asyncio.sleep(0.01)
        log.info("listener stopping: %d unsupervised recording(s) stopped", len(stopping))

    async def __aenter__(self) -> "FreeSwitchListener":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _post(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the engine thread (callable from any thread)."""
        assert self.loop is not None
        try:
            self.loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # loop closed during shutdown
            pass

    # -- inbound connection -----------------------------------------------------------------

    async def _inbound_loop(self) -> None:
        delay = self.fs.reconnect_min_s
        while not self._stopping:
            try:
                proto = await open_inbound(self.fs.host, self.fs.port, self.fs.password, self._on_inbound_event,
                                           events=[*INBOUND_EVENTS, *PAYMENT_EVENTS],
                                           custom=[*INBOUND_CUSTOM, *CARD_SIGNALS],
                                           timeout=max(1.0, self.fs.action_timeout_ms / 1000.0), clock=self.clock,
                                           wanted=self._wanted, may_act=self._may_act)
            except InboundError as exc:
                if isinstance(exc, InboundRefused) and not self.stats["inbound_connects"]:
                    assert self.refused is not None
                    if not self.refused.done():
                        self.refused.set_result(str(exc))
                if str(exc) != self.last_error:
                    log.error("%s (retrying every %.1f-%.0f s)", exc, self.fs.reconnect_min_s, self.fs.reconnect_max_s)
                self.last_error = str(exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.fs.reconnect_max_s)
                continue
            delay = self.fs.reconnect_min_s
            self.last_error = None
            self.inbound = proto
            self.stats["inbound_connects"] += 1
            log.info("inbound ESL connected to %s:%s", self.fs.host, self.fs.port)
            assert self.wire is not None
            proto.send(self.wire.heartbeat(self.clock()), "heartbeat")  # fresh at once for the dialplan
            await self._resync()
            if self.payments is not None:
                self.payments.link_restored()
            self.connected.set()
            why = await proto.closed
            self.connected.clear()
            self.inbound = None
            self.stats["inbound_drops"] += 1
            if not self._stopping:
                log.warning("inbound ESL to %s:%s lost: %s; reconnecting", self.fs.host, self.fs.port, why)
                self._requeue_inflight()

    async def _heartbeat_loop(self) -> None:
        """Keep ``callguard_heartbeat`` fresh; a missing reply means a dead connection."""
        assert self.wire is not None
        timeout = max(0.5, self.fs.action_timeout_ms / 1000.0)
        # Not "while True": a cancel that lands while a send fails with ConnectionError is
        # swallowed by the handler below, and the loop would outlive stop() (seen: SIGTERM hung).
        while not self._stopping:
            await asyncio.sleep(self.fs.heartbeat_interval_s)
            proto = self.inbound
            if proto is None or not proto.connected:
                continue
            try:
                await asyncio.wait_for(proto.send(self.wire.heartbeat(self.clock()), "heartbeat"), timeout)
                self.stats["heartbeats"] += 1
            except asyncio.TimeoutError:
                log.warning("FreeSWITCH did not answer the heartbeat within %.1f s; reconnecting", timeout)
                proto.close()
            except ConnectionError:
                pass

    def _on_inbound_event(self, event: ESLEvent, received_at: float) -> None:
        """Every event of the inbound connection (engine thread, inside data_received)."""
        if self.payments is not None and self.payments.on_event(event.headers.raw("Event-Name") or "", event,
                                                                received_at):
            return
        translated = translate_inbound(event, received_at)
        if translated is None:
            return
        if isinstance(translated, Membership):
            self._on_membership(translated)
            return
        state = self.calls.get(translated.call_id)
        legs = self.legs.calls.get(translated.call_id)
        engine = self.engine
        if state is None or legs is None or engine is None:
            self.stats["ignored_events"] += 1
            return
        item = translated.event
        if self._stopping and not isinstance(item, ev.RecordingStopped):
            return  # shutting down: only the confirmations of our own stops still count
        if isinstance(item, ev.HungUp):
            if item.channel != state.channel:
                self._leg_gone(state, legs, item)
                return
        elif isinstance(item, ev.PartyJoined):
            self._entered(state, legs, item.party, item.at)
            return
        elif isinstance(item, (ev.PauseRequested, ev.ResumeRequested, ev.PaymentStarted, ev.PaymentEnded)):
            self._on_signal(state, legs, item, translated.origin)
            return
        elif isinstance(item, (ev.RecordingStarted, ev.RecordingStopped)):
            path = event.get("Record-File-Path") or ""
            if not state.file_name or (path and not path.endswith("/" + state.file_name)):
                return  # a recording someone else started on this channel
        engine.feed(state.call_id, item)
        self._forget_if_finished(state.call_id)

    # -- who is who (decided in mapping.py; the round trips it needs happen here) ------------------

    def _check(self, coro: Any) -> None:
        """Run an identification / confirmation round trip; busy() until it is done."""
        task = asyncio.ensure_future(coro)
        self._checks.add(task)
        task.add_done_callback(self._checks.discard)

    async def _ask(self, channel: str, variable: str) -> str | None:
        """``uuid_getvar`` over the inbound connection (None: no answer)."""
        proto, wire = self.inbound, self.wire
        if proto is None or not proto.connected or wire is None:
            return None
        try:
            reply = await asyncio.wait_for(proto.send(wire.getvar(channel, variable), "getvar"),
                                           max(0.5, self.fs.action_timeout_ms / 1000.0))
        except (asyncio.TimeoutError, ConnectionError):
            return None
        return reply.text.strip()

    def _entered(self, state: CallState, legs: Legs, party: ev.Party, at: float) -> None:
        """A leg is in the call's bridge or conference: staff, announced, or an unannounced party?"""
        if self.legs.entered(legs, party):
            self._arrivals[party.channel] = asyncio.Event()
            self._check(self._identify(state.call_id, party.channel, at))

    async def _identify(self, call_id: str, leg: str, at: float) -> None:
        settled = self._arrivals.get(leg)
        try:
            value, answer_app = await asyncio.gather(self._ask(leg, self.legs.settings.staff_variable),
                                                     self._ask(leg, "execute_on_answer"))
            legs, engine = self.legs.calls.get(call_id), self.engine
            if legs is None or engine is None or leg not in legs.arriving:
                return  # its socket session came first, or the call ended
            staff = self.legs.identified(legs, leg, marked(value))
            if staff is not None:
                engine.feed(call_id, ev.PartyJoined(at, staff, announceable=False))
                self._forget_if_finished(call_id)
                return
            if on_join_path(answer_app):
                # Its socket session is on its way: silent until it connects.
                engine.feed(call_id, ev.PartyArriving(at, leg))
            else:
                settled = None  # nothing will come: unannounced now
            if settled is not None:
                try:
                    await asyncio.wait_for(settled.wait(), self.legs.settings.join_grace_s)
                except asyncio.TimeoutError:
                    pass
            legs = self.legs.calls.get(call_id)
            party = self.legs.grace_over(legs, leg) if legs is not None else None
            if party is not None and self.engine is not None:
                log.warning("call %s: leg %s is in the call but never reached the join path within %.1f s",
                            call_id, leg, self.legs.settings.join_grace_s)
                self.engine.feed(call_id, ev.PartyJoined(self.engine.pbx_now(), party, announceable=False))
                self._forget_if_finished(call_id)
        finally:
            self._arrivals.pop(leg, None)

    def _leg_gone(self, state: CallState, legs: Legs, item: ev.HungUp) -> None:
        """A leg other than the recorded one hung up (or left the conference)."""
        if not self.legs.left(legs, item.channel):
            return  # never one of the call's parties
        settled = self._arrivals.get(item.channel)
        if settled is not None:
            settled.set()
        # When the whole call is ending, the recorded leg's own hangup follows at once:
        # ask FreeSWITCH first, so no unmute is sent to a channel that is gone.
        self._check(self._feed_leg_gone(state.call_id, state.channel, item))

    async def _feed_leg_gone(self, call_id: str, channel: str, item: ev.HungUp) -> None:
        proto, wire = self.inbound, self.wire
        if proto is not None and proto.connected and wire is not None:
            try:
                reply = await asyncio.wait_for(proto.send(wire.exists(channel), "exists"),
                                               max(0.5, self.fs.action_timeout_ms / 1000.0))
                if reply.text.strip() == "false":
                    return  # the call itself is over; its own hangup event settles everything
            except (asyncio.TimeoutError, ConnectionError):
                pass
        if self.engine is not None and call_id in self.calls:
            self.engine.feed(call_id, item)
            self._forget_if_finished(call_id)

    def _on_membership(self, member: Membership) -> None:
        for legs, party, joined in self.legs.on_membership(member):
            state = self.calls.get(legs.call_id)
            if state is None:
                continue
            if joined:
                self._entered(state, legs, party, member.at)
            else:
                self._leg_gone(state, legs, ev.HungUp(member.at, cause="left-conference", channel=party.channel))

    def _on_signal(self, state: CallState, legs: Legs, item: ev.Event, origin: str) -> None:
        engine = self.engine
        assert engine is not None
        session = engine.session(state.call_id)
        if session is None:
            return
        active = session.flags.payment_by if isinstance(item, ev.PaymentEnded) else session.flags.paused_by
        verdict = self.legs.may_act(legs, item, origin, active)
        if not verdict.allowed:
            self.stats["signals_refused"] += 1
            log.warning("call %s: %s refused: %s", state.call_id, type(item).__name__, verdict.reason)
            return
        if not verdict.reads:
            self._feed_signal(state, item)
            return
        self._check(self._confirm(state.call_id, item, verdict))

    async def _confirm(self, call_id: str, item: ev.Event, verdict: Verdict) -> None:
        """Act on a resume / payment end only once FreeSWITCH confirms what only its sender can have set."""
        values = await asyncio.gather(*(self._ask(r.channel, r.variable) for r in verdict.reads))
        failed = [f"{r.variable}={v!r} on {r.channel}" for r, v in zip(verdict.reads, values)
                  if v is None or not r.accepts(v)]
        if failed:
            self.stats["signals_refused"] += 1
            log.warning("call %s: %s refused: not confirmed by FreeSWITCH (%s)", call_id, type(item).__name__,
                        ", ".join(failed))
            return
        first = verdict.reads[0]
        if first.variable == HOTKEY_VARIABLE and self.inbound is not None and self.wire is not None:
            # Used up: a replayed event finds nothing to confirm it.
            self.inbound.send(self.wire.unsetvar(first.channel, HOTKEY_VARIABLE), "setvar")
        state = self.calls.get(call_id)
        if state is not None:
            self._feed_signal(state, item)

    def _feed_signal(self, state: CallState, item: ev.Event) -> None:
        assert self.engine is not None
        self.engine.feed(state.call_id, item)
        if isinstance(item, ev.PaymentStarted) and not state.sensitive:
            self._sensitive(state, True)
        elif isinstance(item, ev.PaymentEnded) and state.sensitive:
            self._sensitive(state, False)
        self._forget_if_finished(state.call_id)

    # -- outbound socket (called in the gevent thread) --------------------------------------

    @property
    def staff_variable(self) -> str:
        return self.legs.settings.staff_variable

    def call_attached(self, call: OutboundCall, offer: Offer) -> bool:
        if self._stopping:
            return False
        self.parked[offer.channel] = call
        self._post(self._on_offer, call, offer)
        return True

    def call_event(self, call: OutboundCall, event: ev.Event) -> None:
        if call.offer is not None:
            self._post(self._on_outbound_event, call.offer, event)

    def call_detached(self, call: OutboundCall) -> None:
        if call.offer is not None and self.parked.get(call.offer.channel) is call:
            del self.parked[call.offer.channel]

    # -- outbound socket (engine thread) ------------------------------------------------------

    def _on_offer(self, call: OutboundCall, offer: Offer) -> None:
        engine = self.engine
        assert engine is not None
        rate = _rate(call)
        controlled = offer.call_id in self.calls and engine.session(offer.call_id) is not None
        verdict = self.legs.on_offer(offer, controlled)
        if verdict.kind == "call":
            state = self.calls.get(offer.call_id)
            if state is None:
                state = self.calls[offer.call_id] = CallState(offer.call_id, offer.channel, rate=rate)
            self.legs.add_call(offer.call_id, offer.channel)
            engine.feed(offer.call_id, offer.event())
            if engine.session(offer.call_id) is None:
                self._release(offer.channel, "error")
                self._forget_if_finished(offer.call_id)
            return
        if verdict.settled_arrival:
            settled = self._arrivals.get(offer.channel)
            if settled is not None:
                settled.set()
        if verdict.kind == "release":
            # A leg of a call we do not control, or one already settled (its bridge came first).
            self._release(offer.channel, verdict.outcome)
            return
        assert verdict.party is not None
        self._leg_call[offer.channel] = verdict.call_id
        self._rates[offer.channel] = rate
        engine.feed(verdict.call_id, ev.PartyJoined(offer.at, verdict.party, announceable=True))
        self._forget_if_finished(verdict.call_id)

    def _on_outbound_event(self, offer: Offer, event: ev.Event) -> None:
        engine = self.engine
        assert engine is not None
        call_id = self._leg_call.get(offer.channel, offer.call_id)
        if call_id not in self.calls:
            return
        engine.feed(call_id, event)
        self._forget_if_finished(call_id)

    def _release(self, channel: str, outcome: str) -> None:
        assert self.wire is not None
        self._outbound_app(channel, self.wire.set_decision(outcome), "set", 0, None)
        self._outbound_exit(channel)

    # -- PbxDriver ------------------------------------------------------------------------------

    def execute(self, call_id: str, command: cmd.Command) -> None:
        """Write ``command`` to FreeSWITCH now (engine thread; never blocks)."""
        wire = self.wire
        assert wire is not None
        state = self.calls.get(call_id)
        if state is None:
            raise RuntimeError(f"call {call_id} is not known to the FreeSWITCH listener")
        if isinstance(command, cmd.PlayAndCollect):
            timeout = command.prompt.duration_s + command.timeout_ms / 1000.0 + 10.0
            def gather() -> None:
                self._outbound_app(command.channel,
                                   wire.play_and_collect(command, self._rate_of(state, command.channel)),
                                   "play_and_get_digits", timeout,
                                   self._failure(call_id, lambda at, why: ev.PromptFailed(at, command.channel, why)))
            if command.channel != state.channel and state.masking():
                # A joiner's notice goes out once the mask is in place (the two
                # travel on different sockets), or after the action timeout,
                # when the engine has given up on the mask and stopped instead.
                state.after_mask.append(gather)
                asyncio.get_running_loop().call_later(self.fs.action_timeout_ms / 1000.0, state.release_after_mask)
            else:
                gather()
        elif isinstance(command, cmd.PlayPrompt):
            self._outbound_app(command.channel, wire.play_prompt(command.prompt, self._rate_of(state, command.channel)),
                               "playback", command.prompt.duration_s + 10.0, None)
        elif isinstance(command, cmd.StartRecording):
            state.file_name = command.file_name
            failed = self._failure(call_id, lambda at, why: ev.CommandFailed(at, "StartRecording", why))
            if command.channel in self.parked:
                self._outbound_app(command.channel, wire.name_recording(command.file_name), "set",
                                   self.fs.action_timeout_ms / 1000.0, None)
                self._outbound_app(command.channel, wire.record_session(command.file_name), "record_session",
                                   self.fs.action_timeout_ms / 1000.0, failed)
            else:
                self._api(state, "setvar", wire.name_recording_api(command.channel, command.file_name),
                          lambda item, frame, why: None)
                self._api(state, "start", wire.start(command.channel, command.file_name), self._on_start_reply)
        elif isinstance(command, cmd.MuteRecording):
            self._mask(state, True)
        elif isinstance(command, cmd.UnmuteRecording):
            self._mask(state, False)
        elif isinstance(command, cmd.StopRecording):
            if command.channel in self.parked:
                self._outbound_app(command.channel, wire.stop_record_session(state.file_name),
                                   "stop_record_session", self.fs.action_timeout_ms / 1000.0,
                                   lambda why: self._post(self._stop_via_api, call_id))
            else:
                self._stop_via_api(call_id)
        elif isinstance(command, cmd.ContinueDialplan):
            if command.channel not in self.parked:
                log.debug("call %s: %s already left the socket; outcome %s not set", call_id, command.channel,
                          command.outcome)
                return
            self._outbound_app(command.channel, wire.set_decision(command.outcome), "set",
                               self.fs.action_timeout_ms / 1000.0, None)
            if command.destination:
                self._outbound_app(command.channel, wire.transfer(command.destination), "transfer",
                                   self.fs.action_timeout_ms / 1000.0, None)
            self._outbound_exit(command.channel)
        else:
            raise TypeError(f"FreeSWITCH driver cannot perform {type(command).__name__}")

    def _failure(self, call_id: str, make: Callable[[float, str], ev.Event]) -> Callable[[str], None]:
        """An on-failure callback for the gevent thread that feeds ``make(at, why)`` to the engine."""
        def report(why: str) -> None:
            self._post(self._feed_now, call_id, make, why)
        return report

    def _feed_now(self, call_id: str, make: Callable[[float, str], ev.Event], why: str) -> None:
        if self.engine is not None and call_id in self.calls:
            self.engine.feed(call_id, make(self.engine.pbx_now(), why))
            self._forget_if_finished(call_id)

    def _outbound_app(self, channel: str, data: bytes, app: str, timeout: float,
                      on_failure: Callable[[str], None] | None) -> None:
        call = self.parked.get(channel)
        if call is None or self.outbound is None:
            if on_failure is not None:
                on_failure("channel is not on the outbound socket")
            return
        bounce = (lambda: on_failure("channel left the outbound socket")) if on_failure else None
        self.outbound.submit(call.enqueue, _App(data, app, timeout, on_failure), bounce)

    def _outbound_exit(self, channel: str) -> None:
        call = self.parked.get(channel)
        if call is not None and self.outbound is not None:
            self.outbound.submit(call.enqueue, _Exit())

    def _mask(self, state: CallState, on: bool) -> None:
        """``uuid_record mask|unmask``, then the mark a later process adopts the call by (adoption.py).

        The mask goes first (the pause path); the mark follows on the same
        connection.  Unmasking clears it only after the unmask is written,
        so a crash in between leaves the call adopted masked: quieter, never louder.
        """
        assert self.wire is not None
        if on:
            self._api(state, "mask", self.wire.mask(state.channel, state.file_name), self._on_mask_reply)
        else:
            self._api(state, "unmask", self.wire.unmask(state.channel, state.file_name), self._on_mask_reply)
        mark = self.wire.setvar(state.channel, MASKED_VARIABLE, "true") if on else \
            self.wire.unsetvar(state.channel, MASKED_VARIABLE)
        self._api(state, "setvar", mark, lambda item, frame, why: None)

    def _stop_via_api(self, call_id: str) -> None:
        state = self.calls.get(call_id)
        if state is not None and self.wire is not None and state.file_name:
            self._api(state, "stop", self.wire.stop(state.channel, state.file_name), self._on_stop_reply)

    def _sensitive(self, state: CallState, on: bool) -> None:
        assert self.wire is not None
        state.sensitive = on
        self._api(state, "setvar", self.wire.sensitive_dtmf(state.channel, on), lambda item, frame, why: None)

    # -- inbound api commands ---------------------------------------------------------------------

    def _api(self, state: CallState, kind: str, data: bytes, on_reply: Callable[[_Api, Frame | None, str], None]) -> None:
        item = _Api(state.call_id, kind, data, lambda frame, why: on_reply(item, frame, why))
        proto = self.inbound
        if proto is None or not proto.connected:
            state.pending.append(item)
            return
        self._send(state, item, proto)

    def _send(self, state: CallState, item: _Api, proto: InboundProtocol) -> None:
        state.inflight.append(item)
        future = proto.send(item.data, item.kind)

        def done(f: asyncio.Future[Frame]) -> None:
            if item in state.inflight:
                state.inflight.remove(item)
            if f.cancelled():
                return
            exc = f.exception()
            if exc is not None:
                return  # connection dropped: _requeue_inflight already moved it back
            item.on_reply(f.result(), "")

        future.add_done_callback(done)

    def _requeue_inflight(self) -> None:
        for state in self.calls.values():
            if state.inflight:
                self.stats["resent"] += len(state.inflight)
                state.pending[:0] = state.inflight
                state.inflight = []

    def _on_mask_reply(self, item: _Api, frame: Frame | None, why: str) -> None:
        engine = self.engine
        if engine is None or frame is None or item.call_id not in self.calls:
            return
        at = engine.pbx_now()
        command = "MuteRecording" if item.kind == "mask" else "UnmuteRecording"
        if frame.ok():
            engine.feed(item.call_id, ev.RecordingMuted(at) if item.kind == "mask" else ev.RecordingUnmuted(at))
        else:
            engine.feed(item.call_id, ev.CommandFailed(at, command, frame.text.strip()[:200] or "refused"))
        state = self.calls.get(item.call_id)
        if state is not None and item.kind == "mask":
            state.release_after_mask()
        self._forget_if_finished(item.call_id)

    def _on_start_reply(self, item: _Api, frame: Frame | None, why: str) -> None:
        engine = self.engine
        if engine is None or frame is None or frame.ok() or item.call_id not in self.calls:
            return  # success is confirmed by RECORD_START
        engine.feed(item.call_id, ev.CommandFailed(engine.pbx_now(), "StartRecording", frame.text.strip()[:200]))

    def _on_stop_reply(self, item: _Api, frame: Frame | None, why: str) -> None:
        if frame is not None and not frame.ok():
            log.info("call %s: stop answered %s (RECORD_STOP confirms a stop)", item.call_id, frame.text.strip())

    # -- after a reconnect ------------------------------------------------------------------------

    async def _resync(self) -> None:
        proto, wire, engine = self.inbound, self.wire, self.engine
        assert proto is not None and wire is not None and engine is not None
        # 1. What could not be sent goes first, a pending stop replacing mute/unmute.
        resent: set[str] = set()
        for state in list(self.calls.values()):
            pending, state.pending = state.pending, []
            if any(p.kind == "stop" for p in pending):
                pending = [p for p in pending if p.kind not in ("mask", "unmask")]
            for item in pending:
                self._send(state, item, proto)
                resent.add(state.call_id)
        # 1b. Once per process (or lease term): the calls an earlier one left on FreeSWITCH.
        if not self.adoption.is_set():
            adopted = await self._adopt(proto)
            if adopted is None:
                return  # the connection died or FreeSWITCH did not answer: the next reconnect tries again
            resent |= adopted  # their mask (if any) is on its way already
        # 2. Each live call: still there?  Flags raised while we were away?  Silent if it should be.
        timeout = max(0.5, self.fs.action_timeout_ms / 1000.0)
        for call_id in list(self.calls):
            state = self.calls.get(call_id)
            session = engine.session(call_id)
            if state is None or session is None:
                continue
            try:
                exists = await asyncio.wait_for(proto.send(wire.exists(state.channel), "exists"), timeout)
                if exists.text.strip() != "true":
                    engine.feed(call_id, ev.HungUp(engine.pbx_now(), cause="gone-while-disconnected",
                                                   channel=state.channel))
                    self._forget_if_finished(call_id)
                    continue
                if not session.recording:
                    continue
                await self._apply_flag(proto, state, PAUSE_FLAG, session.flags.paused_by,
                                       ev.PauseRequested, ev.ResumeRequested, timeout)
                await self._apply_flag(proto, state, PAYMENT_FLAG, session.flags.payment_by,
                                       ev.PaymentStarted, ev.PaymentEnded, timeout)
            except (asyncio.TimeoutError, ConnectionError):
                return  # the connection died again; the next reconnect resyncs
            # 3. Silent again if it should be (a mask is idempotent), unless this resync
            #    already re-sent the mute/unmute that was on the wire.
            session = engine.session(call_id)
            if session is not None and session.recording and session.desired_muted and state.file_name \
                    and call_id not in resent:
                self._mask(state, True)

    async def _adopt(self, proto: InboundProtocol) -> set[str] | None:
        """Take over the calls an earlier process decided; close those it lost.  None: try again later.

        The same path serves a restart after a crash and a takeover by
        another node (high availability): see :mod:`.adoption`.
        """
        wire, engine = self.wire, self.engine
        assert wire is not None and engine is not None
        timeout = max(1.0, self.fs.action_timeout_ms / 1000.0)

        async def api(data: bytes) -> str:
            reply = await asyncio.wait_for(proto.send(data, "adopt"), timeout)
            return reply.text

        try:
            rows = channel_rows(await api(wire.channels()))
            found = await find_live_calls(api, wire, rows, set(self.calls) | set(engine.sessions),
                                          staff_variable=self.legs.settings.staff_variable)
        except (asyncio.TimeoutError, ConnectionError, AdoptionError) as exc:
            log.error("could not read the live calls from FreeSWITCH (%s); trying again after the next reconnect",
                      exc or "no answer")
            return None
        for live in found:
            self._take_over(live)
        from callguard.adapters.reconcile import close_lost_calls

        self.adopted = [live.call_id for live in found]
        self.lost = await close_lost_calls(engine.ledger, lambda: set(self.calls) | set(engine.sessions),
                                           self._started_at, engine.pbx_now())
        self.adoption.set()
        if found or self.lost:
            log.warning("took over %d live call(s) from an earlier listener process; %d call(s) it left open are "
                        "gone from FreeSWITCH and were closed as lost", len(found), len(self.lost))
        return set(self.adopted)

    def _take_over(self, live: LiveCall) -> None:
        """Control one adopted call: its legs known, its session resumed in the state FreeSWITCH shows."""
        engine = self.engine
        assert engine is not None
        state = self.calls[live.call_id] = CallState(live.call_id, live.channel, rate=live.rate,
                                                     file_name=live.file_name if live.recording else "",
                                                     sensitive=live.payment)
        legs = self.legs.add_call(live.call_id, live.channel)
        for leg in live.legs:
            legs.parties.add(leg.uuid)
            if leg.staff:
                legs.staff.add(leg.uuid)
        log.warning("call %s: adopted from an earlier listener process (%s%s%s%s)", live.call_id,
                    "recording" if live.recording else "not recorded", ", paused" if live.paused else "",
                    ", payment segment" if live.payment else "", ", masked" if live.masked else "")
        engine.feed(live.call_id, live.event(engine.pbx_now()))
        if engine.session(live.call_id) is None:
            self._forget_if_finished(state.call_id)

    async def _apply_flag(self, proto: InboundProtocol, state: CallState, name: str, active: ev.Source | None,
                          on: type[ev.Event], off: type[ev.Event], timeout: float) -> None:
        assert self.wire is not None and self.engine is not None
        reply = await asyncio.wait_for(proto.send(self.wire.getvar(state.channel, name), "getvar"), timeout)
        value = reply.text.strip()
        flagged = value not in _UNSET and not value.startswith("-ERR")
        if flagged and active is None:
            self.engine.feed(state.call_id, on(self.engine.pbx_now(), source=ev.Source.parse(value)))  # type: ignore[call-arg]
        elif not flagged and active in (ev.Source.HOTKEY, ev.Source.IVR):
            self.engine.feed(state.call_id, off(self.engine.pbx_now(), source=active))  # type: ignore[call-arg]

    # -- helpers ---------------------------------------------------------------------------------

    @property
    def skipped_events(self) -> int:
        """Events of the current inbound connection skipped unparsed (not about our calls)."""
        return self.inbound.skipped if self.inbound is not None else 0

    def busy(self) -> bool:
        """Work in flight: an api reply due, a command queued or being sent (tests settle on this)."""
        if self._checks or any(s.inflight or s.pending for s in self.calls.values()):
            return True
        if self.outbound is not None and self.outbound.backlog:
            return True
        # An application FreeSWITCH accepted runs on the PBX's time (a prompt,
        # a gather), and what is queued behind it waits for it: only commands
        # on their way, or queued with nothing running, count as our work.
        return any(call.sending or (not call.queue.empty() and call._waiting is None)
                   for call in list(self.parked.values()))

    def _rate_of(self, state: CallState, channel: str) -> int:
        return state.rate if channel == state.channel else self._rates.get(channel, 8000)

    def _forget_if_finished(self, call_id: str) -> None:
        engine = self.engine
        if engine is not None and engine.session(call_id) is None:
            state = self.calls.pop(call_id, None)
            if self.payments is not None:
                self.payments.call_ended(call_id)
            legs = self.legs.calls.get(call_id)
            self.legs.drop_call(call_id)
            if state is not None and legs is not None:
                for channel in (*legs.parties, *legs.arriving):
                    self._rates.pop(channel, None)
                    self._leg_call.pop(channel, None)


    def _wanted(self, body: bytes) -> bool:
        return _about_a_call(body) or (self.payments is not None and self.payments.wanted(body))


def _about_a_call(body: bytes) -> bool:
    """Could this event concern a call we control?  (Substring searches on the raw bytes.)

    Every leg of a call the shipped dialplan sends to us carries the exported
    ``callguard_call`` variable, and our CUSTOM events are ``callguard::*``.
    Conference member events carry NO variables (fixture conference_join):
    they are all kept, since a recorded call may be in that conference or
    enter it later.  The rest of a busy box's events (other calls' hangups
    and bridges) is skipped unparsed.
    """
    return b"callguard" in body or b"conference%3A%3Amaintenance" in body


def _rate(call: OutboundCall) -> int:
    data = call.session.session_data
    raw = (data.get("Channel-Read-Codec-Rate") if data is not None else None) or ""
    return int(raw) if raw.isdigit() and 0 < int(raw) <= 192000 else 8000


def _catalog_paths(prompts: PromptResolver) -> PromptPath:
    """The catalogue's FreeSWITCH paths (``path_for(ref, "freeswitch", rate)``)."""
    path_for = getattr(prompts, "path_for", None)
    if path_for is None:
        raise ValueError("the prompt resolver has no file paths; pass prompt_path= (e.g. wire.directory_prompts)")
    return lambda ref, rate: path_for(ref, "freeswitch", rate)


async def serve(config: Config, ledger: LedgerSink, *, prompts: PromptResolver | None = None,
                stop: asyncio.Event | None = None, stats_every_s: float = 60.0,
                ready: Callable[[FreeSwitchListener], None] | None = None) -> None:
    """Run until ``stop`` is set (or SIGINT/SIGTERM); raise InboundRefused if FreeSWITCH says no at once."""
    stop = stop or asyncio.Event()
    tune_interpreter()
    with stop_on_signals(stop):
        listener = FreeSwitchListener(config, ledger, prompts=prompts)
        await listener.start()
        fs = config.freeswitch
        log.info("outbound socket on %s:%s; inbound ESL to %s:%s", fs.listen_host, listener.outbound_port,
                 fs.host, fs.port)
        if ready is not None:
            ready(listener)
        assert listener.refused is not None and listener.engine is not None
        stopped = asyncio.ensure_future(stop.wait())
        console = contextlib.AsyncExitStack()
        try:
            await console.enter_async_context(listener_service(config, listener.engine, _probe(listener),
                                                                 "freeswitch", payments=listener.desk))
            while not stop.is_set():
                await asyncio.wait({stopped, listener.refused}, timeout=stats_every_s,
                                   return_when=asyncio.FIRST_COMPLETED)
                if listener.refused.done():
                    raise InboundRefused(listener.refused.result())
                engine = listener.engine
                assert engine is not None
                log.info("calls: %d active, %d parked, %d started, %d finished; inbound ESL %s; outcomes %s",
                         len(engine.sessions), len(listener.parked), engine.stats.calls_started,
                         engine.stats.calls_finished, "up" if listener.inbound is not None else
                         f"down ({listener.last_error or 'reconnecting'})", engine.stats.by_outcome)
        finally:
            stopped.cancel()
            await console.aclose()
            await listener.stop()


def _probe(listener: FreeSwitchListener) -> ListenerProbe:
    """What the console's /readyz and /metrics read from this listener."""
    return ListenerProbe.over(listener.ledger, listener.ingest,
                              pbx_connected=lambda: listener.inbound is not None and listener.inbound.connected,
                              connects=lambda: listener.stats["inbound_connects"],
                              heartbeats=lambda: listener.stats["heartbeats"] + listener.stats["inbound_connects"],
                              heartbeat_interval_s=listener.fs.heartbeat_interval_s)


__all__ = ["CallState", "FreeSwitchListener", "PAUSE_FLAG", "PAYMENT_FLAG", "serve"]
