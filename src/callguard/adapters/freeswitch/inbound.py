"""The listener's inbound ESL connection, in the engine's asyncio loop.

Commands and events that are not tied to one parked channel travel here:
``uuid_record <uuid> mask|unmask|stop``, ``uuid_setvar ... sensitive_dtmf``,
the heartbeat (``global_setvar callguard_heartbeat=<epoch>``), and the
events ``RECORD_START``/``RECORD_STOP``, hotkey and payment CUSTOM events,
bridges and hangups.

Why asyncio and our parser rather than greenswitch's ``InboundESL``: this
is the pause path.  A hotkey's CUSTOM event is parsed in ``data_received``,
fed to the engine in the same callback, and the engine's ``MuteRecording``
is written to this transport before the callback returns: no thread hop,
no queue.  greenswitch's ``InboundESL`` would put a gevent thread and a
1-second-polling event queue between the two, its ``send()`` has no
timeout (a lost reply blocks forever), and it does not reconnect.

Replies are matched to commands in order (FreeSWITCH answers each command
on a connection in the order sent).  A command whose reply is late keeps
its place in the queue, so a late reply is never taken for the next one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from .wire import ESLEvent, ESLParser, ESLProtocolError, Frame, StallWatch, encode_command, event_subscription

log = logging.getLogger("callguard.freeswitch.inbound")


class InboundError(ConnectionError):
    """Could not log in to FreeSWITCH (unreachable, refused, wrong password, ACL)."""


class InboundRefused(InboundError):
    """FreeSWITCH answered and said no (password, ACL): retrying will not help."""


class NotActing(ConnectionError):
    """High availability: another node may act on this PBX now, so this one writes nothing."""


@dataclass
class _Pending:
    future: asyncio.Future[Frame]
    command: str


class InboundProtocol(asyncio.Protocol):
    """One authenticated ESL connection: events out, commands in, replies matched."""

    def __init__(self, on_event: Callable[[ESLEvent, float], None], clock: Callable[[], float] = time.time,
                 wanted: Callable[[bytes], bool] | None = None, may_act: Callable[[], bool] | None = None):
        self._parser = ESLParser()
        #: under high availability: False once this node may no longer act (nothing is written then)
        self._may_act = may_act
        #: a frame that never completes (a Content-Length that lies) drops the connection
        self._stall = StallWatch(self._parser)
        self._stall_timer: asyncio.TimerHandle | None = None
        self._on_event = on_event
        #: a cheap test on the raw event bytes; False skips the event unparsed
        self._wanted = wanted
        self.skipped = 0
        self._clock = clock
        self._pending: deque[_Pending] = deque()
        self.transport: asyncio.Transport | None = None
        self.auth_request: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.auth_request.add_done_callback(lambda f: f.cancelled() or f.exception())
        self.closed: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.frames_in = 0
        self.rejected = False

    # -- asyncio ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            frames = self._parser.feed(data)
        except ValueError as exc:
            log.error("inbound ESL: %s; dropping the connection", exc)
            self._close(str(exc))
            return
        self._watch_stall(self._stall.fed(asyncio.get_running_loop().time()))
        now = self._clock()
        for frame in frames:
            self.frames_in += 1
            kind = frame.content_type
            if kind == "text/event-plain":
                if self._wanted is not None and not self._wanted(frame.body):
                    self.skipped += 1
                    continue
                try:
                    event = frame.event
                except ValueError as exc:
                    log.warning("inbound ESL: unreadable event dropped: %s", exc)
                    continue
                self._on_event(event, now)
            elif kind in ("command/reply", "api/response"):
                if self._pending:
                    pending = self._pending.popleft()
                    if not pending.future.done():
                        pending.future.set_result(frame)
            elif kind == "auth/request":
                if not self.auth_request.done():
                    self.auth_request.set_result(None)
            elif kind == "text/rude-rejection":
                self.rejected = True
                self._close("FreeSWITCH rejected the connection by ACL (" + frame.text.strip() + "); allow this "
                            "host in event_socket.conf.xml apply-inbound-acl")
            elif kind == "text/disconnect-notice":
                self._close("FreeSWITCH sent a disconnect notice")

    def _watch_stall(self, deadline: float | None) -> None:
        timer = self._stall_timer
        if timer is not None and (deadline is None or timer.when() != deadline):
            timer.cancel()
            timer = self._stall_timer = None
        if deadline is not None and timer is None and not self.closed.done():
            self._stall_timer = asyncio.get_running_loop().call_at(deadline, self._check_stall)

    def _check_stall(self) -> None:
        self._stall_timer = None
        try:
            deadline = self._stall.check(asyncio.get_running_loop().time())
        except ESLProtocolError as exc:
            log.error("inbound ESL: %s; dropping the connection", exc)
            self._close(str(exc))
            return
        self._watch_stall(deadline)

    def connection_lost(self, exc: Exception | None) -> None:
        cut = self._parser.close()
        if cut is not None:
            log.warning("inbound ESL: %s; the partial frame was dropped", cut)
        self._close(f"connection lost ({exc})" if exc else "connection closed by FreeSWITCH")

    def _close(self, why: str) -> None:
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None
        if not self.closed.done():
            self.closed.set_result(why)
        if not self.auth_request.done():
            self.auth_request.set_exception(InboundError(why))
        while self._pending:
            pending = self._pending.popleft()
            if not pending.future.done():
                pending.future.set_exception(ConnectionError(why))
        if self.transport is not None:
            self.transport.close()

    # -- commands ----------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self.transport is not None and not self.closed.done()

    def send(self, data: bytes, command: str = "") -> asyncio.Future[Frame]:
        """Write ``data`` now; the future gets its reply frame.

        Synchronous on purpose: the pause path writes the ``api`` command
        in the same callback that parsed the hotkey event.
        """
        future: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        # Fire-and-forget callers (heartbeat) may never look at a connection error.
        future.add_done_callback(lambda f: f.cancelled() or f.exception())
        if not self.connected:
            future.set_exception(ConnectionError("not connected to FreeSWITCH"))
            return future
        if self._may_act is not None and not self._may_act():
            future.set_exception(NotActing("this node no longer holds the lease: nothing is sent to FreeSWITCH"))
            return future
        self._pending.append(_Pending(future, command))
        assert self.transport is not None
        self.transport.write(data)
        return future

    def close(self) -> None:
        self._close("closed by callguard")


async def open_inbound(host: str, port: int, password: str, on_event: Callable[[ESLEvent, float], None], *,
                       events: list[str], custom: list[str], timeout: float = 5.0,
                       clock: Callable[[], float] = time.time,
                       wanted: Callable[[bytes], bool] | None = None,
                       may_act: Callable[[], bool] | None = None) -> InboundProtocol:
    """Connect, log in and subscribe; raises :class:`InboundError` with the reason."""
    loop = asyncio.get_running_loop()
    try:
        _, proto = await asyncio.wait_for(
            loop.create_connection(lambda: InboundProtocol(on_event, clock, wanted, may_act), host, port), timeout)
    except (OSError, asyncio.TimeoutError) as exc:
        raise InboundError(f"cannot reach FreeSWITCH event socket at {host}:{port}: "
                           f"{exc or 'timed out'}; is mod_event_socket loaded and listening there?") from None
    try:
        await asyncio.wait_for(proto.auth_request, timeout)
        reply = await asyncio.wait_for(proto.send(encode_command(f"auth {password}"), "auth"), timeout)
        if reply.reply_text != "+OK accepted":
            raise InboundRefused(f"FreeSWITCH refused the event socket password ({reply.reply_text.strip()}); "
                                 f"check [freeswitch] password (or CALLGUARD_FREESWITCH__PASSWORD) against "
                                 f"event_socket.conf.xml")
        reply = await asyncio.wait_for(proto.send(event_subscription(events, custom), "event"), timeout)
        if not reply.reply_text.startswith("+OK"):
            raise InboundError(f"FreeSWITCH refused the event subscription: {reply.reply_text.strip()}")
    except asyncio.TimeoutError:
        proto.close()
        raise InboundError(f"FreeSWITCH at {host}:{port} did not answer the login within {timeout:.1f} s") from None
    except InboundRefused:
        proto.close()
        raise
    except (InboundError, ConnectionError) as exc:
        proto.close()
        raise (InboundRefused if proto.rejected else InboundError)(str(exc)) from None
    return proto


__all__ = ["InboundError", "InboundProtocol", "InboundRefused", "NotActing", "open_inbound"]
