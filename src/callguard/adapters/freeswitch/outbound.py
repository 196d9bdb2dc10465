"""The outbound event socket, served by greenswitch in its own gevent thread.

The dialplan runs ``socket 127.0.0.1:8084 async full``; FreeSWITCH then
connects to us once per call and waits for instructions.  We serve that
port with greenswitch's :class:`~greenswitch.esl.OutboundESLServer` (its
accept loop, per-call greenlets, connection limit and command/reply
bookkeeping are sound) and replace the two parts of it that are not:

* the reader: :class:`CallguardSession` overrides ``receive_events`` to
  feed raw socket bytes to our :class:`~.wire.ESLParser` (see that
  module for why: header injection, strict UTF-8, a hang when the peer
  closes mid-body), and fails pending commands when the socket closes so
  ``send()`` cannot block forever;
* ``play_and_get_digits``: built by :class:`~.wire.Wire` with every
  argument explicit (greenswitch sends ``None None``, see :mod:`.wire`).

Threading: everything in this module runs in one dedicated thread with its
own gevent hub (:class:`OutboundThread`).  Nothing here is monkey-patched;
greenswitch uses ``gevent.socket`` explicitly.  The engine lives in the
asyncio thread.  Crossing over:

* gevent -> asyncio: :class:`OutboundCall` hands every result to
  ``EngineSide`` methods through ``loop.call_soon_threadsafe`` (done by
  the listener's ``post``), never touching the engine directly;
* asyncio -> gevent: :meth:`OutboundThread.submit` appends to a deque and
  wakes the hub with a gevent ``async`` watcher (thread-safe by design);
  the callback runs inside the hub and only does ``put_nowait`` on the
  call's gevent queue.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import gevent
import gevent.event
import gevent.queue
import gevent.socket
from greenswitch.esl import OutboundESLServer, OutboundSession, OutboundSessionHasGoneAway

from .wire import ESLEvent, ESLParser, ESLProtocolError, Frame, StallWatch
from .translate import Offer, offer_from_channel_data, translate_outbound
from .commands import COLLECT_VARIABLE

log = logging.getLogger("callguard.freeswitch.outbound")


class EngineSide(Protocol):
    """What an outbound call reports; every method is called in the gevent thread
    and must only hand the work over to the engine thread."""

    #: the channel variable that marks a staff leg (read from each connect reply)
    staff_variable: str

    def call_attached(self, call: "OutboundCall", offer: Offer) -> bool: ...

    def call_event(self, call: "OutboundCall", event: Any) -> None: ...

    def call_detached(self, call: "OutboundCall") -> None: ...


class CallguardSession(OutboundSession):
    """greenswitch's OutboundSession with our parser as its reader."""

    #: called (in the hub) when the socket closes, so waiters wake at once
    on_closed: Callable[[], None] | None = None
    #: under high availability: False once this node may no longer act (nothing is written then)
    may_act: Callable[[], bool] | None = None

    def send(self, data: str) -> Any:
        """greenswitch's send, gated: a node that lost its lease writes nothing to FreeSWITCH."""
        if self.may_act is not None and not self.may_act():
            raise OutboundSessionHasGoneAway()
        return super().send(data)

    def drop(self) -> None:
        """Close the socket without a word (the dialplan goes on: its fail-closed path if undecided)."""
        if self.connected or self._run:
            self._closed()

    def receive_events(self) -> None:  # runs in greenswitch's reader greenlet
        parser = ESLParser()
        stall = StallWatch(parser)  # a frame that never completes (a Content-Length that lies) ends the session
        deadline: float | None = None
        while self._run:
            data = self._recv(deadline)
            if data is None:  # nothing came before the deadline: is the frame in progress overdue?
                try:
                    deadline = stall.check(time.monotonic())
                except ESLProtocolError as exc:
                    log.error("outbound socket: %s; closing", exc)
                    self._closed()
                    return
                continue
            if not data:
                cut = parser.close()
                if cut is not None:
                    log.warning("outbound socket: %s; the partial frame was dropped", cut)
                self._closed()
                return
            try:
                frames = parser.feed(data)
            except ValueError as exc:
                log.error("outbound socket: %s; closing", exc)
                self._closed()
                return
            deadline = stall.fed(time.monotonic())
            for frame in frames:
                self._dispatch(frame)

    def _recv(self, deadline: float | None) -> bytes | None:
        """One read; b"" when the socket is gone, None when ``deadline`` (monotonic) passed first."""
        try:
            if deadline is None:
                return self.sock.recv(65536)
            with gevent.Timeout(max(0.0, deadline - time.monotonic()), False):
                return self.sock.recv(65536)
            return None
        except Exception:  # noqa: BLE001 - any socket error ends the session
            return b""

    def _closed(self) -> None:
        self._run = False
        self.connected = False
        self._outbound_connected = False
        pending, self._commands_sent = self._commands_sent, []
        for result in pending:
            result.set_exception(OutboundSessionHasGoneAway())
        if self.on_closed is not None:
            self.on_closed()
        try:
            self.sock.close()
        except OSError:
            pass

    def _dispatch(self, frame: Frame) -> None:
        """greenswitch's ``handle_event``, on our frames."""
        kind = frame.content_type
        if kind == "auth/request":
            self._auth_request_event.set()
        elif kind in ("command/reply", "api/response"):
            frame.data = frame.reply_text if kind == "command/reply" else frame.text  # type: ignore[attr-defined]
            if self._commands_sent:
                self._commands_sent.pop(0).set(frame)
        elif kind == "text/disconnect-notice":
            if frame.headers.get("Content-Disposition") == "linger":
                self._lingering = True
            else:
                self.connected = False
            self._esl_event_queue.put(frame)
        elif kind == "text/rude-rejection":
            self.connected = False
        elif frame.is_event:
            self._esl_event_queue.put(frame.event)


