"""The AMI connection as an asyncio Protocol: framing, action matching, timeouts.

What it adds over panoramisk 1.4's ``AMIProtocol`` (and why):

* Bytes are framed by :class:`~callguard.adapters.asterisk.wire.AmiParser`
  (UTF-8 safe across reads, unwanted events skipped before parsing).
* Every action has a deadline: a PBX that never answers turns into
  :class:`ActionTimeout`, not a future that waits forever.
* ``Action: AGI`` resolves on the ``AsyncAGIExec`` event that carries our
  ``CommandId`` (panoramisk waits for the pre-Asterisk-12 ``AsyncAGI`` /
  ``SubEvent: Exec`` and never resolves on Asterisk 22).  A channel that
  leaves AsyncAGI (``AsyncAGIEnd``) resolves its outstanding commands.
* Responses are matched by ``ActionID`` only; no action-specific guessing
  (panoramisk's ``Originate`` without ``Async`` raised ``KeyError`` inside
  ``data_received``).  List actions (``EventList: start``) collect their
  events until the ``...Complete`` event.
* A lost connection fails every pending action at once with
  :class:`ConnectionLost`; nothing is silently re-sent later (a stale mute
  or hangup replayed after a reconnect could do harm — the listener
  re-asserts the state it wants instead).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
from typing import Callable, Mapping

from callguard.adapters.asterisk.agi import AgiResult, parse_result
from callguard.adapters.asterisk.wire import AmiMessage, AmiParser, AmiProtocolError, encode_action

log = logging.getLogger("callguard.asterisk.ami")


class AmiError(Exception):
    """Base for AMI transport problems."""


class ActionTimeout(AmiError, TimeoutError):
    """The PBX did not answer an action within its deadline."""


class ConnectionLost(AmiError, ConnectionError):
    """The AMI connection closed before the action was answered."""


class NotConnected(ConnectionLost):
    """There is no AMI connection to send on right now."""


class _Pending:
    __slots__ = ("future", "timer", "as_list", "items", "command_id", "channel", "exec_timeout", "name",
                 "timeout")

    def __init__(self, future: asyncio.Future, name: str, as_list: bool | None = None,
                 command_id: str | None = None, channel: str = "", exec_timeout: float | None = None):
        self.future = future
        self.name = name
        self.timer: asyncio.TimerHandle | None = None
        self.as_list = as_list
        self.items: list[AmiMessage] | None = None
        self.command_id = command_id
        self.channel = channel
        self.exec_timeout = exec_timeout
        self.timeout = 0.0


_ids = itertools.count(1)
#: Random per process: a caller who can inject frames into the event stream
#: (a CR/LF caller ID) must not be able to guess an id and answer for Asterisk.
_ID_PREFIX = f"cg{secrets.token_hex(8)}"


def new_id(kind: str = "a") -> str:
    """A process-unique, unguessable id for ActionID/CommandID."""
    return f"{_ID_PREFIX}-{kind}{next(_ids)}"


#: Events callguard never needs: skipped by name before parsing.
NOISE_EVENTS = frozenset({
    "VarSet", "Newexten", "DeviceStateChange", "NewCallerid", "NewConnectedLine", "Newstate",
    "LocalBridge", "LocalOptimizationBegin", "LocalOptimizationEnd", "DialBegin", "DialEnd",
    "DialState", "AGIExecEnd", "HangupRequest", "SoftHangupRequest", "RTCPSent", "RTCPReceived",
    "ChannelTalkingStart", "ChannelTalkingStop", "ExtensionStatus", "PeerStatus", "ContactStatus",
    "Registry", "NewAccountCode", "HangupHandlerPush", "HangupHandlerPop", "HangupHandlerRun",
    "MusicOnHoldStart", "MusicOnHoldStop", "DTMFBegin", "DTMFEnd", "Cdr", "CEL", "SuccessfulAuth",
    "ChallengeSent", "InvalidPassword", "RequestBadFormat", "InvalidAccountID",
})


class AmiProtocol(asyncio.Protocol):
    """One AMI connection.

    ``on_event(msg)`` gets every wanted event that is not part of a list
    action's answer.  ``wanted(name_bytes)`` decides which events are
    parsed at all (default: everything except :data:`NOISE_EVENTS`).
    """

    def __init__(self, on_event: Callable[[AmiMessage], None] | None = None,
                 on_lost: Callable[[BaseException | None], None] | None = None,
                 wanted: Callable[[bytes], bool] | None = None,
                 action_timeout: float = 2.0,
                 clock: Callable[[], float] = time.time,
                 trust_agi_end: bool = True):
        self.on_event = on_event
        #: resolve a channel's queued AGI commands on its AsyncAGIEnd at once; False
        #: when the caller confirms the channel really left first (agi_channel_gone)
        self.trust_agi_end = trust_agi_end
        self.on_lost = on_lost
        self.action_timeout = action_timeout
        self.clock = clock
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.parser = AmiParser(wanted if wanted is not None else default_wanted)
        self._pending: dict[str, _Pending] = {}  # ActionID -> pending
        self._agi: dict[str, _Pending] = {}  # CommandID -> pending AGI exec
        #: channel -> its pending CommandIDs, so AsyncAGIEnd costs O(its commands), not O(all calls)
        self._agi_channels: dict[str, set[str]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self.banner: asyncio.Future[str] | None = None
        self._awaiting_banner = True
        self.bytes_in = 0
        self.bytes_out = 0

    # -- asyncio.Protocol ------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._loop = asyncio.get_running_loop()
        self.banner = self._loop.create_future()

    def data_received(self, data: bytes) -> None:
        self.bytes_in += len(data)
        try:
            messages = self.parser.feed(data)
        except AmiProtocolError as exc:
            peer = self.transport.get_extra_info("peername") if self.transport is not None else None
            where = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "the AMI peer"
            log.error("AMI connection to %s dropped: %s; reconnecting (if this repeats, check that [asterisk] "
                      "host/port point at Asterisk's manager interface)", where, exc)
            self.abort()
            return
        if self._awaiting_banner and self.parser.banner is not None:
            self._awaiting_banner = False
            if self.banner is not None and not self.banner.done():
                self.banner.set_result(self.parser.banner)
        if not messages:
            return
        now = self.clock()
        for msg in messages:
            msg.received_at = now
            if "Event" in msg:
                self._on_event_message(msg)
            elif "Response" in msg:
                self._on_response(msg)

    def eof_received(self) -> bool:
        return False  # close the transport; connection_lost follows

    def connection_lost(self, exc: BaseException | None) -> None:
        already = self.closed
        self.closed = True
        self.transport = None
        reason = ConnectionLost(f"AMI connection lost: {exc}" if exc else "AMI connection closed")
        if self.banner is not None and not self.banner.done():
            self.banner.set_exception(reason)
            self.banner.exception()  # mark retrieved: nobody may be waiting
        self._fail_all(reason)
        if not already and self.on_lost is not None:
            self.on_lost(exc)

    # -- sending -----------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self.transport is not None and not self.closed

    def write(self, headers: Mapping[str, object]) -> None:
        """Encode and write one action now (raises on unsafe headers / no connection)."""
        if self.transport is None or self.closed:
            raise NotConnected("not connected to the AMI")
        data = encode_action(headers)
        self.bytes_out += len(data)
        self.transport.write(data)

    def send_action(self, headers: Mapping[str, object], *, timeout: float | None = None,
                    as_list: bool | None = None) -> "asyncio.Future[AmiMessage | list[AmiMessage]]":
        """Send an action; the future gets the response (or response + list events).

        ``as_list=None`` collects list events only when the response says
        ``EventList: start``.  Raises :class:`UnsafeHeaderValue` at once for
        CR/LF in a header; the future fails with :class:`ActionTimeout` or
        :class:`ConnectionLost`.
        """
        loop = self._loop or asyncio.get_running_loop()
        future: asyncio.Future = loop.create_future()
        fields = dict(headers)
        action_id = str(fields.get("ActionID") or new_id())
        fields["ActionID"] = action_id
        name = str(fields.get("Action", ""))
        if not self.connected:
            future.set_exception(NotConnected(f"not connected to the AMI; {name} not sent"))
            return future
        self.write(fields)
        pending = _Pending(future, name, as_list=as_list)
        self._pending[action_id] = pending
        self._arm(pending, action_id, self.action_timeout if timeout is None else timeout, self._expire_action)
        return future

    def send_agi(self, channel: str, command: str, *, timeout: float | None = None,
                 exec_timeout: float | None = None) -> "asyncio.Future[AgiResult]":
        """Queue an AGI command on a channel parked in ``AGI(agi:async)``.

        The future resolves with the :class:`AgiResult` from the matching
        ``AsyncAGIExec``; a refused command (``Channel ... does not exist``)
        or a channel that leaves AsyncAGI first resolves with ``code == 0``
        and ``error`` set.  ``timeout`` bounds the queue acknowledgement,
        ``exec_timeout`` (default: none) the command's execution.
        """
        loop = self._loop or asyncio.get_running_loop()
        future: asyncio.Future = loop.create_future()
        command_id = new_id("c")
        action_id = new_id()
        if not self.connected:
            future.set_exception(NotConnected(f"not connected to the AMI; AGI {command.split(' ', 1)[0]} not sent"))
            return future
        self.write({"Action": "AGI", "ActionID": action_id, "Channel": channel, "Command": command,
                    "CommandID": command_id})
        pending = _Pending(future, "AGI", command_id=command_id, channel=channel, exec_timeout=exec_timeout)
        self._pending[action_id] = pending
        self._agi[command_id] = pending
        self._agi_channels.setdefault(channel, set()).add(command_id)
        self._arm(pending, action_id, self.action_timeout if timeout is None else timeout, self._expire_action)
        return future

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.abort()

    # -- receiving -----------------------------------------------------------------

    def _on_response(self, msg: AmiMessage) -> None:
        action_id = msg.get("ActionID")
        pending = self._pending.get(action_id) if action_id else None
        if pending is None:
            return  # late answer to an expired action, or not ours
        future = pending.future
        if pending.command_id is not None:  # Action: AGI acknowledgement
            del self._pending[action_id]  # type: ignore[arg-type]
            self._disarm(pending)
            if future.done():
                return
            if not msg.ok:
                self._agi_pop(pending.command_id)
                future.set_result(AgiResult(0, error=msg.message or "AGI command refused", at=msg.at))
            elif pending.exec_timeout is not None:
                self._arm(pending, pending.command_id, pending.exec_timeout, self._expire_agi)
            return
        wants_list = pending.as_list if pending.as_list is not None else msg.get("EventList") == "start"
        if wants_list and msg.ok:
            pending.items = [msg]
            return  # keep waiting for the list events and ...Complete
        del self._pending[action_id]  # type: ignore[arg-type]
        self._disarm(pending)
        if not future.done():
            future.set_result([msg] if wants_list else msg)

    def _on_event_message(self, msg: AmiMessage) -> None:
        action_id = msg.get("ActionID")
        if action_id is not None:
            pending = self._pending.get(action_id)
            if pending is not None and pending.items is not None:
                pending.items.append(msg)
                name = msg.get("Event", "")
                if name.endswith("Complete") or msg.get("EventList") == "Complete":
                    del self._pending[action_id]
                    self._disarm(pending)
                    if not pending.future.done():
                        pending.future.set_result(pending.items)
                return
        name = msg.get("Event")
        command_id = msg.get("CommandId") if self._agi else None
        if command_id is not None and command_id in self._agi:
            self._agi_result(command_id, msg)
        elif name == "AsyncAGIEnd" and self.trust_agi_end:
            self.agi_channel_gone(msg.get("Channel", ""), msg.at)
        if self.on_event is not None:
            try:
                self.on_event(msg)
            except Exception:  # a handler bug must not kill the connection
                log.exception("AMI event handler failed on %s", name)

    def _agi_pop(self, command_id: str) -> _Pending | None:
        pending = self._agi.pop(command_id, None)
        if pending is not None and pending.channel is not None:
            ids = self._agi_channels.get(pending.channel)
            if ids is not None:
                ids.discard(command_id)
                if not ids:
                    del self._agi_channels[pending.channel]
        return pending

    def _agi_result(self, command_id: str, msg: AmiMessage) -> None:
        """Our command's ``AsyncAGIExec``, found by its unguessable ``CommandId``.

        The frame is accepted under whatever ``Event:`` name it arrived:
        when the channel's caller ID holds CR/LF, Asterisk's own
        ``AsyncAGIExec`` is cut and its ``Result``/``CommandId`` arrive in
        a frame the caller named (fixture asterisk22_crlf_asyncagi.ami).
        ``Result`` is URL-encoded by Asterisk, so a raw CR/LF in it means the
        caller added a second ``Result:`` header: the command then counts as
        failed, never as whatever the caller wrote.
        """
        pending = self._agi_pop(command_id)
        if pending is None:
            return
        self._disarm(pending)
        if pending.future.done():
            return
        result = msg.get("Result")
        if result is None or "\n" in result or "\r" in result:
            pending.future.set_result(AgiResult(0, error="AGI result unreadable (caller data in the frame)",
                                                at=msg.at))
        else:
            pending.future.set_result(parse_result(result, msg.at))

    def agi_pending_on(self, channel: str) -> bool:
        return bool(self._agi_channels.get(channel))

    def agi_channel_gone(self, channel: str, at: float) -> None:
        """Resolve the commands still queued on a channel that left AsyncAGI.

        Called on ``AsyncAGIEnd`` when ``trust_agi_end``; otherwise by the
        listener once it confirmed the channel really left (an
        ``AsyncAGIEnd`` can be forged by a caller's CR/LF caller ID).
        """
        for command_id in self._agi_channels.pop(channel, ()):
            pending = self._agi.pop(command_id, None)
            if pending is None:
                continue
            self._disarm(pending)
            if not pending.future.done():
                pending.future.set_result(AgiResult(0, error="channel left AsyncAGI", at=at))

    # -- deadlines -------------------------------------------------------------------

    def _arm(self, pending: _Pending, key: str, timeout: float, expire: Callable[[str], None]) -> None:
        if timeout and timeout > 0:
            assert self._loop is not None
            pending.timeout = timeout
            pending.timer = self._loop.call_later(timeout, expire, key)

    @staticmethod
    def _disarm(pending: _Pending) -> None:
        if pending.timer is not None:
            pending.timer.cancel()
            pending.timer = None

    def _expire_action(self, action_id: str) -> None:
        pending = self._pending.pop(action_id, None)
        if pending is None:
            return
        if pending.command_id is not None:
            self._agi_pop(pending.command_id)
        if not pending.future.done():
            pending.future.set_exception(ActionTimeout(f"no answer to {pending.name} within {pending.timeout:g} s"))
            pending.future.exception()

    def _expire_agi(self, command_id: str) -> None:
        pending = self._agi_pop(command_id)
        if pending is not None and not pending.future.done():
            pending.future.set_exception(ActionTimeout(
                f"AGI command on {pending.channel} did not finish within {pending.timeout:g} s"))
            pending.future.exception()

    def _fail_all(self, reason: Exception) -> None:
        pendings = list(self._pending.values()) + list(self._agi.values())
        self._pending.clear()
        self._agi.clear()
        self._agi_channels.clear()
        for pending in pendings:
            self._disarm(pending)
            if not pending.future.done():
                pending.future.set_exception(reason)
                pending.future.exception()  # retrieved here; callers that await still see it

    @property
    def pending_actions(self) -> int:
        return len(self._pending) + len(self._agi)


def default_wanted(name: bytes) -> bool:
    """Parse every event except the known noise."""
    return name.decode("ascii", "replace") not in NOISE_EVENTS


__all__ = [
    "ActionTimeout",
    "AmiError",
    "AmiProtocol",
    "ConnectionLost",
    "NOISE_EVENTS",
    "NotConnected",
    "default_wanted",
    "new_id",
]
