"""The Asterisk side of callguard: AMI events -> engine events, commands -> AMI actions.

:class:`AsteriskListener` is the engine's :class:`~callguard.runtime.PbxDriver`
for Asterisk.  What it maps, exactly as the captured Asterisk 22 streams
show:

=========================================  ==========================================
Asterisk                                   engine
=========================================  ==========================================
``AsyncAGIStart`` (any context but join)   ``CallOffered`` (parties from the ``Env``)
``AsyncAGIStart`` in ``callguard-join``    ``PartyJoined(announceable=True)``
``AGIExecStart`` of our ``GET DATA``       ``NoticeStarted``
``AsyncAGIExec`` of ``GET DATA``           ``DigitsCollected`` / ``PromptFailed``
``MixMonitorStart`` / ``MixMonitorStop``   ``RecordingStarted`` / ``RecordingStopped``
``MixMonitorMute`` State 1 / 0             ``RecordingMuted`` / ``RecordingUnmuted``
``UserEvent: CallGuard`` (by Linkedid)     ``Pause``/``Resume``/``PaymentStarted``/``Ended``
``BridgeEnter`` of a channel never seen    ``PartyJoined(announceable=False)``
``Hangup`` of the controlled channel       ``HungUp`` (of another party: it left)
error response / no answer                 ``CommandFailed``
=========================================  ==========================================

``PlayAndCollect`` -> ``GET DATA <file> <ms> <max>``; ``PlayPrompt`` ->
``STREAM FILE``; ``StartRecording`` -> ``Action: MixMonitor`` with a file
under ``[asterisk] recording_dir`` and ``i(CALLGUARD_MIXMON_ID)``;
``Mute``/``UnmuteRecording`` -> ``MixMonitorMute`` (both directions);
``StopRecording`` -> ``StopMixMonitor``; ``ContinueDialplan`` -> ``SET
VARIABLE CALLGUARD_CONSENT <outcome>`` (+ a goto) + ``ASYNCAGI BREAK``.

Every event's time is the PBX's ``Timestamp`` when ``timestampevents`` is
on, else our receive time.  Nothing a caller controls (number, name) ever
reaches a file path, a dialplan variable or an AGI command: only the
ledger sees it.

After a reconnect the listener resynchronises (:meth:`resync`): calls
still parked in AsyncAGI are taken over (or released), recordings that
should be silent are muted again, stops that could not be sent are sent,
signals the dialplan left on the channel (a payment in progress) are
applied, and calls that ended while we were away are closed.
"""

from __future__ import annotations

import asyncio
import logging
import posixpath
import re
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from callguard.adapters.asterisk import agi
from callguard.adapters.asterisk.adoption import (
    CALL_VARIABLE,
    CONSENT_VARIABLE,
    MIXMON_ID_VARIABLE,
    MUTED_VARIABLE,
    PAUSE_VARIABLE,
    PAYMENT_VARIABLE,
    LiveCall,
    find_live_calls,
)
from callguard.adapters.asterisk.agi import AgiResult, UnsafeAgiArgument
from callguard.adapters.reconcile import close_lost_calls
from callguard.adapters.asterisk.manager import AmiManager, tls_context
from callguard.adapters.asterisk.payments import CARD_ACTIONS, PAYMENT_CONTEXT, is_player
from callguard.adapters.asterisk.protocol import ActionTimeout, AmiError, ConnectionLost
from callguard.adapters.asterisk.trust import (
    APPNAME,
    CALLER_NUMBER,
    CONFERENCE_VARIABLE,
    CONTEXT,
    STAFF_VARIABLE,
    ChannelFacts,
    LINKEDID,
    LOOSENING,
    Prober,
    StaffRule,
    check_signal,
    variables_for_signal,
)
from callguard.adapters.asterisk.wire import AmiMessage, UnsafeHeaderValue
from callguard.core import commands as cmd
from callguard.core import events as ev
from callguard.core.commands import PromptRef
from callguard.core.session import State

if TYPE_CHECKING:
    from callguard.adapters.asterisk.payments import AsteriskPayments
    from callguard.config import AsteriskConfig
    from callguard.runtime import Engine

log = logging.getLogger("callguard.asterisk")

JOIN_CONTEXT = "callguard-join"
#: AsyncAGI channels in contexts with this prefix are callguard's (callguard-inbound, callguard-join, ...).
CONTEXT_PREFIX = "callguard"
#: Channel variables the shipped dialplan sets next to each UserEvent, so a
#: signal sent while we were disconnected is still seen after a reconnect.
#: 1 while the recording is confirmed silent (the dialplan's payment guard waits for it)
#: bridges whose members are remembered (a bridge the recorded channel may still enter)
MAX_BRIDGES = 4096
#: heartbeat ticks between two reads of the dialplan's fallback notes
FALLBACK_DRAIN_TICKS = 3
#: AstDB family where the dialplan notes calls that went on without the listener
FALLBACK_FAMILY = "callguard-fallback"
_FALLBACK_LINE = re.compile(r"([0-9]{1,12}(?:\.[0-9]+)?):([A-Za-z0-9._+-]{1,80}):([a-z-]{1,40})")
_FALLBACK_REASONS = {
    "heartbeat-stale": "the listener's heartbeat was stale: fallback notice, not recorded",
    "listener-timeout": "the listener did not finish in time (AGI guard fired): fallback notice, not recorded",
    "payment-not-confirmed": "a payment started and the mute was not confirmed in time: the dialplan stopped "
                             "the recording itself",
}
USER_EVENT = "callguard"
_SIGNALS: dict[str, type[ev.Event]] = {
    "pause": ev.PauseRequested,
    "resume": ev.ResumeRequested,
    "payment-start": ev.PaymentStarted,
    "payment-end": ev.PaymentEnded,
}
_SAFE_FILE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,200}")
_OUTCOME = re.compile(r"[a-z][a-z-]{0,31}")
_DIGITS = re.compile(r"[0-9*#]*")
#: How long a ``result=-1`` waits for the Hangup that usually explains it.
HANGUP_GRACE_S = 0.25
#: Extra time on top of prompt + gather timeout before a GET DATA counts as lost.
AGI_SLACK_S = 30.0
#: How far past a command's expected end the PBX-side guard is still pushed back.
GUARD_SLACK_S = 2.0
#: ``TIMEOUT(absolute)`` the listener keeps re-arming on channels parked in AsyncAGI
GUARD_VARIABLE = "TIMEOUT(absolute)"


def default_prompt_file(ref: PromptRef) -> str:
    """``<lang>/callguard/<id>`` under Asterisk's sounds directory.

    The layout ``callguard prompts install --asterisk`` writes; naming the
    language explicitly plays the language the policy chose, whatever the
    channel's own language is.
    """
    return f"{ref.language}/callguard/{ref.prompt_id}"


@dataclass
class _Channel:
    """What we know about one channel of a call."""

    name: str
    role: str  #: caller | agent | joiner
    in_agi: bool = False
    announced: bool = False  #: passed through AsyncAGI (the notice could be played)
    notice_command: str = ""  #: GET DATA text awaiting its AGIExecStart
    collect: cmd.PlayAndCollect | None = None  #: gather in flight (replayed after a reconnect)
    continued: cmd.ContinueDialplan | None = None  #: hand-back sent (re-sent if lost)
    #: the AMI connection (``manager.connects``) the gather or hand-back went out on:
    #: only what went out on an earlier, lost connection is sent again by resync
    sent_on: int = 0
    hangup_check: asyncio.TimerHandle | None = None
    #: loop time until which the dialplan's AGI guard is pushed back (the current step's expected end)
    guard_until: float = 0.0