@dataclass
class _App:
    """One dialplan application to run on the call, in order."""

    data: bytes
    app: str = ""  #: application name, to match its CHANNEL_EXECUTE_COMPLETE
    timeout_s: float = 5.0
    on_failure: Callable[[str], None] | None = None


@dataclass
class _Exit:
    """Release the channel back to the dialplan."""


@dataclass
class OutboundCall:
    """One parked channel: runs the engine's applications on it, one at a time.

    greenswitch's server creates it with the session (``application(session)``)
    and runs :meth:`run` in its own greenlet.
    """

    session: CallguardSession
    side: EngineSide
    action_timeout_s: float = 2.0
    idle_timeout_s: float = 5.0
    offer: Offer | None = None
    hung_up: bool = False
    finished: bool = False
    queue: gevent.queue.Queue = field(default_factory=gevent.queue.Queue)
    #: a command is on its way to FreeSWITCH (its reply not in yet)
    sending: bool = False
    _waiting: tuple[str, gevent.event.AsyncResult] | None = None

    @property
    def channel(self) -> str:
        return self.offer.channel if self.offer else ""

    # -- greenswitch entry point ---------------------------------------------------

    def run(self) -> None:
        session = self.session
        offer = offer_from_channel_data(session.session_data if session.session_data is not None else {},
                                        time.time(), self.side.staff_variable)
        if offer is None:
            log.warning("outbound socket: channel without a usable UUID; released to the dialplan")
            self._exit()
            return
        self.offer = offer
        for name in ("*", "CHANNEL_HANGUP", "CHANNEL_EXECUTE", "CHANNEL_EXECUTE_COMPLETE", "DISCONNECT"):
            session.register_handle(name, self._on_event)
        session.on_closed = self._on_closed
        try:
            session.myevents()
            session.linger()
        except (OutboundSessionHasGoneAway, OSError):
            self.finished = True
            return
        if not self.side.call_attached(self, offer):
            self._exit()
            return
        try:
            self._serve()
        finally:
            self.finished = True
            self.side.call_detached(self)

    def _serve(self) -> None:
        while True:
            try:
                item = self.queue.get(timeout=self.idle_timeout_s)
            except gevent.queue.Empty:
                # The engine always has something running or queued while it
                # holds a call here; silence means something is wrong.  Give
                # the channel back: the dialplan's fail-closed path takes over.
                log.warning("call %s: no instruction for %.1f s; released to the dialplan",
                            self.channel, self.idle_timeout_s)
                self._exit()
                return
            if isinstance(item, _Exit):
                # Closed for business first: anything the engine sends from now on bounces
                # back to it (a stop goes over the event socket instead), never lost.
                self.finished = True
                self._exit()
                self._bounce_queued("channel left the outbound socket")
                return
            if self.hung_up or not self.session.connected:
                if item.on_failure:
                    item.on_failure("channel hung up")
                continue
            self._run_app(item)

    def _bounce_queued(self, why: str) -> None:
        while not self.queue.empty():
            item = self.queue.get_nowait()
            if isinstance(item, _App) and item.on_failure is not None:
                item.on_failure(why)

    def _run_app(self, item: _App) -> None:
        waiter = gevent.event.AsyncResult()
        self._waiting = (item.app, waiter)
        try:
            self.sending = True
            try:
                with gevent.Timeout(self.action_timeout_s, TimeoutError):
                    reply = self.session.send(item.data[:-2].decode("utf-8"))
            finally:
                self.sending = False
            if not reply.data.startswith("+OK"):
                self._waiting = None
                if item.on_failure:
                    item.on_failure(f"FreeSWITCH refused {item.app}: {reply.data.strip()}")
                return
            if item.app:
                waiter.get(timeout=item.timeout_s)
        except gevent.Timeout:
            if item.on_failure:
                item.on_failure(f"{item.app} did not complete within {item.timeout_s:.1f} s")
        except TimeoutError:
            if item.on_failure:
                item.on_failure(f"no reply to {item.app} within {self.action_timeout_s:.1f} s")
        except (OutboundSessionHasGoneAway, OSError):
            self.hung_up = True
            if item.on_failure:
                item.on_failure("outbound socket closed")
        finally:
            self._waiting = None

    def _exit(self) -> None:
        if self.session.connected:
            try:
                with gevent.Timeout(self.action_timeout_s, TimeoutError):
                    self.session.send("exit")
            except (OutboundSessionHasGoneAway, OSError, TimeoutError):
                pass

    # -- events (greenswitch's process_events greenlet) -----------------------------

    def _on_event(self, event: Any) -> None:
        if isinstance(event, Frame):  # text/disconnect-notice
            if event.headers.get("Content-Disposition") == "linger":
                self._gone()  # FreeSWITCH lingers because the channel hung up
            self._wake_waiter()
            return
        name = event.headers.get("Event-Name")
        if not isinstance(event, ESLEvent) or self.offer is None:
            return
        engine_event = translate_outbound(event, self.offer.call_id, self.offer.channel, time.time(),
                                          COLLECT_VARIABLE)
        if name == "CHANNEL_HANGUP":
            self._gone()
        if engine_event is not None:
            self.side.call_event(self, engine_event)
        if name == "CHANNEL_EXECUTE_COMPLETE" and self._waiting is not None:
            app, waiter = self._waiting
            if event.get("Application") == app:
                waiter.set(event)

    def _on_closed(self) -> None:
        self._gone()
        self._wake_waiter()

    def _gone(self) -> None:
        """The channel hung up or the socket closed: finish what is queued (as failures), then leave."""
        if not self.hung_up:
            self.hung_up = True
            self.queue.put_nowait(_Exit())

    def _wake_waiter(self) -> None:
        if self._waiting is not None:
            self._waiting[1].set(None)

    def release(self) -> None:
        """Give the channel back to the dialplan now, undecided (the listener is stopping).

        Runs in the hub: the exit goes out from its own greenlet, even while an
        application runs; the dialplan's fail-closed path then plays the notice
        and goes on unrecorded.
        """
        if not self.finished and not self.hung_up:
            self.hung_up = True  # nothing more is sent after this
            gevent.spawn(self._exit)
            # The serving greenlet may be waiting for an application to
            # complete (a gather lasts tens of seconds): nothing it waits for
            # will come now, so let it return and leave.
            self.queue.put_nowait(_Exit())
            self._wake_waiter()

    # -- called inside the hub by OutboundThread.submit ------------------------------

    def enqueue(self, item: _App | _Exit, bounce: Callable[[], None] | None = None) -> None:
        if self.finished:
            if bounce is not None:
                bounce()
            return
        self.queue.put_nowait(item)


