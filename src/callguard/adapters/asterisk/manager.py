"""panoramisk's ``Manager`` API on top of callguard's AMI protocol.

Sites that already use panoramisk keep its calling conventions
(``register_event(pattern, callback(manager, event))``, ``send_action``,
``send_command``, ``send_agi_command``, ``on_login`` / ``on_disconnect``
hooks, ``from_config``); what changes underneath is what panoramisk 1.4
gets wrong for a listener that must never miss a pause:

* framing by :class:`~callguard.adapters.asterisk.protocol.AmiProtocol`
  (UTF-8 safe, noise skipped by name before parsing: only events somebody
  registered for are parsed at all);
* per-action deadlines and an AGI command future that actually resolves;
* ``Ping`` every ``ping_interval`` whose ``Pong`` is checked: a silent,
  half-open connection is torn down within ``ping_interval +
  action_timeout`` instead of never;
* reconnect with exponential backoff and jitter (panoramisk retries on a
  fixed delay, which makes every listener of a restarted PBX reconnect in
  lockstep);
* MD5 challenge login by default, so the secret never crosses the wire;
* nothing queued while disconnected is replayed blindly afterwards.
"""

from __future__ import annotations

import asyncio
import fnmatch
import hashlib
import logging
import random
import re
import ssl as ssl_module
from typing import Any, Callable, Mapping

from panoramisk.manager import Manager as _PanoramiskManager

from callguard.adapters.asterisk.agi import AgiResult
from callguard.adapters.asterisk.protocol import (
    ActionTimeout,
    AmiError,
    AmiProtocol,
    ConnectionLost,
    NotConnected,
)
from callguard.adapters.asterisk.wire import AmiMessage

log = logging.getLogger("callguard.asterisk.manager")

EventCallback = Callable[["AmiManager", AmiMessage], Any]
#: Events the manager itself cares about whatever is registered.
_ALWAYS = frozenset({"FullyBooted", "Shutdown", "AsyncAGIExec", "AsyncAGIEnd"})


class AuthenticationFailed(AmiError):
    """The PBX refused our login (wrong user/secret, or not permitted from here)."""


def backoff_delays(minimum: float, maximum: float, rng: random.Random | None = None):
    """Reconnect delays: exponential from ``minimum`` to ``maximum``, "equal jitter".

    Each delay is drawn from ``[d/2, d]`` so a PBX restart does not make
    every listener reconnect at the same instant.
    """
    rng = rng or random.Random()
    delay = max(minimum, 0.001)
    while True:
        yield rng.uniform(delay / 2, delay)
        delay = min(maximum, delay * 2)