@dataclass
class _Call:
    """The wire-side state of one controlled call."""

    call_id: str
    linkedid: str
    controlled: str
    channels: dict[str, _Channel] = field(default_factory=dict)
    bridge: str | None = None
    mixmon_id: str = ""
    recording_wanted: bool = False
    stop_pending: bool = False
    recording_file: str = ""
    #: per channel: the newest signal sequence number acted on (a read-back must be newer)
    signal_seq: dict[str, int] = field(default_factory=dict)
    #: bumped by every pause / payment start: a resume confirmed after one arrived is stale
    tightened: int = 0
    #: bumped by every mute/unmute/stop sent: only the newest may mark the recording silent
    mute_gen: int = 0
    mute_wanted_gen: int = -1  #: the mute_gen of the mute in flight (-1: an unmute or stop is newer)
    mute_confirmations: set[str] = field(default_factory=set)  #: "response" / "event" for that mute
    stop_future: asyncio.Future | None = None  #: the last StopMixMonitor sent (a stop waits for it)
    room: str = ""  #: the ConfBridge room the recorded channel is in


class AsteriskListener:
    """Drives calls on one Asterisk over AMI for an :class:`~callguard.runtime.Engine`."""

    def __init__(self, config: "AsteriskConfig", *, manager: AmiManager | None = None,
                 prompt_file: Callable[[PromptRef], str] | None = None,
                 clock: Callable[[], float] = time.time, join_context: str = JOIN_CONTEXT,
                 events: str | None = "on"):
        self.config = config
        self.clock = clock
        self.join_context = join_context
        self.prompt_file = prompt_file or default_prompt_file
        self.engine: "Engine | None" = None
        self.manager = manager or AmiManager(
            host=config.host, port=config.port, username=config.username, secret=config.secret,
            ssl=tls_context(config.ca_file) if config.tls else None,
            server_hostname=config.host if config.tls else None,
            action_timeout=config.action_timeout_ms / 1000.0, ping_interval=config.ping_interval_s,
            ping_delay=config.ping_interval_s, reconnect_min=config.reconnect_min_s,
            reconnect_max=config.reconnect_max_s, events=events, trust_agi_end=False)
        self.calls: dict[str, _Call] = {}
        self._by_channel: dict[str, _Call] = {}
        self._by_linkedid: dict[str, _Call] = {}
        #: BridgeUniqueid -> the call whose controlled channel is in that bridge: a
        #: BridgeEnter of another linkedid is matched in O(1), not by scanning every call
        #: (a flood of other calls' BridgeEnter events with 1,000 live calls).
        self._by_bridge: dict[str, _Call] = {}
        #: BridgeUniqueid -> channels in it (any bridge, recently active first out): a leg can enter
        #: a bridge before the recorded channel does (Dial, blind transfer, a conference)
        self._members: OrderedDict[str, set[str]] = OrderedDict()
        self._rooms: dict[str, _Call] = {}  #: ConfBridge room -> the recorded call in it
        self._ended: OrderedDict[str, None] = OrderedDict()
        self._gone: OrderedDict[str, None] = OrderedDict()  #: channels of our calls that hung up
        self._heartbeat: asyncio.Task | None = None
        self._resyncing: asyncio.Task | None = None
        self.payments: "AsteriskPayments | None" = None  #: set by AsteriskPayments(listener)
        self.prober = Prober(self.manager, timeout=config.action_timeout_ms / 1000.0)
        self.staff = StaffRule(config.staff_channels)
        self._checks: set[asyncio.Task] = set()  #: read-backs in flight (cancelled on stop)
        self._probing: dict[str, bool] = {}  #: AsyncAGI channels being identified -> hung up meanwhile
        self.rejected = 0  #: signals whose read-back did not confirm them
        self.guard_s = config.agi_guard_s
        self._draining = asyncio.Lock()
        self._reconciled = False  #: calls left open in the ledger were closed (first login)
        self._started_at = clock()
        self.adopted = 0
        self._ticks = 0
        self.heartbeats = 0
        self.resyncs = 0
        self.released = 0
        self.manager.on_login = self._on_login
        for name, handler in (
            ("AsyncAGIStart", self._on_agi_start), ("AsyncAGIEnd", self._on_agi_end),
            ("AGIExecStart", self._on_agi_exec_start), ("MixMonitorStart", self._on_mixmonitor_start),
            ("MixMonitorStop", self._on_mixmonitor_stop), ("MixMonitorMute", self._on_mixmonitor_mute),
            ("UserEvent", self._on_user_event), ("BridgeEnter", self._on_bridge_enter),
            ("BridgeLeave", self._on_bridge_leave), ("Hangup", self._on_hangup),
            ("ConfbridgeJoin", self._on_confbridge_join), ("ConfbridgeLeave", self._on_confbridge_leave),
        ):
            self.manager.register_event(name, self._guard(handler))

    # -- lifecycle ------------------------------------------------------------------

    def attach(self, engine: "Engine") -> None:
        self.engine = engine

    async def start(self) -> None:
        """Connect and log in (raises :class:`AuthenticationFailed` on bad credentials)."""
        assert self.engine is not None, "attach(engine) first"
        self._started_at = self.clock()
        await self.manager.connect()
        if self._heartbeat is None:
            self._heartbeat = asyncio.get_running_loop().create_task(self._heartbeat_loop(),
                                                                     name="callguard-heartbeat")

    async def stop(self, release: bool = True, timeout: float = 1.0) -> None:
        """Stop: end unsupervised recordings and release parked channels, then disconnect.

        A recording nobody supervises cannot be paused for a payment, so a
        graceful stop ends every recording it started (fail safe, through
        the engine: one ``recording-stopped`` per recording, Asterisk's
        MixMonitorStop logged as its confirmation) and hands every parked
        channel back to the dialplan.  Bounded by ``timeout`` for the PBX's
        answers, so a stop takes well under 2 s whatever the PBX does.
        """
        for task in (self._heartbeat, self._resyncing, *self._checks):
            if task is not None:
                task.cancel()
        self._heartbeat = self._resyncing = None
        engine = self.engine
        if release and self.manager.connected:
            if engine is not None:
                for call_id, session in list(engine.sessions.items()):
                    if session.recording:
                        engine.feed(call_id, ev.ListenerStopping(engine.pbx_now()))
            waits = [call.stop_future for call in self.calls.values() if call.stop_future is not None]
            for call in list(self.calls.values()):
                for channel in call.channels.values():
                    if channel.in_agi:
                        waits.extend(self._hand_back(channel.name, "not-recorded", None))
                        self.released += 1
            if waits:
                await asyncio.wait([asyncio.ensure_future(w) for w in waits], timeout=timeout)
        if engine is not None and hasattr(engine, "close"):
            engine.close()  # no timer may fire into a closed ledger
        await self.manager.aclose(logoff_timeout=min(timeout, 0.5))

    # -- PbxDriver ----------------------------------------------------------------------

    def execute(self, call_id: str, command: cmd.Command) -> None:
        """Write the command's AMI action(s) now; confirmations come back as events."""
        call = self.calls.get(call_id)
        if call is None:
            log.warning("call %s: %s for a call the listener does not know", call_id, type(command).__name__)
            return
        handler = _COMMANDS.get(type(command))
        if handler is None:
            log.error("call %s: no Asterisk mapping for %s", call_id, type(command).__name__)
            return
        handler(self, call, command)

    def _play_and_collect(self, call: _Call, command: cmd.PlayAndCollect) -> None:
        channel = self._channel(call, command.channel)
        try:
            text = agi.get_data(self.prompt_file(command.prompt), command.timeout_ms, command.max_digits)
        except Exception as exc:  # an unplayable prompt (unknown, unsafe path): fail safe, never park
            self._feed_soon(call, ev.PromptFailed(self._now(), command.channel, f"prompt not playable: {exc}"))
            return
        channel.notice_command = text
        channel.collect = command
        channel.sent_on = self.manager.connects
        expected = command.prompt.duration_s + command.timeout_ms / 1000.0
        future = self._agi(command.channel, text, exec_timeout=expected + AGI_SLACK_S, expected=expected)
        future.add_done_callback(lambda f: self._collected(call, command, f))

    def _collected(self, call: _Call, command: cmd.PlayAndCollect, future: asyncio.Future) -> None:
        channel = call.channels.get(command.channel)
        if channel is not None and channel.collect is command:
            channel.collect = None
            channel.notice_command = ""
        exc = future.exception()
        if isinstance(exc, ConnectionLost):
            if channel is not None:
                channel.collect = command  # replayed by resync if the channel is still parked
            return
        if exc is not None:
            self._feed(call, ev.PromptFailed(self._now(), command.channel, _reason(exc)))
            return
        result: AgiResult = future.result()
        if result.hangup:
            self._after_grace(call, command.channel, f"playback ended with {result.raw.strip()!r}")
            return
        if not result.ok:
            self._feed(call, ev.PromptFailed(result.at or self._now(), command.channel,
                                             result.error or f"AGI status {result.code}"))
            return
        digits = result.digits()
        if not _DIGITS.fullmatch(digits):
            digits = ""  # not keypad input; treat as no answer
        self._feed(call, ev.DigitsCollected(result.at or self._now(), command.channel, digits))

    def _play_prompt(self, call: _Call, command: cmd.PlayPrompt) -> None:
        try:
            text = agi.stream_file(self.prompt_file(command.prompt))
        except Exception as exc:
            self._feed_soon(call, ev.CommandFailed(self._now(), "PlayPrompt", f"prompt not playable: {exc}"))
            return
        self._agi(command.channel, text).add_done_callback(lambda f: self._check_agi(call, "PlayPrompt", f))

    def _start_recording(self, call: _Call, command: cmd.StartRecording) -> None:
        if not _SAFE_FILE.fullmatch(command.file_name) or ".." in command.file_name:
            self._feed_soon(call, ev.CommandFailed(self._now(), "StartRecording",
                                                   f"refusing unsafe recording file name {command.file_name!r}"))
            return
        path = posixpath.join(self.config.recording_dir, command.file_name)
        call.recording_wanted, call.stop_pending = True, False
        call.recording_file, call.mixmon_id = path, ""
        future = self._send({"Action": "MixMonitor", "Channel": command.channel, "File": path,
                             "Options": f"i({MIXMON_ID_VARIABLE})"})
        future.add_done_callback(lambda f: self._mixmonitor_answered(call, f))

    def _mixmonitor_answered(self, call: _Call, future: asyncio.Future) -> None:
        response = self._response(call, "StartRecording", future)
        if response is not None:
            call.mixmon_id = response.get("MixMonitorID", "")

    def _set_mute(self, call: _Call, command: cmd.MuteRecording | cmd.UnmuteRecording) -> None:
        muted = isinstance(command, cmd.MuteRecording)
        name = "MuteRecording" if muted else "UnmuteRecording"
        call.mute_gen += 1
        gen = call.mute_gen
        call.mute_confirmations = set()
        call.mute_wanted_gen = gen if muted else -1
        if not muted:  # first tell the payment guard the recording is no longer known silent
            self._mark_silent(call, False)
        future = self._send({"Action": "MixMonitorMute", "Channel": command.channel, "Direction": "both",
                             "State": "1" if muted else "0"})

        def answered(f: asyncio.Future) -> None:
            if self._response(call, name, f) is not None and muted and gen == call.mute_gen:
                self._mute_confirmed(call, "response")

        future.add_done_callback(answered)

    def _mark_silent(self, call: _Call, silent: bool) -> None:
        """``CALLGUARD_MUTED`` on the recorded channel, for the dialplan's payment guard.

        1 only after Asterisk answered Success to our mute (or stop), matched
        by our own unguessable ActionID; 0 before an unmute is even sent.
        ``callguard-signal,payment-start`` lets payment audio flow only on 1.
        """
        self._send({"Action": "Setvar", "Channel": call.controlled, "Variable": MUTED_VARIABLE,
                    "Value": "1" if silent else "0"}).add_done_callback(_ignore)

    def _stop_recording(self, call: _Call, command: cmd.StopRecording) -> None:
        call.recording_wanted, call.stop_pending = False, True
        self._send_stop(call, command.channel)

    def _send_stop(self, call: _Call, channel: str) -> None:
        def done(future: asyncio.Future) -> None:
            if future.cancelled():
                return
            exc = future.exception()
            if isinstance(exc, ConnectionLost):
                return  # still pending: resync sends it again
            call.stop_pending = False
            if self._response(call, "StopRecording", future) is not None:
                call.mute_gen += 1
                self._mark_silent(call, True)

        future = call.stop_future = self._send({"Action": "StopMixMonitor", "Channel": channel})
        future.add_done_callback(done)

    def _continue(self, call: _Call, command: cmd.ContinueDialplan) -> None:
        channel = self._channel(call, command.channel)
        channel.continued = command
        channel.sent_on = self.manager.connects
        for future in self._hand_back(command.channel, command.outcome, command.destination):
            future.add_done_callback(lambda f: self._check_agi(call, "ContinueDialplan", f))

    def _hand_back(self, channel: str, outcome: str, destination: str | None) -> list[asyncio.Future]:
        """``SET VARIABLE`` + optional goto + ``ASYNCAGI BREAK``: the channel always leaves AGI."""
        commands = []
        if _OUTCOME.fullmatch(outcome):
            commands.append(agi.set_variable(CONSENT_VARIABLE, outcome))
        else:
            log.error("refusing outcome %r (not a fixed word); channel continues with CALLGUARD_CONSENT "
                      "unset", outcome)
        if destination:
            try:
                commands.extend(agi.goto_commands(destination))
            except UnsafeAgiArgument as exc:
                log.error("decline destination ignored: %s; the channel continues in its dialplan", exc)
        commands.append(agi.BREAK)
        return [self._agi(channel, text) for text in commands]

    # -- wire helpers ----------------------------------------------------------------------

    def _send(self, action: dict[str, str]) -> asyncio.Future:
        try:
            return self.manager.send_action(action)
        except (UnsafeHeaderValue, AmiError) as exc:
            future = asyncio.get_running_loop().create_future()
            future.set_exception(exc)
            return future

    def _agi(self, channel: str, text: str, exec_timeout: float | None = None, expected: float = 0.0
             ) -> asyncio.Future:
        call = self._by_channel.get(channel)
        state = call.channels.get(channel) if call is not None else None
        if state is not None:
            state.guard_until = max(state.guard_until, asyncio.get_running_loop().time() + expected + GUARD_SLACK_S)
        try:
            return self.manager.send_agi_command(channel, text, exec_timeout=exec_timeout)
        except (UnsafeHeaderValue, AmiError) as exc:
            future = asyncio.get_running_loop().create_future()
            future.set_exception(exc)
            return future

    def _response(self, call: _Call, command: str, future: asyncio.Future) -> AmiMessage | None:
        """Report a failed action as ``CommandFailed``; return the response when it succeeded."""
        exc = future.exception()
        if exc is not None:
            self._feed(call, ev.CommandFailed(self._now(), command, _reason(exc)))
            return None
        response: AmiMessage = future.result()
        if not response.ok:
            self._feed(call, ev.CommandFailed(response.at or self._now(), command,
                                              response.message or "rejected by Asterisk"))
            return None
        return response

    def _check_agi(self, call: _Call, command: str, future: asyncio.Future) -> None:
        """Report an AGI command that failed while it still mattered."""
        exc = future.exception()
        if exc is not None:
            if not isinstance(exc, ConnectionLost):  # lost: resync re-sends it
                self._feed(call, ev.CommandFailed(self._now(), command, _reason(exc)))
            return
        result: AgiResult = future.result()
        if result.ok or result.hangup:
            return
        if result.code == 0 and (call.call_id not in self.calls or result.error == "channel left AsyncAGI"):
            return  # the channel hung up or already left AGI: nothing is waiting for this
        self._feed(call, ev.CommandFailed(result.at or self._now(), command, result.error or result.raw.strip()))

    def _after_grace(self, call: _Call, channel_name: str, reason: str) -> None:
        """``result=-1`` usually means a hangup whose Hangup event follows; wait a moment for it."""
        channel = call.channels.get(channel_name)
        loop = asyncio.get_running_loop()

        def check() -> None:
            if channel_name in self._by_channel:
                self._feed(call, ev.PromptFailed(self._now(), channel_name, reason))

        handle = loop.call_later(HANGUP_GRACE_S, check)
        if channel is not None:
            channel.hangup_check = handle

    def _now(self) -> float:
        return self.clock()

    def _feed(self, call: _Call, event: ev.Event) -> None:
        if self.engine is not None:
            self.engine.feed(call.call_id, event)

    def _feed_soon(self, call: _Call, event: ev.Event) -> None:
        """Feed from outside the engine's own dispatch (never re-enter ``feed``)."""
        asyncio.get_running_loop().call_soon(self._feed, call, event)

    def _ledger(self, call: _Call, kind: str, **data: Any) -> None:
        if self.engine is not None:
            now = self._now()
            self.engine.ledger.append(cmd.LedgerEntry(call.call_id, kind, now, data), now)

    def _channel(self, call: _Call, name: str, role: str = "joiner") -> _Channel:
        channel = call.channels.get(name)
        if channel is None:
            channel = call.channels[name] = _Channel(name, role)
            self._by_channel[name] = call
        return channel

    def _guard(self, handler: Callable[[AmiMessage], None]) -> Callable[[AmiManager, AmiMessage], None]:
        def run(_manager: AmiManager, msg: AmiMessage) -> None:
            try:
                handler(msg)
            except Exception:  # one bad event must not stop the listener
                log.exception("failed to handle %s", msg.get("Event"))
        run.__name__ = handler.__name__
        return run

    # -- AMI events -------------------------------------------------------------------------

    def _on_agi_start(self, msg: AmiMessage) -> None:
        # Only the channel name is taken from the event (it precedes every
        # caller-controlled header, so a cut frame still names the real
        # channel); its call and context are read back from Asterisk before
        # anything happens, so a forged AsyncAGIStart can neither attach a
        # channel to somebody else's call nor invent a call.  The caller's
        # own number and name come from the URL-encoded Env when it arrived.
        name = _channel_of(msg)
        if not name or name in self._probing:
            return
        raw_env = msg.get("Env")
        env = agi.parse_env(raw_env) if raw_env is not None and "\n" not in raw_env else {}
        self._probing[name] = False
        self._spawn(self._identify_parked(msg.at, name, env, raw_env is not None))

    async def _identify_parked(self, at: float, name: str, env: dict[str, str], had_env: bool,
                               read_caller: bool = False) -> None:
        try:
            facts = await self.prober.facts(name, [LINKEDID, CONTEXT, CONFERENCE_VARIABLE]
                                            + ([CALLER_NUMBER] if read_caller else []))
        finally:
            hung_up = self._probing.pop(name, False)
        if facts is None or hung_up:
            log.warning("AsyncAGIStart for %s, which Asterisk does not know (forged, or it hung up): ignored",
                        name)
            return
        number, caller_name = env.get("agi_callerid"), env.get("agi_calleridname")
        if read_caller:  # found parked by a resync: no Env to read the caller from
            number = facts.get(CALLER_NUMBER) or None
        if not had_env:
            # Asterisk's AsyncAGIStart was cut by CR/LF in the caller ID: whatever
            # followed it in the frame was written by the caller.
            log.warning("caller ID on %s holds CR/LF (it broke the AMI event); treating the number as "
                        "unknown", name)
            number = caller_name = None
        self._agi_parked(at, name, facts.linkedid or name, "", facts.context, number, caller_name,
                         env.get("agi_arg_1", ""), unreadable_caller=not had_env,
                         room=facts.get(CONFERENCE_VARIABLE))

    def _agi_parked(self, at: float, name: str, linkedid: str, uniqueid: str, context: str,
                    number: str | None, caller_name: str | None, callee: str = "",
                    unreadable_caller: bool = False, room: str = "") -> None:
        """A channel waits in ``AGI(agi:async)``: a new call, a joiner, or one to release."""
        if not name:
            return
        if context == PAYMENT_CONTEXT:
            return  # callguard's payment prompt player (adapters/asterisk/payments.py)
        if not context.startswith(CONTEXT_PREFIX):
            # Another application's AsyncAGI channel (sites use AGI(agi:async)
            # for other things too): not ours to answer or release.
            log.debug("ignoring AsyncAGI channel %s in context %r", name, context)
            return
        number = None if number in (None, "", "<unknown>") else number
        caller_name = None if caller_name in (None, "", "<unknown>") else caller_name
        existing = self._by_linkedid.get(linkedid)
        if existing is None and context == self.join_context and room:
            existing = self._rooms.get(room)  # a guest on its way into the recorded call's conference
        if existing is not None and name in existing.channels and existing.channels[name].in_agi:
            return  # already ours (a resync saw it again)
        if existing is not None and existing.controlled == name and self._alive(existing):
            # Our channel entered AGI(agi:async) again (e.g. transferred back
            # into the IVR): its decision stands; send it straight on.
            previous = existing.channels[name].continued
            existing.channels[name].in_agi = True
            self._release(name, previous.outcome if previous else "not-recorded")
            return
        if existing is not None and existing.controlled != name and self._alive(existing):
            channel = self._channel(existing, name, "joiner")
            channel.in_agi = channel.announced = True
            channel.guard_until = asyncio.get_running_loop().time() + GUARD_SLACK_S
            self.guard_parked([channel])
            self._feed(existing, ev.PartyJoined(at, ev.Party(name, number, caller_name, "joiner"), True))
            return
        if context == self.join_context:
            # A joiner for a call we do not control (it started while we were
            # down, or was never recorded): let it through at once.
            self._release(name, "not-recorded")
            return
        call_id = linkedid if linkedid not in self.calls and not self._finished(linkedid) else f"{linkedid}+{uniqueid}"
        call = _Call(call_id, linkedid, name)
        controlled = self._channel(call, name, "caller")
        controlled.in_agi = controlled.announced = True
        controlled.guard_until = asyncio.get_running_loop().time() + GUARD_SLACK_S
        self.calls[call_id] = call
        self._by_linkedid[linkedid] = call
        parties = [ev.Party(name, number, caller_name, "caller")]
        if callee:
            parties.append(ev.Party("", callee, None, "callee"))
        self.guard_parked([controlled])
        # The mark a later listener process adopts the call by (adoption.py).
        self._send({"Action": "Setvar", "Channel": name, "Variable": CALL_VARIABLE,
                    "Value": call_id}).add_done_callback(_ignore)
        self._feed(call, ev.CallOffered(at, call_id, name, tuple(parties)))
        if self.engine is not None and self.engine.session(call_id) is None:
            self._forget(call)
            self._release(name, "error")
        elif unreadable_caller:
            self._ledger(call, "caller-id-unreadable", channel=name,
                         detail="the caller ID held CR/LF and broke Asterisk's AMI event; the number counts "
                                "as unknown (strictest rule)")

    def _alive(self, call: _Call) -> bool:
        return self.engine is not None and self.engine.session(call.call_id) is not None

    def _finished(self, call_id: str) -> bool:
        return call_id in self._ended

    def _release(self, channel: str, outcome: str) -> None:
        self.released += 1
        for future in self._hand_back(channel, outcome, None):
            future.add_done_callback(lambda f: f.exception())

    def _on_agi_end(self, msg: AmiMessage) -> None:
        name = _channel_of(msg)
        protocol = self.manager.protocol
        if self._by_channel.get(name) is not None or (protocol is not None and protocol.agi_pending_on(name)):
            self._spawn(self._left_agi(name))

    async def _left_agi(self, name: str) -> None:
        """A channel left AsyncAGI: believed once Asterisk says it is no longer in ``AGI``.

        A forged AsyncAGIEnd would otherwise fail a neighbour's notice (its
        gather resolved as "channel left AsyncAGI") and end their consent flow.
        """
        facts = await self.prober.facts(name, [APPNAME])
        if facts is not None and facts.get(APPNAME) == "AGI":
            log.warning("AsyncAGIEnd for %s, which Asterisk says is still in AGI: ignored (forged)", name[:80])
            return
        if self.manager.protocol is not None:
            self.manager.protocol.agi_channel_gone(name, self._now())
        call = self._by_channel.get(name)
        if call is not None and name in call.channels:
            channel = call.channels[name]
            channel.in_agi = False
            channel.collect = None
            channel.continued = None

    def _on_agi_exec_start(self, msg: AmiMessage) -> None:
        name = _channel_of(msg)
        call = self._by_channel.get(name)
        if call is None:
            return
        channel = call.channels[name]
        if channel.notice_command and msg.get("Command") == channel.notice_command:
            channel.notice_command = ""
            self._feed(call, ev.NoticeStarted(msg.at, name))

    def _on_mixmonitor_start(self, msg: AmiMessage) -> None:
        call = self._by_channel.get(_channel_of(msg))
        if call is None or call.controlled != _channel_of(msg):
            return
        at = msg.at

        def confirmed() -> None:
            self._feed(call, ev.RecordingStarted(at, call.mixmon_id or call.recording_file))

        # The response carrying MixMonitorID usually arrived in the same read;
        # its callback is already queued, so let it run first.
        asyncio.get_running_loop().call_soon(confirmed)

    def _on_mixmonitor_stop(self, msg: AmiMessage) -> None:
        call = self._by_channel.get(_channel_of(msg))
        if call is not None and call.controlled == _channel_of(msg):
            self._spawn(self._recording_stopped(call, msg.at))

    async def _recording_stopped(self, call: _Call, at: float) -> None:
        """MixMonitorStop is believed once the recording is gone from the channel.

        A forged stop would make us stop supervising a recording that still
        runs (nobody left to mute it for a payment).
        """
        if await self._recording_running(call):
            log.warning("call %s: MixMonitorStop for a recording Asterisk says still runs: ignored (forged)",
                        call.call_id)
            return
        call.stop_pending = False
        if call.call_id in self.calls:
            self._feed(call, ev.RecordingStopped(at))

    async def _recording_running(self, call: _Call) -> bool:
        """Read back ``MIXMONITOR(<id>,filename)``: empty once that MixMonitor ended."""
        if not call.mixmon_id:
            return False
        facts = await self.prober.facts(call.controlled, [f"MIXMONITOR({call.mixmon_id},filename)"])
        return facts is not None and bool(facts.get(f"MIXMONITOR({call.mixmon_id},filename)"))

    def _on_mixmonitor_mute(self, msg: AmiMessage) -> None:
        call = self._by_channel.get(_channel_of(msg))
        if call is None or call.controlled != _channel_of(msg):
            return
        if msg.get("Direction", "both").lower() != "both":
            return  # a partial mute (not ours) does not silence the recording
        state = msg.get("State")
        if state not in ("0", "1"):
            return  # cut by a CR/LF caller ID (or forged): says nothing; the confirmation timer decides
        muted = state == "1"
        if muted:
            self._mute_confirmed(call, "event")
        self._feed(call, ev.RecordingMuted(msg.at) if muted else ev.RecordingUnmuted(msg.at))

    def _mute_confirmed(self, call: _Call, by: str) -> None:
        """The payment guard's CALLGUARD_MUTED=1 needs both our action's Success and the PBX's event."""
        call.mute_confirmations.add(by)
        if call.mute_confirmations >= {"response", "event"} and call.mute_wanted_gen == call.mute_gen:
            self._mark_silent(call, True)

    def _on_user_event(self, msg: AmiMessage) -> None:
        # A caller's CR/LF caller ID can add header lines to a genuine event
        # (a repeated header arrives joined by a newline), so every reading
        # of the event is considered: the safe direction (pause, payment
        # start) acts if any reading asks for it, a resume only once
        # Asterisk itself confirms it (trust.check_signal).
        if USER_EVENT not in _lines(msg.get("UserEvent", "")):
            return
        claimed = _channel_of(msg)
        actions = _lines(msg.get("Action", ""))
        found = [self._by_linkedid.get(x) for x in _lines(msg.get("Linkedid", ""), lower=False)]
        found.append(self._by_channel.get(claimed))
        calls = list({c.call_id: c for c in found if c is not None}.values())
        if not calls:
            log.info("CallGuard %s for Linkedid %s: not a call this listener controls",
                     "/".join(actions)[:40], msg.get("Linkedid", "?")[:40])
            return
        tightening = [a for a in actions if a in _SIGNALS and a not in LOOSENING]
        loosening = [a for a in actions if a in LOOSENING]
        if not tightening and not loosening:
            if not set(actions) <= CARD_ACTIONS:  # card payments: adapters/asterisk/payments.py
                log.warning("unknown CallGuard action %r from %s", "/".join(actions)[:40], claimed[:80])
            return
        source = ev.Source.parse(_lines(msg.get("Source", ""))[-1] if msg.get("Source") else None)
        for call in calls:
            for action in tightening:
                call.tightened += 1
                self._feed(call, _SIGNALS[action](msg.at, source))  # type: ignore[call-arg]
        if tightening or len(loosening) != 1 or len(actions) != 1:
            if loosening:
                log.warning("CallGuard event from %s says %r: ignoring its resume (ambiguous)", claimed[:80],
                            "/".join(actions)[:60])
            return
        for call in calls:
            event = _SIGNALS[loosening[0]](msg.at, source)  # type: ignore[call-arg]
            self._spawn(self._confirm_signal(call, loosening[0], claimed, event, call.tightened))

    async def _confirm_signal(self, call: _Call, action: str, claimed: str, event: ev.Event, tightened: int) -> None:
        facts = await self.prober.facts(claimed, variables_for_signal(claimed, call.controlled)) if claimed else None
        signal, why = check_signal(action, claimed, call.controlled, call.linkedid, facts,
                                   call.signal_seq.get(claimed, 0), self.staff)
        if signal is not None and call.tightened != tightened:
            signal, why = None, "a pause or payment arrived while it was being confirmed"
        if signal is None:
            self.rejected += 1
            log.warning("call %s: %s claimed by %s not confirmed by Asterisk (%s): ignored", call.call_id, action,
                        claimed[:80] or "?", why)
            return
        call.signal_seq[claimed] = signal.seq
        if call.call_id in self.calls:
            self._feed(call, event)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._checks.add(task)
        task.add_done_callback(self._check_done)

    def _check_done(self, task: asyncio.Task) -> None:
        self._checks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("read-back failed", exc_info=task.exception())

    def _on_bridge_enter(self, msg: AmiMessage) -> None:
        # BridgeUniqueid and Channel precede every caller-controlled header;
        # Linkedid does not, so a call found only through it is confirmed by
        # reading the channel's CHANNEL(linkedid) back before anything acts.
        name = _channel_of(msg)
        bridge = _first(msg.get("BridgeUniqueid", ""))
        if not name or is_player(name):
            return  # callguard's own payment prompt player (adapters/asterisk/payments.py)
        if bridge:
            self._members.setdefault(bridge, set()).add(name)
            self._members.move_to_end(bridge)
            while len(self._members) > MAX_BRIDGES:
                self._members.popitem(last=False)
        own = self._by_channel.get(name)
        if own is not None and own.controlled == name:
            self._set_bridge(own, bridge or None)
            # Everyone already in the bridge the recorded channel entered is on the
            # call now (a blind transfer's target, a conference's members).
            for member in sorted(self._members.get(bridge, ())):
                if member != name and member not in own.channels and not is_player(member):
                    self._identify_joiner(own, member, msg.at, by_bridge=True)
            return
        by_bridge = self._by_bridge.get(bridge) if bridge else None
        if by_bridge is not None:
            if name not in by_bridge.channels:
                self._identify_joiner(by_bridge, name, msg.at, by_bridge=True)
            return
        for linkedid in _lines(msg.get("Linkedid", ""), lower=False):
            call = self._by_linkedid.get(linkedid)
            if call is not None and name not in call.channels:
                self._identify_joiner(call, name, msg.at, by_bridge=False)

    def _on_confbridge_join(self, msg: AmiMessage) -> None:
        """A ConfBridge member: a bridge member like any other; the room is remembered for joiners.

        ``Conference``, ``BridgeUniqueid`` and ``Channel`` come before any
        caller-controlled header.  When the recorded channel is in a room,
        a guest who passes ``callguard-join`` with ``CALLGUARD_CONFERENCE=<room>``
        is announced on that call (dialplan/README.md).
        """
        name, room = _channel_of(msg), _first(msg.get("Conference", ""))
        own = self._by_channel.get(name)
        if own is not None and own.controlled == name and room:
            self._rooms[room] = own
            own.room = room
        self._on_bridge_enter(msg)

    def _on_confbridge_leave(self, msg: AmiMessage) -> None:
        name, room = _channel_of(msg), _first(msg.get("Conference", ""))
        own = self._by_channel.get(name)
        if own is not None and own.controlled == name and self._rooms.get(room) is own:
            del self._rooms[room]
            own.room = ""
        self._on_bridge_leave(msg)

    def _identify_joiner(self, call: _Call, name: str, at: float, by_bridge: bool) -> None:
        """A leg entered the call's bridge without passing callguard-join: who is it?"""
        role = "agent" if not any(c.role == "agent" for c in call.channels.values()) else "joiner"
        self._channel(call, name, role)  # known from now on: a second BridgeEnter does not ask twice
        self._spawn(self._joined_unannounced(call, name, role, at, by_bridge))

    async def _joined_unannounced(self, call: _Call, name: str, role: str, at: float, by_bridge: bool) -> None:
        facts = await self.prober.facts(name, [LINKEDID, STAFF_VARIABLE, CALLER_NUMBER])
        if facts is None or (not by_bridge and facts.linkedid != call.linkedid):
            # Gone already, or a forged frame naming some other channel.
            call.channels.pop(name, None)
            if self._by_channel.get(name) is call:
                del self._by_channel[name]
            return
        staff = await self._is_staff(name, facts)
        number = facts.get(CALLER_NUMBER) or None
        log.info("call %s: %s entered the bridge (%s)", call.call_id, name, "staff" if staff else "not staff")
        if call.call_id in self.calls:
            self._feed(call, ev.PartyJoined(at, ev.Party(name, None if number == "<unknown>" else number, None,
                                                         role, staff=staff), False))

    async def _is_staff(self, name: str, facts: ChannelFacts) -> bool:
        """Staff by the PBX's own word: the channel name, the dialplan's mark, or what a Local channel leads to.

        An attended transfer puts a ``Local/<target>@<ctx>-...;1`` channel into
        the customer's bridge; the person is whoever its ``;2`` half is
        bridged to (``BRIDGEPEER``), which is where [callguard-staff] left its mark.
        """
        if self.staff.is_staff(name, facts.get(STAFF_VARIABLE)):
            return True
        if name.startswith("Local/") and name.endswith(";1"):
            half = await self.prober.facts(name[:-1] + "2", ["BRIDGEPEER"])
            peer = half.get("BRIDGEPEER").split(",")[0] if half is not None else ""
            if peer and peer != name:
                peer_facts = await self.prober.facts(peer, [STAFF_VARIABLE])
                return peer_facts is not None and self.staff.is_staff(peer, peer_facts.get(STAFF_VARIABLE))
        return False

    def _on_bridge_leave(self, msg: AmiMessage) -> None:
        name = _channel_of(msg)
        bridge = _first(msg.get("BridgeUniqueid", ""))
        members = self._members.get(bridge)
        if members is not None:
            members.discard(name)
            if not members:
                del self._members[bridge]
        call = self._by_channel.get(name)
        if call is not None and name == call.controlled and call.bridge == bridge:
            self._set_bridge(call, None)

    def _set_bridge(self, call: _Call, bridge: str | None) -> None:
        if call.bridge is not None and self._by_bridge.get(call.bridge) is call:
            del self._by_bridge[call.bridge]
        call.bridge = bridge
        if bridge is not None:
            self._by_bridge[bridge] = call

    def _on_hangup(self, msg: AmiMessage) -> None:
        name = _channel_of(msg)
        if name in self._probing:
            self._probing[name] = True
        if self._by_channel.get(name) is not None:
            self._spawn(self._hung_up(name, msg))

    async def _hung_up(self, name: str, msg: AmiMessage) -> None:
        """A Hangup is believed once Asterisk no longer knows the channel.

        A forged one would end a neighbour's supervision (nobody to mute its
        payment) or let a party "leave" whose consent kept the recording silent.
        """
        if await self.prober.exists(name):
            log.warning("Hangup for %s, which Asterisk says is still up: ignored (forged)", name[:80])
            return
        call = self._by_channel.get(name)
        if call is None:
            return
        self._gone[name] = None
        while len(self._gone) > 4096:
            self._gone.popitem(last=False)
        channel = call.channels.pop(name, None)
        self._by_channel.pop(name, None)
        if channel is not None and channel.hangup_check is not None:
            channel.hangup_check.cancel()
        cause = "normal" if msg.get("Cause") == "16" else (msg.get("Cause-txt") or f"cause {msg.get('Cause', '?')}")
        self._feed(call, ev.HungUp(msg.at, cause, name))
        if name == call.controlled:
            self._forget(call)

    def _forget(self, call: _Call) -> None:
        self.calls.pop(call.call_id, None)
        self._ended[call.call_id] = None
        while len(self._ended) > 4096:
            self._ended.popitem(last=False)
        if self._by_linkedid.get(call.linkedid) is call:
            del self._by_linkedid[call.linkedid]
        if call.room and self._rooms.get(call.room) is call:
            del self._rooms[call.room]
        if call.bridge is not None and self._by_bridge.get(call.bridge) is call:
            del self._by_bridge[call.bridge]
        for name in list(call.channels):
            if self._by_channel.get(name) is call:
                del self._by_channel[name]
        for channel in call.channels.values():
            if channel.hangup_check is not None:
                channel.hangup_check.cancel()

    # -- heartbeat and resynchronisation -------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        while True:
            if self.manager.connected:
                self.guard_parked()
                await self.beat()
                self._ticks += 1
                if self._ticks % FALLBACK_DRAIN_TICKS == 0 and not self._draining.locked():
                    try:
                        await self.drain_fallbacks()
                    except (AmiError, OSError) as exc:
                        log.warning("fallback notes not read: %s", _reason(exc))
            await asyncio.sleep(self.config.heartbeat_interval_s)

    def guard_parked(self, channels: list[_Channel] | None = None) -> None:
        """Push back the dialplan's ``TIMEOUT(absolute)`` on the channels we are working on.

        The dialplan arms it before ``AGI(agi:async)``; while this listener
        is alive and the channel's current step is within its expected
        time, the guard never fires.  If the listener dies or stalls, or a
        step overruns, it fires within ``[asterisk] agi_guard_s`` and the
        dialplan's "T" extension gives the caller the fallback notice and
        continues unrecorded (no dead air).
        """
        now = asyncio.get_running_loop().time()
        guard = f"{self.guard_s:g}"
        if channels is None:
            channels = [c for call in self.calls.values() for c in call.channels.values() if c.in_agi]
        for channel in channels:
            if channel.in_agi and now < channel.guard_until:
                self._send({"Action": "Setvar", "Channel": channel.name, "Variable": GUARD_VARIABLE,
                            "Value": guard}).add_done_callback(_ignore)

    async def beat(self) -> bool:
        """Refresh the heartbeat global the dialplan checks before ``AGI(agi:async)``."""
        try:
            response = await self.manager.send_action({
                "Action": "Setvar", "Variable": self.config.heartbeat_variable, "Value": str(int(self.clock()))})
        except (AmiError, OSError) as exc:
            log.warning("heartbeat not set: %s", _reason(exc))
            return False
        if not response.ok:
            log.error("heartbeat Setvar refused: %s (does the AMI user have write=call?)", response.message)
            return False
        self.heartbeats += 1
        return True

    def _on_login(self, _manager: AmiManager) -> None:
        # A resync still running belongs to a connection that is gone: start over.
        if self._resyncing is not None and not self._resyncing.done():
            self._resyncing.cancel()
        self._resyncing = asyncio.get_running_loop().create_task(self._after_login())

    async def _after_login(self) -> None:
        await self.beat()
        try:
            await self.resync()
            await self.drain_fallbacks()
        except (AmiError, OSError) as exc:
            log.warning("resynchronisation incomplete (%s); it runs again after the next login", _reason(exc))

    async def drain_fallbacks(self) -> int:
        """Move the dialplan's fallback notes (AstDB ``callguard-fallback``) into the ledger.

        The dialplan writes one line per call that went on without us
        (heartbeat stale, AGI guard fired, payment mute not confirmed):
        ``<epoch>:<linkedid>:<reason>``.  Each becomes one
        ``dialplan-fallback`` entry in that call's timeline, then is deleted,
        so calls that reached the dialplan while we were dead or stalled are
        in the ledger too, saying why.  Returns how many were moved.
        """
        async with self._draining:
            items = await self.manager.send_action({"Action": "DBGetTree", "Family": FALLBACK_FAMILY},
                                                   as_list=True)
            moved = 0
            for item in items[1:]:
                key, value = item.get("Key", ""), item.get("Val", "")
                m = _FALLBACK_LINE.fullmatch(value)
                uniqueid = key.rsplit("/", 1)[-1]
                if item.get("Event") != "DBGetTreeResponse" or not key.startswith(f"/{FALLBACK_FAMILY}/"):
                    continue
                if m is None:
                    log.warning("AstDB %s holds %r, not a callguard fallback note; left alone", key[:80],
                                value[:80])
                    continue
                at, linkedid, reason = float(m.group(1)), m.group(2), m.group(3)
                call = self._by_linkedid.get(linkedid)
                call_id = call.call_id if call is not None else linkedid
                log.warning("call %s went on without the listener (%s); noted in the ledger", call_id, reason)
                if self.engine is not None:
                    self.engine.ledger.append(cmd.LedgerEntry(call_id, "dialplan-fallback", at, {
                        "reason": reason, "channel_uniqueid": uniqueid, "confirmed_by": "pbx",
                        "detail": _FALLBACK_REASONS.get(reason, "see the dialplan's callguard-fallback")}),
                        self._now())
                moved += 1
                await self.manager.send_action({"Action": "DBDel", "Family": FALLBACK_FAMILY, "Key": uniqueid})
            return moved

    async def resync(self) -> None:
        """Bring our view and the PBX back in line after (re)connecting."""
        self.resyncs += 1
        # The list is a snapshot taken when Asterisk gets the action, but events
        # keep arriving (and are handled) before this coroutine resumes: only
        # judge what we knew when we asked, and never revive what hung up since.
        known = {call_id: set(call.channels) for call_id, call in self.calls.items()}
        items = await self.manager.send_action({"Action": "CoreShowChannels"}, as_list=True,
                                               timeout=max(self.manager.action_timeout, 5.0))
        live = {m.get("Channel", ""): m for m in items[1:]
                if m.get("Event") == "CoreShowChannel" and m.get("Channel") not in self._gone}
        now = self._now()
        for call_id, names in known.items():
            call = self.calls.get(call_id)
            if call is None:
                continue
            if call.controlled not in live and call.controlled in names:
                log.warning("call %s: channel %s ended while the AMI link was down", call.call_id, call.controlled)
                for name in [n for n in call.channels if n != call.controlled]:
                    call.channels.pop(name, None)
                    self._by_channel.pop(name, None)
                self._feed(call, ev.HungUp(now, "ended while disconnected", call.controlled))
                self._forget(call)
                continue
            for name in [n for n in call.channels if n != call.controlled and n in names and n not in live]:
                call.channels.pop(name, None)
                self._by_channel.pop(name, None)
                self._feed(call, ev.HungUp(now, "left while disconnected", name))
        strangers = []
        for name, item in live.items():
            parked = item.get("Application") == "AGI" and item.get("ApplicationData", "").startswith("agi:async")
            call = self._by_channel.get(name)
            if call is not None and parked:
                await self._take_over(call, call.channels[name])
            elif parked and name not in self._probing:
                self._probing[name] = False
                self._spawn(self._identify_parked(now, name, {}, True, read_caller=True))
            elif call is None and not parked and not is_player(name):
                strangers.append(name)
        # Calls an earlier process decided (it died, or we are taking over): adopt them first,
        # so the legs in their bridges are known parties, not strangers.
        adopted = await find_live_calls(self.prober, strangers, set(self.calls) | set(self._ended))
        for found in adopted:
            self._adopt(now, found, live)
        for name in strangers:
            if name not in self._by_channel:
                self._unseen_party(now, name, live[name])
        for call in list(self.calls.values()):
            await self._reassert(call)
        if not self._reconciled:
            self._reconciled = True
            await self._close_lost_calls()
        if self.payments is not None:
            self.payments.link_restored()

    def _adopt(self, now: float, found: LiveCall, live: dict[str, AmiMessage]) -> None:
        """Control a call an earlier listener process decided (see adoption.py)."""
        if found.call_id in self.calls:
            return
        call = _Call(found.call_id, found.linkedid, found.channel)
        call.mixmon_id, call.recording_wanted = found.mixmon_id, found.recording
        self._channel(call, found.channel, "caller")
        self.calls[call.call_id] = call
        self._by_linkedid[call.linkedid] = call
        bridge = _first(live[found.channel].get("BridgeId", ""))
        members = [n for n, item in live.items()
                   if bridge and n != found.channel and _first(item.get("BridgeId", "")) == bridge]
        if bridge:
            self._set_bridge(call, bridge)
            self._members[bridge] = {found.channel, *members}
        for name in members:  # on the call before we came: parties the ledger already has
            self._channel(call, name, "joiner")
        log.warning("call %s: adopted from an earlier listener process (%s%s%s)", call.call_id,
                    "recording" if found.recording else "not recorded", ", paused" if found.paused else "",
                    ", payment" if found.payment else "")
        self.adopted += 1
        self._feed(call, ev.CallAdopted(now, call.call_id, found.channel,
                                        (ev.Party(found.channel, found.number, None, "caller"),),
                                        found.recording, "", found.decision, found.paused, found.payment,
                                        found.muted))

    async def _close_lost_calls(self) -> None:
        """Calls the ledger still has in progress that no PBX channel carries any more: lost with the
        process before us.  Each gets one ``listener-lost`` entry, so no call stays open forever."""
        engine = self.engine
        if engine is not None:
            await close_lost_calls(engine.ledger, lambda: set(self.calls) | set(engine.sessions), self._started_at,
                                   self._now())

    def _unseen_party(self, now: float, name: str, item: AmiMessage) -> None:
        """A channel of one of our calls, bridged while we were away: identified like any joiner."""
        bridge = _first(item.get("BridgeId", ""))
        call = self._by_bridge.get(bridge) if bridge else None
        by_bridge = call is not None
        call = call or self._by_linkedid.get(_first(item.get("Linkedid", "")))
        if call is None or not bridge or name == call.controlled or name in call.channels or is_player(name):
            return
        self._members.setdefault(bridge, set()).add(name)
        self._identify_joiner(call, name, now, by_bridge=by_bridge)

    async def _take_over(self, call: _Call, channel: _Channel) -> None:
        """A channel of ours is still parked in AsyncAGI: re-send what was lost."""
        channel.in_agi = True
        if channel.sent_on == self.manager.connects and (channel.continued or channel.collect):
            # Sent on this connection (the call arrived while we resynchronised):
            # it is on its way; sending it again would play the notice twice.
            return
        if channel.continued is not None:
            command = channel.continued
            self._hand_back(channel.name, command.outcome, command.destination)
        elif channel.collect is not None:
            command = channel.collect
            log.info("call %s: replaying the consent gather on %s after a reconnect", call.call_id, channel.name)
            self._play_and_collect(call, command)
        elif not self._alive(call):
            self._release(channel.name, "error")

    async def _reassert(self, call: _Call) -> None:
        """Make the PBX match what the call should be: stopped, muted, or left alone."""
        session = self.engine.session(call.call_id) if self.engine is not None else None
        if call.stop_pending:
            self._send_stop(call, call.controlled)
            return
        if session is None or not session.recording:
            return
        if call.mixmon_id and not await self._recording_running(call):
            # Stopped while we were away (the payment guard, a hangup handler, an admin).
            log.warning("call %s: the recording stopped while the AMI link was down", call.call_id)
            self._feed(call, ev.RecordingStopped(self._now()))
        await self._apply_dialplan_signals(call)
        if not session.recording:
            return
        if session.recording and call.mixmon_id == "" and session.state is State.STARTING:
            value = await self._getvar(call.controlled, MIXMON_ID_VARIABLE)
            if value:
                call.mixmon_id = value
                self._feed(call, ev.RecordingStarted(self._now(), value))
        if session.desired_muted:
            log.info("call %s: re-asserting mute after reconnect", call.call_id)
            self._set_mute(call, cmd.MuteRecording(call.controlled))
        elif session.state is State.UNMUTING:
            self._set_mute(call, cmd.UnmuteRecording(call.controlled))

    async def _apply_dialplan_signals(self, call: _Call) -> None:
        """Signals sent while we were away are lost events, but the dialplan left them on the channel."""
        session = self.engine.session(call.call_id) if self.engine is not None else None
        if session is None:
            return
        payment = await self._getvar(call.controlled, PAYMENT_VARIABLE)
        if payment == "1" and not session.payment_active:
            log.warning("call %s: a payment started while disconnected; muting now", call.call_id)
            self._feed(call, ev.PaymentStarted(self._now(), ev.Source.IVR))
        paused = await self._getvar(call.controlled, PAUSE_VARIABLE)
        if paused == "1" and session.flags.paused_by is None:
            log.warning("call %s: a pause was requested while disconnected; muting now", call.call_id)
            self._feed(call, ev.PauseRequested(self._now(), ev.Source.HOTKEY))

    async def _getvar(self, channel: str, variable: str) -> str:
        try:
            response = await self.manager.send_action({"Action": "Getvar", "Channel": channel, "Variable": variable})
        except (AmiError, OSError):
            return ""
        return response.get("Value", "") if response.ok else ""