class _Server(OutboundESLServer):
    """greenswitch's server with our session class and a blocking accept.

    Kept from greenswitch: the per-call greenlet, ``connect`` before the
    application runs, the connection limit (calls over it get ``exit`` at
    once, so the dialplan's fail-closed path plays the notice), and the
    clean-up when a call's greenlet ends.  Replaced: ``listen``, because
    greenswitch 0.0.19 polls a non-blocking ``accept`` every 100 ms (up to
    100 ms added to every call's notice), calls ``sys.exit()`` when it
    cannot bind (in a thread: a silent death), and constructs the stock
    ``OutboundSession`` with greenswitch's own parser.
    """

    def __init__(self, host: str, port: int, *, side: EngineSide, action_timeout_s: float,
                 max_connections: int, may_act: Callable[[], bool] | None = None):
        super().__init__(host, port, application=self._make_app, max_connections=max_connections)
        self._side = side
        self._action_timeout_s = action_timeout_s
        self._may_act = may_act
        self.sessions: set[CallguardSession] = set()

    def _make_app(self, session: CallguardSession) -> OutboundCall:
        return OutboundCall(session, self._side, action_timeout_s=self._action_timeout_s,
                            idle_timeout_s=max(8.0, 4 * self._action_timeout_s))

    def bind(self) -> int:
        self.server = gevent.socket.socket()
        self.server.setsockopt(gevent.socket.SOL_SOCKET, gevent.socket.SO_REUSEADDR, 1)
        self.server.bind((self.bind_address, self.bind_port[0]))
        self.server.listen(512)
        self.bound_port = self.server.getsockname()[1]
        self._running = True
        return self.bound_port

    def listen(self) -> None:
        while self._running:
            try:
                sock, address = self.server.accept()
            except OSError:
                if not self._running:
                    break
                raise
            session = CallguardSession(address, sock)
            session.may_act = self._may_act
            self.sessions.add(session)
            gevent.spawn(self._serve_session, session)
        # gevent closes a socket another greenlet waits on from a hub callback: let the hub
        # run it before this thread (and its hub) ends, or the port stays bound (seen: a
        # restarted listener could not bind it again).
        gevent.idle()
        gevent.joinall(list(self._greenlets), timeout=5)

    def _serve_session(self, session: CallguardSession) -> None:
        try:
            self._accept_call(session)
        finally:
            if not session.connected:
                self.sessions.discard(session)

    def _handle_call_finish(self, handler: Any) -> None:
        self.sessions.discard(handler.session)
        super()._handle_call_finish(handler)

    def stop(self) -> None:
        self._running = False
        try:
            self.server.close()
        except OSError:
            pass

    def abandon(self) -> None:
        """Stop accepting and drop every session without sending anything (another node takes over)."""
        self.stop()
        for session in list(self.sessions):
            session.drop()