class AmiManager(_PanoramiskManager):
    """An AMI client that keeps itself connected.

    ``await manager.connect()`` returns once the first login succeeded (it
    retries while the PBX is unreachable and raises
    :class:`AuthenticationFailed` at once if the credentials are refused).
    From then on a background task reconnects after any loss and calls
    ``on_login(manager)`` after every successful login, which is where a
    listener resynchronises.
    """

    defaults = dict(
        _PanoramiskManager.defaults,
        protocol_factory=AmiProtocol,
        ping_interval=5.0,
        ping_delay=5.0,
        action_timeout=2.0,
        connect_timeout=5.0,
        reconnect_min=0.5,
        reconnect_max=30.0,
        auth="md5",
        events="on",
        trust_agi_end=True,
        ssl=None,
        server_hostname=None,
        username="",
        secret="",
    )

    def __init__(self, **config: Any):
        self._exact: dict[str, list[EventCallback]] = {}
        self.protocol: AmiProtocol | None = None
        super().__init__(**config)
        # panoramisk int()s these and hooks FullyBooted to replay queued
        # actions; we want float seconds and no blind replays.
        self.callbacks.clear()
        self.patterns.clear()
        self._exact.clear()
        self.ping_interval = float(self.config["ping_interval"])
        self.ping_delay = float(self.config["ping_delay"])
        self.action_timeout = float(self.config["action_timeout"])
        self.reconnect_min = float(self.config["reconnect_min"])
        self.reconnect_max = float(self.config["reconnect_max"])
        self.banner: str | None = None
        self.connects = 0
        self.last_error: str = ""
        self._supervisor: asyncio.Task | None = None
        self._pinger: asyncio.Task | None = None
        self._first: asyncio.Future | None = None
        self._closing = False
        self._connected_event: asyncio.Event | None = None
        self._rng = random.Random(config.get("seed"))

    # -- event registration (panoramisk API, faster dispatch) ---------------------

    def register_event(self, pattern: str, callback: EventCallback | None = None):
        """Call ``callback(manager, event)`` for events matching ``pattern`` (fnmatch).

        Exact names are dispatched by dict lookup; only names someone
        registered for (exactly or by pattern) are parsed off the wire.
        """
        def _register(cb: EventCallback) -> EventCallback:
            if any(ch in pattern for ch in "*?["):
                if not self.callbacks[pattern]:
                    self.patterns.append((pattern, re.compile(fnmatch.translate(pattern))))
                self.callbacks[pattern].append(cb)
            else:
                self._exact.setdefault(pattern, []).append(cb)
            if self.protocol is not None:
                self.protocol.parser.set_wanted(self._wanted)
            return cb

        return _register(callback) if callback is not None else _register

    def _wanted(self, name: bytes) -> bool:
        text = name.decode("utf-8", "replace")
        if text in self._exact or text in _ALWAYS:
            return True
        return any(regexp.match(text) for _, regexp in self.patterns)

    def dispatch(self, event: AmiMessage) -> list[str]:  # type: ignore[override]
        name = event.get("Event", "")
        matched: list[str] = []
        for callback in self._exact.get(name, ()):
            self._call(callback, event)
            matched.append(name)
        for pattern, regexp in self.patterns:
            if regexp.match(name):
                matched.append(pattern)
                for callback in self.callbacks[pattern]:
                    self._call(callback, event)
        return matched

    def _call(self, callback: EventCallback, event: AmiMessage) -> None:
        result = callback(self, event)
        if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
            asyncio.ensure_future(result)

    # -- connection lifecycle ---------------------------------------------------------

    def connect(self) -> "asyncio.Future[None]":  # type: ignore[override]
        """Start connecting (and staying connected); await the result for the first login."""
        loop = asyncio.get_running_loop()
        self.loop = loop
        if self._supervisor is None or self._supervisor.done():
            self._closing = False
            self._first = loop.create_future()
            self._connected_event = asyncio.Event()
            self._supervisor = loop.create_task(self._supervise(), name="callguard-ami-supervisor")
        assert self._first is not None
        return self._first

    @property
    def connected(self) -> bool:
        return self.protocol is not None and self.protocol.connected

    async def wait_connected(self, timeout: float | None = None) -> None:
        """Wait until logged in (again)."""
        assert self._connected_event is not None, "call connect() first"
        await asyncio.wait_for(self._connected_event.wait(), timeout)

    async def _supervise(self) -> None:
        delays = backoff_delays(self.reconnect_min, self.reconnect_max, self._rng)
        while not self._closing:
            lost: asyncio.Future | None = None
            try:
                lost = await self._connect_once()
            except AuthenticationFailed as exc:
                self.last_error = str(exc)
                if self._first is not None and not self._first.done():
                    self._first.set_exception(exc)
                    return
                log.error("%s; retrying", exc)
            except (OSError, AmiError, asyncio.TimeoutError) as exc:
                self.last_error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                log.warning("AMI %s:%s unreachable (%s)", self.config["host"], self.config["port"], self.last_error)
            if lost is not None:
                delays = backoff_delays(self.reconnect_min, self.reconnect_max, self._rng)
                if self._first is not None and not self._first.done():
                    self._first.set_result(None)
                await asyncio.shield(lost)
                if self._closing:
                    break
            delay = next(delays)
            log.info("reconnecting to AMI in %.2f s", delay)
            await asyncio.sleep(delay)

    async def _connect_once(self) -> "asyncio.Future[None]":
        loop = asyncio.get_running_loop()
        lost: asyncio.Future = loop.create_future()
        timeout = float(self.config["connect_timeout"])

        def factory() -> AmiProtocol:
            return self.config["protocol_factory"](
                on_event=self.dispatch, on_lost=lambda exc: self._lost(lost, exc),
                wanted=self._wanted, action_timeout=self.action_timeout,
                trust_agi_end=bool(self.config["trust_agi_end"]))

        ssl_ctx = self.config["ssl"]
        if ssl_ctx is True:
            ssl_ctx = ssl_module.create_default_context()
        _, protocol = await asyncio.wait_for(loop.create_connection(
            factory, self.config["host"], int(self.config["port"]), ssl=ssl_ctx or None,
            server_hostname=self.config["server_hostname"] if ssl_ctx else None), timeout)
        try:
            assert protocol.banner is not None
            self.banner = await asyncio.wait_for(asyncio.shield(protocol.banner), timeout)
            await self._login(protocol)
        except BaseException:
            protocol.abort()
            raise
        self.protocol = protocol
        self.connects += 1
        self.last_error = ""
        self._authenticated(True)
        log.info("AMI connected to %s:%s (%s)", self.config["host"], self.config["port"], self.banner)
        self._pinger = loop.create_task(self._ping_loop(protocol), name="callguard-ami-ping")
        if self._connected_event is not None:
            self._connected_event.set()
        self.loop.call_soon(self._run_hook, self.on_login, self)
        return lost

    def _authenticated(self, value: bool) -> None:
        self.authenticated = value

    def _lost(self, lost: asyncio.Future, exc: BaseException | None) -> None:
        if self._connected_event is not None:
            self._connected_event.clear()
        was = self.protocol
        self.protocol = None
        self._authenticated(False)
        if self._pinger is not None:
            self._pinger.cancel()
            self._pinger = None
        if not lost.done():
            lost.set_result(None)
        if was is not None:
            if self._closing:
                log.info("AMI connection closed")
            else:
                log.warning("AMI connection lost (%s)", exc or "closed by peer")
            self.loop.call_soon(self._run_hook, self.on_disconnect, self, exc)

    def _run_hook(self, hook: Callable[..., Any], *args: Any) -> None:
        try:
            result = hook(*args)
        except Exception:
            log.exception("AMI hook %s failed", getattr(hook, "__name__", hook))
            return
        if asyncio.iscoroutine(result):
            asyncio.ensure_future(result)

    async def _login(self, protocol: AmiProtocol) -> None:
        username = str(self.config["username"])
        secret = str(self.config["secret"])
        events = self.config["events"]
        if self.config["auth"] == "md5":
            challenge = await protocol.send_action({"Action": "Challenge", "AuthType": "MD5"})
            assert isinstance(challenge, AmiMessage)
            if not challenge.ok or not challenge.get("Challenge"):
                raise AuthenticationFailed(f"AMI refused an MD5 challenge: {challenge.message or challenge}")
            key = hashlib.md5((challenge["Challenge"] + secret).encode("utf-8")).hexdigest()
            login = {"Action": "Login", "AuthType": "MD5", "Username": username, "Key": key}
        else:
            login = {"Action": "Login", "Username": username, "Secret": secret}
        if events is not None:
            login["Events"] = events
        response = await protocol.send_action(login)
        assert isinstance(response, AmiMessage)
        if not response.ok:
            raise AuthenticationFailed(
                f"AMI login as {username!r} refused ({response.message or 'no reason given'}); check "
                f"[asterisk] username/secret and the permit/deny lines for this user in manager.conf")

    async def _ping_loop(self, protocol: AmiProtocol) -> None:
        await asyncio.sleep(self.ping_delay)
        while protocol.connected:
            try:
                pong = await protocol.send_action({"Action": "Ping"}, timeout=self.action_timeout)
            except ConnectionLost:
                return
            except ActionTimeout:
                log.warning("AMI did not answer Ping within %.1f s; reconnecting", self.action_timeout)
                protocol.abort()
                return
            if not (isinstance(pong, AmiMessage) and pong.ok and pong.get("Ping") == "Pong"):
                log.warning("AMI answered Ping with %r; reconnecting", pong)
                protocol.abort()
                return
            await asyncio.sleep(self.ping_interval)

    def close(self) -> None:
        """Stop reconnecting and close the connection."""
        self._closing = True
        if self._pinger is not None:
            self._pinger.cancel()
            self._pinger = None
        if self._supervisor is not None:
            self._supervisor.cancel()
        if self.protocol is not None:
            self.protocol.close()
        if self._first is not None and not self._first.done():
            self._first.cancel()

    async def aclose(self, logoff: bool = True, logoff_timeout: float = 1.0) -> None:
        """Log off politely (when connected, waiting at most ``logoff_timeout``), then :meth:`close`."""
        self._closing = True
        if logoff and self.connected:
            try:
                await self.send_action({"Action": "Logoff"}, timeout=logoff_timeout)
            except (AmiError, OSError):
                pass
        self.close()
        if self._supervisor is not None:
            try:
                await self._supervisor
            except (asyncio.CancelledError, Exception):
                pass

    # -- actions ------------------------------------------------------------------------

    def _protocol_or_fail(self, what: str) -> AmiProtocol:
        if self.protocol is None or not self.protocol.connected:
            raise NotConnected(f"not connected to the AMI; {what} not sent")
        return self.protocol

    def send_action(self, action: Mapping[str, Any], as_list: bool | None = None,  # type: ignore[override]
                    timeout: float | None = None, **kwargs: Any) -> "asyncio.Future[Any]":
        """Send an action; see :meth:`AmiProtocol.send_action`.  Fails fast when disconnected."""
        fields = {str(k): v for k, v in dict(action, **kwargs).items()}
        protocol = self.protocol
        if protocol is None or not protocol.connected:
            future = asyncio.get_running_loop().create_future()
            future.set_exception(NotConnected(f"not connected to the AMI; {fields.get('Action')} not sent"))
            return future
        return protocol.send_action(fields, timeout=timeout, as_list=as_list)

    def send_command(self, command: str, as_list: bool | None = None,  # type: ignore[override]
                     timeout: float | None = None) -> "asyncio.Future[Any]":
        """``Action: Command`` (CLI command); the output is in the response's ``Output``."""
        return self.send_action({"Action": "Command", "Command": command}, as_list=as_list, timeout=timeout)

    def send_agi_command(self, channel: str, command: str, as_list: bool = False,  # type: ignore[override]
                         timeout: float | None = None, exec_timeout: float | None = None
                         ) -> "asyncio.Future[AgiResult]":
        """Queue an AGI command; the future resolves with its :class:`AgiResult`."""
        protocol = self.protocol
        if protocol is None or not protocol.connected:
            future = asyncio.get_running_loop().create_future()
            future.set_exception(NotConnected("not connected to the AMI; AGI command not sent"))
            return future
        return protocol.send_agi(channel, command, timeout=timeout, exec_timeout=exec_timeout)


def tls_context(ca_file: str | None) -> ssl_module.SSLContext:
    """A verifying client TLS context (system CAs, or only ``ca_file`` when given)."""
    return ssl_module.create_default_context(cafile=ca_file or None)


__all__ = ["AmiManager", "AuthenticationFailed", "backoff_delays", "tls_context"]