def _lines(value: str, lower: bool = True) -> list[str]:
    """Every reading of a header value (a repeated header arrives joined by newlines)."""
    return [v.strip().lower() if lower else v.strip() for v in value.split("\n") if v.strip()]


def _first(value: str) -> str:
    """The first reading of a header Asterisk writes before any caller-controlled one."""
    return value.split("\n", 1)[0]


def _channel_of(msg: AmiMessage) -> str:
    """The event's ``Channel``: its first value only.

    Asterisk writes ``Channel:`` before any caller-controlled header, so a
    second ``Channel:`` (joined after a newline) was injected by a caller.
    """
    return msg.get("Channel", "").split("\n", 1)[0]


def _ignore(future: asyncio.Future) -> None:
    """Retrieve a fire-and-forget action's outcome (a gone channel is no error here)."""
    if not future.cancelled():
        future.exception()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ActionTimeout):
        return f"no answer from Asterisk ({exc})"
    return str(exc) or type(exc).__name__


_COMMANDS: dict[type, Callable[[AsteriskListener, _Call, Any], None]] = {
    cmd.PlayAndCollect: AsteriskListener._play_and_collect,
    cmd.PlayPrompt: AsteriskListener._play_prompt,
    cmd.StartRecording: AsteriskListener._start_recording,
    cmd.MuteRecording: AsteriskListener._set_mute,
    cmd.UnmuteRecording: AsteriskListener._set_mute,
    cmd.StopRecording: AsteriskListener._stop_recording,
    cmd.ContinueDialplan: AsteriskListener._continue,
}

__all__ = ["AsteriskListener", "CONSENT_VARIABLE", "JOIN_CONTEXT", "MUTED_VARIABLE", "PAUSE_VARIABLE",
           "PAYMENT_VARIABLE",
           "default_prompt_file"]