class OutboundThread(threading.Thread):
    """greenswitch's outbound server in its own thread and gevent hub."""

    def __init__(self, host: str, port: int, side: EngineSide, *, max_calls: int = 2000,
                 action_timeout_s: float = 2.0, may_act: Callable[[], bool] | None = None):
        super().__init__(name="callguard-freeswitch-outbound", daemon=True)
        self.host, self.requested_port = host, port
        self.side = side
        self.may_act = may_act
        self.max_calls = max_calls
        self.action_timeout_s = action_timeout_s
        self.port: int | None = None
        self.error: str | None = None
        self._ready = threading.Event()
        self._calls: collections.deque[tuple[Callable[..., None], tuple[Any, ...]]] = collections.deque()
        self._wakeup: Any = None
        self._server: _Server | None = None

    def run(self) -> None:
        hub = gevent.get_hub()  # a fresh hub: this is a new thread
        self._wakeup = hub.loop.async_()
        self._wakeup.start(self._drain)
        try:
            self._server = _Server(self.host, self.requested_port, side=self.side,
                                   action_timeout_s=self.action_timeout_s, max_connections=self.max_calls,
                                   may_act=self.may_act)
            self.port = self._server.bind()
        except OSError as exc:
            self.error = f"cannot listen on {self.host}:{self.requested_port}: {exc.strerror or exc}"
            self._ready.set()
            self._wakeup.stop()
            return
        self._ready.set()
        try:
            self._server.listen()
        except Exception:  # noqa: BLE001 - logged; the listener notices the dead thread
            log.exception("outbound server failed")
        finally:
            self._wakeup.stop()

    def wait_ready(self, timeout: float = 5.0) -> int:
        """Block until listening; the bound port, or RuntimeError with why not."""
        self._ready.wait(timeout)
        if self.error:
            raise RuntimeError(self.error)
        if self.port is None:
            raise RuntimeError(f"outbound server did not start listening on {self.host}:{self.requested_port}")
        return self.port

    def _drain(self) -> None:
        while self._calls:
            fn, args = self._calls.popleft()
            try:
                fn(*args)
            except Exception:  # noqa: BLE001 - never kill the hub
                log.exception("outbound: handing over %r failed", fn)

    @property
    def backlog(self) -> int:
        """Hand-overs not yet run in the hub."""
        return len(self._calls)

    def submit(self, fn: Callable[..., None], *args: Any) -> None:
        """Run ``fn(*args)`` inside the hub (thread-safe; ``fn`` must not block)."""
        self._calls.append((fn, args))
        if self._wakeup is not None:
            self._wakeup.send()

    def stop(self, timeout: float = 5.0, release: Callable[[], list[OutboundCall]] | None = None) -> None:
        """Stop accepting; release the parked calls (``release`` lists them) and wait for the thread."""
        if self._server is not None:
            for call in (release() if release is not None else []):
                self.submit(call.release)
            self.submit(self._server.stop)
        self.join(timeout)

    def abandon(self, timeout: float = 1.0) -> None:
        """Close the port and every parked session at once, sending nothing; wait for the thread."""
        if self._server is not None:
            self.submit(self._server.abandon)
        self.join(timeout)


__all__ = ["CallguardSession", "EngineSide", "OutboundCall", "OutboundThread"]
