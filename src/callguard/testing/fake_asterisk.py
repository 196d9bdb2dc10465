"""A fake Asterisk 22 that speaks AMI over a real TCP socket.

Byte-for-byte like the captured streams in the test fixtures: the banner,
``Login`` (plain and MD5 ``Challenge``, and the failure), ``Ping`` with its
``Timestamp``, ``Setvar``/``Getvar`` (the heartbeat global),
``CoreShowChannels``, AsyncAGI (``AsyncAGIStart`` with a URL-encoded
``Env``; ``Action: AGI`` queueing; ``AGIExecStart``/``AGIExecEnd`` with
Asterisk's own internal command id; ``AsyncAGIExec`` with a URL-encoded
``Result`` and the header spelled ``CommandId``; ``ASYNCAGI BREAK`` ->
``AsyncAGIEnd``), ``MixMonitor`` (``MixMonitorID`` + ``MixMonitorStart``),
``MixMonitorMute`` (+ event; ``Cannot set mute flag`` without a recording),
``StopMixMonitor`` (a second one fails), ``UserEvent``, bridges, hangups,
unknown actions, and optional ``Timestamp:`` headers.

Calls follow the shipped dialplan (``dialplan/asterisk``): a heartbeat
check, ``AGI(agi:async)`` (or the fallback notice when the heartbeat is
stale), ``CALLGUARD_CONSENT`` / a goto after ``ASYNCAGI BREAK``, then the
agent is dialled and bridged; a joining party either passes through the
``U(callguard-join^s^1)`` Gosub (a second ``AsyncAGIStart`` in context
``callguard-join``) or enters the bridge unannounced.  Callers are
scriptable (:class:`FakeCall`), a :class:`~callguard.testing.scenario.Scenario`
can be played with :meth:`FakeAsterisk.play`, and fault knobs break the
wire on purpose: drop connections, split writes at any byte, delay or lose
responses and events, flood the socket with background events.

Usage (like aiosmtpd's ``Controller``: a real server on a real port)::

    async with FakeAsterisk(secret="s3cret") as pbx:
        ...connect a listener to ("127.0.0.1", pbx.port)...
        call = pbx.place_call("+14155550123", "José Cust")
        await call.press("1", at=0.2)
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import heapq
import itertools
import logging
import random
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

from callguard.testing.ami_wire import ActionReader, Splitter, Value, c_escape, message, uri_encode
from callguard.testing.recording_file import RecordingFile

log = logging.getLogger("callguard.testing.fake_asterisk")

BANNER = b"Asterisk Call Manager/11.0.0\r\n"
INBOUND_CONTEXT = "callguard-inbound"
JOIN_CONTEXT = "callguard-join"
FEATURE_CONTEXT = "callguard-feature"
PAYMENT_CONTEXT = "callguard-payment"
#: Must match the shipped dialplan's staleness limit (tests check they agree).
HEARTBEAT_STALE_S = 6
_STATE_DESC = {0: "Down", 4: "Ring", 5: "Ringing", 6: "Up"}
_CLASS_OF = {  # event -> manager class, for the per-connection event mask
    "VarSet": "dialplan", "Newexten": "dialplan", "UserEvent": "user", "FullyBooted": "system",
    "AsyncAGIStart": "agi", "AsyncAGIExec": "agi", "AsyncAGIEnd": "agi", "AGIExecStart": "agi",
    "AGIExecEnd": "agi", "DTMFBegin": "dtmf", "DTMFEnd": "dtmf",
}


# -- the PBX's clock ------------------------------------------------------------------


class PbxClock:
    """The fake PBX's sense of time: scaled, and optionally blind to stalls.

    ``time_scale`` compresses time (0.05: a 120 s scenario plays in 6 s).
    With ``stall_cap_s`` set, a tick task advances the clock by at most
    that much real time per tick, so when the whole process is not
    scheduled for half a second (a busy CI machine) the PBX does not "see"
    the half second: a caller's keypress and the prompt timeout that were
    due in that order still happen in that order.  Without it the clock is
    the real one (scaled).
    """

    def __init__(self, time_scale: float = 1.0, stall_cap_s: float | None = None, tick_s: float = 0.002):
        self.time_scale = time_scale
        self.stall_cap_s = stall_cap_s
        self.tick_s = tick_s
        self._virtual = 0.0  # PBX seconds since start (virtual mode)
        self._last = time.monotonic()
        self._mono0 = self._last
        self._timers: list[tuple[float, int, asyncio.Future]] = []
        self._seq = itertools.count()
        self._ticker: asyncio.Task | None = None

    @property
    def virtual(self) -> bool:
        return self.stall_cap_s is not None

    def elapsed(self) -> float:
        """PBX seconds since the clock started."""
        if not self.virtual:
            return (time.monotonic() - self._mono0) / self.time_scale
        assert self.stall_cap_s is not None
        return self._virtual + min(time.monotonic() - self._last, self.stall_cap_s) / self.time_scale

    def start(self) -> None:
        if self.virtual and self._ticker is None:
            self._last = time.monotonic()
            self._ticker = asyncio.get_running_loop().create_task(self._tick())

    def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None

    async def _tick(self) -> None:
        assert self.stall_cap_s is not None
        while True:
            await asyncio.sleep(self.tick_s)
            now = time.monotonic()
            self._virtual += min(now - self._last, self.stall_cap_s) / self.time_scale
            self._last = now
            while self._timers and self._timers[0][0] <= self._virtual:
                _, _, future = heapq.heappop(self._timers)
                if not future.done():
                    future.set_result(None)

    def timer(self, pbx_seconds: float) -> asyncio.Future:
        """A future that resolves ``pbx_seconds`` of PBX time from now."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future = loop.create_future()
        if not self.virtual:
            handle = loop.call_later(max(pbx_seconds, 0.0) * self.time_scale,
                                     lambda: future.done() or future.set_result(None))
            future.add_done_callback(lambda _: handle.cancel())
        else:
            heapq.heappush(self._timers, (self.elapsed() + max(pbx_seconds, 0.0), next(self._seq), future))
        return future

    async def sleep(self, pbx_seconds: float) -> None:
        if pbx_seconds > 0:
            await self.timer(pbx_seconds)


# -- the PBX's state ----------------------------------------------------------------


@dataclass
class FakeRecording:
    """One MixMonitor on one channel, with its mute history on the PBX clock."""

    mixmonitor_id: str
    channel: str
    file: str
    options: str
    started_at: float
    stopped_at: float | None = None
    muted: bool = False
    changes: list[tuple[float, bool]] = field(default_factory=list)  #: (time, muted) from the start
    audio: RecordingFile | None = None  #: the WAV on disk (``FakeAsterisk.write_recordings``)

    def set_muted(self, at: float, muted: bool) -> None:
        if self.audio is not None:
            self.audio.advance(at, not self.muted)
        self.muted = muted
        self.changes.append((at, muted))

    def stop(self, at: float) -> None:
        """MixMonitor ends (StopMixMonitor or the channel hung up): the file is complete."""
        self.stopped_at = at
        if self.audio is not None:
            self.audio.close(at, not self.muted)

    def audible_between(self, t0: float, t1: float) -> bool:
        """Was audio (not silence) written at any instant in ``(t0, t1)``?"""
        end = self.stopped_at if self.stopped_at is not None else float("inf")
        lo, hi = max(t0, self.started_at), min(t1, end)
        if lo >= hi:
            return False
        state = False
        points = self.changes + [(float("inf"), False)]
        for (when, muted), (nxt, _) in zip(points, points[1:]):
            state = muted
            if when < hi and nxt > lo and not state:
                return True
        return False


@dataclass
class _Gather:
    """A running ``GET DATA``: keys pressed so far and how many are wanted."""

    max_digits: int
    future: asyncio.Future
    digits: str = ""


class FakeChannel:
    """One Asterisk channel as the fake models it."""

    def __init__(self, name: str, uniqueid: str, linkedid: str, number: Value, caller_name: Value,
                 context: str, exten: str, connected: tuple[Value, Value] | None = None):
        self.name = name
        self.uniqueid = uniqueid
        self.linkedid = linkedid
        self.number = number
        self.caller_name = caller_name
        self.connected = connected or (number, caller_name)
        self.context = context
        self.exten = exten
        self.priority = 1
        self.state = 6
        self.language = "en"
        self.application = ""
        self.app_data = ""
        self.variables: dict[str, str] = {}
        self.recording: FakeRecording | None = None
        self.recordings: list[FakeRecording] = []
        self.agi_queue: asyncio.Queue | None = None
        self.gather: _Gather | None = None
        self.playing: asyncio.Future | None = None
        self.bridge: str | None = None
        self.hung_up = False
        self.muted_audio: set[str] = set()  #: MuteAudio directions switched on (in, out, all)
        self.hangup_future: asyncio.Future | None = None
        self.agi_done = asyncio.Event()
        self.created = time.time()
        self.timeout_timer: asyncio.Future | None = None  #: TIMEOUT(absolute), when armed
        self.timed_out = False  #: the absolute timeout fired (the dialplan went to "T")

    @property
    def in_agi(self) -> bool:
        return self.agi_queue is not None

    def snapshot(self, prefix: str = "") -> list[tuple[str, Value]]:
        """The channel-state headers every channel event carries, in Asterisk's order.

        Like Asterisk 22 (main/manager_channels.c, fixture
        asterisk22_crlf_callerid.ami): the caller-ID and connected-line
        *numbers* go out raw, so a number holding CR/LF cuts the frame and
        starts an attacker-shaped one; the *names* are C-escaped.  ``prefix``
        gives the ``Dest``/``Transferee``... form of the same block.
        """
        return [(prefix + key, value) for key, value in (
            ("Channel", self.name), ("ChannelState", self.state),
            ("ChannelStateDesc", _STATE_DESC.get(self.state, "Unknown")),
            ("CallerIDNum", self.number or b"<unknown>"),
            ("CallerIDName", c_escape(self.caller_name) or b"<unknown>"),
            ("ConnectedLineNum", self.connected[0] or b"<unknown>"),
            ("ConnectedLineName", c_escape(self.connected[1]) or b"<unknown>"),
            ("Language", self.language), ("AccountCode", ""), ("Context", self.context),
            ("Exten", self.exten), ("Priority", self.priority), ("Uniqueid", self.uniqueid),
            ("Linkedid", self.linkedid),
        )]


class FakeCall:
    """One scripted inbound call: the caller, the agent, anyone who joins.

    Script methods take an optional ``at`` (seconds after the call reached
    AsyncAGI, on the fake's scaled clock) and wait until then.
    """

    def __init__(self, pbx: "FakeAsterisk", number: Value, name: Value, exten: str,
                 agent: tuple[str, str] | None, agent_via_join: bool):
        self.pbx = pbx
        self.number = number
        self.name = name
        self.exten = exten
        self.agent_spec = agent
        self.agent_via_join = agent_via_join
        self.agent_marked = True  #: the agent leg ran [callguard-staff]
        self.agent_endpoint = "Local/agent@agent-sim"
        seq = next(pbx._seq)
        self.linkedid = pbx._uniqueid()
        base = f"Local/{exten}@{INBOUND_CONTEXT}-{seq:08x}"
        self.originator = FakeChannel(base + ";1", self.linkedid, self.linkedid, number, name, "caller-sim", "call")
        self.channel = FakeChannel(base + ";2", pbx._uniqueid(), self.linkedid, number, name, INBOUND_CONTEXT, exten)
        self.agent: FakeChannel | None = None
        self.agent_far: FakeChannel | None = None  #: the ;2 half of the agent's Local channel
        self.parties: dict[str, FakeChannel] = {}  #: joiners by number
        self.bridge_id: str | None = None
        self.path = ""  #: "asyncagi" or "fallback" once the dialplan decided
        self.destination: str | None = None  #: where a goto sent the channel
        self.answered_at: float | None = None  #: PBX time of AsyncAGIStart (script t = 0)
        self._answered_pbx: float | None = None  #: clock.elapsed() at AsyncAGIStart
        self.answered = asyncio.Event()
        self.ended = asyncio.Event()
        self.signals: list[tuple[float, str, str]] = []  #: (time, action, source) of UserEvents sent
        #: what reached the agent's phone from the caller's keypad: ("dtmf" | "tone", digit, time)
        self.agent_heard: list[tuple[str, str, float]] = []
        #: prompts the caller heard from the payment player (files, in order)
        self.caller_heard: list[str] = []
        self.player: tuple[FakeChannel, FakeChannel] | None = None  #: the payment prompt player's halves
        self.task: asyncio.Task | None = None
        self.changed = asyncio.Event()  #: set whenever a gather starts/ends or AGI ends on this call

    def _notify(self) -> None:
        self.changed.set()

    async def _wait_until(self, predicate: Callable[[], bool], timeout: float) -> None:
        """Event-driven wait (no polling: a thousand waiting callers must cost nothing)."""
        async def wait() -> None:
            while True:
                self.changed.clear()
                if predicate():
                    return
                await self.changed.wait()
        await asyncio.wait_for(wait(), timeout)

    # -- what tests look at ------------------------------------------------------

    @property
    def outcome(self) -> str | None:
        """``CALLGUARD_CONSENT`` as the dialplan sees it after AGI."""
        return self.channel.variables.get("CALLGUARD_CONSENT")

    @property
    def recording(self) -> FakeRecording | None:
        recs = self.channel.recordings
        return recs[-1] if recs else None

    @property
    def recordings(self) -> list[FakeRecording]:
        return list(self.channel.recordings)

    def payment_windows(self) -> list[tuple[float, float]]:
        """(start, end) PBX times of the payment segments this call signalled."""
        out, start = [], None
        for when, action, _ in self.signals:
            if action == "payment-start" and start is None:
                start = when
            elif action == "payment-end" and start is not None:
                out.append((start, when))
                start = None
        if start is not None:
            out.append((start, float("inf")))
        return out

    # -- script ------------------------------------------------------------------

    async def _at(self, at: float | None) -> None:
        if at is None:
            return
        await self.answered.wait()
        assert self._answered_pbx is not None
        await self.pbx.clock.sleep(self._answered_pbx + at - self.pbx.clock.elapsed())

    def _party(self, party: str) -> FakeChannel | None:
        if party == "caller":
            return self.channel
        if party == "agent":
            return self.agent
        return self.parties.get(party)

    async def press(self, digits: str, party: str = "caller", at: float | None = None) -> None:
        """The party presses keys (they count if a ``GET DATA`` is running).

        With the PBX's ``dtmf_grace_s`` > 0, keys pressed when no gather runs
        (yet) wait that long for one instead of being lost - a concession to
        slow machines in demos; real Asterisk drops them.
        """
        await self._at(at)
        grace = self.pbx.dtmf_grace_s * self.pbx.time_scale
        if grace > 0:
            with contextlib.suppress(asyncio.TimeoutError):
                await self._wait_until(lambda: self._gathering(party), grace)
        channel = self._party(party)
        if channel is None or channel.hung_up:
            return
        for digit in digits:
            self.pbx._dtmf(channel, digit)

    def _gathering(self, party: str) -> bool:
        channel = self._party(party)
        return channel is not None and channel.gather is not None and not channel.gather.future.done()

    async def answer_prompt(self, digits: str, party: str = "caller", timeout: float = 10.0) -> None:
        """Wait until a ``GET DATA`` plays to the party, then press ``digits`` (timing-proof tests)."""
        await self._wait_until(lambda: self._gathering(party), timeout)
        await self.press(digits, party)

    async def hotkey(self, action: str, at: float | None = None, party: str = "agent") -> None:
        """``party`` presses *6 / *7: the feature Gosub (``callguard-feature``) runs on its channel.

        Like the shipped Gosub it writes ``CALLGUARD_HOTKEY=<action>:<seq>``
        on the pressing channel, ``CALLGUARD_PAUSED`` on the caller's, then
        sends ``UserEvent(CallGuard)`` from the pressing channel.  ``party=
        "caller"`` models a site that enabled the features on the customer's
        channel with its own Gosub (fixture asterisk22_customer_hotkey.ami:
        the UserEvent's ``Channel`` is then the customer).
        """
        await self._at(at)
        if party == "agent":
            source = self.agent if self.agent is not None and not self.agent.hung_up else None
        else:
            source = self._party(party)
        if source is None or source.hung_up:
            return
        self.pbx._feature(self, source, action)

    async def ivr(self, action: str, at: float | None = None) -> None:
        """The IVR runs ``Gosub(callguard-signal,<action>,1)`` on the caller's channel.

        ``payment-start`` returns (and the payment audio may flow) only once
        the listener confirmed the mute (``CALLGUARD_MUTED=1``), or after
        ``payment_wait_s`` with the recording stopped by the dialplan.
        """
        await self._at(at)
        await self.pbx._signal(self, action)

    async def join(self, number: str, name: str = "", announceable: bool = True, at: float | None = None) -> None:
        """A third party is dialled into the call (via ``U()`` when announceable)."""
        await self._at(at)
        await self.pbx._join(self, number, name, announceable)

    async def leave(self, number: str, at: float | None = None) -> None:
        await self._at(at)
        channel = self._party(number)
        if channel is not None:
            await self.pbx._hangup_channel(channel)

    async def hangup(self, party: str = "caller", at: float | None = None) -> None:
        """``caller`` ends the call for everyone; anyone else just leaves."""
        await self._at(at)
        if party == "caller":
            await self.pbx._hangup_call(self)
        else:
            channel = self._party(party)
            if channel is not None:
                await self.pbx._hangup_channel(channel)

    async def wait_answered(self, timeout: float = 5.0) -> None:
        await asyncio.wait_for(self.answered.wait(), timeout)

    async def wait_ended(self, timeout: float = 10.0) -> None:
        await asyncio.wait_for(self.ended.wait(), timeout)

    async def wait_agi_left(self, timeout: float = 5.0) -> None:
        """Until the caller's channel left AsyncAGI (BREAK or hangup)."""
        await asyncio.wait_for(self.answered.wait(), timeout)
        await self._wait_until(lambda: not self.channel.in_agi, timeout)


# -- one AMI client connection -----------------------------------------------------------


class _Session(asyncio.Protocol):
    """The server side of one AMI connection."""

    def __init__(self, pbx: "FakeAsterisk"):
        self.pbx = pbx
        self.transport: asyncio.Transport | None = None
        self.reader = ActionReader()
        self.authenticated = False
        self.username = ""
        self.challenge = ""
        self.event_classes: set[str] | None = set()  #: None = all events
        self._queue: asyncio.Queue | None = None
        self._writer: asyncio.Task | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if self.pbx.refuse_connections:
            transport.abort()
            return
        self.pbx._sessions.add(self)
        self.write(BANNER, "banner", "")

    def connection_lost(self, exc: BaseException | None) -> None:
        self.pbx._sessions.discard(self)
        self.transport = None
        if self._writer is not None:
            self._writer.cancel()

    def data_received(self, data: bytes) -> None:
        self.pbx.bytes_received += len(data)
        try:
            actions = self.reader.feed(data)
        except ValueError:
            self.close(abort=True)
            return
        for action in actions:
            self.pbx._handle_action(self, action)

    def wants(self, name: str, klass: str) -> bool:
        if not self.authenticated:
            return False
        if self.event_classes is None:
            return True
        return klass in self.event_classes

    # -- writing with fault knobs ----------------------------------------------------

    def write(self, data: bytes, kind: str, name: str) -> None:
        pbx = self.pbx
        if self.transport is None:
            return
        if pbx.lose is not None and kind != "banner" and pbx.lose(kind, name, data):
            return
        delay = pbx.response_delay_s if kind == "response" else pbx.event_delay_s if kind == "event" else 0.0
        if delay > 0:
            asyncio.get_running_loop().call_later(delay, self._write_now, data)
        else:
            self._write_now(data)

    def _write_now(self, data: bytes) -> None:
        if self.transport is None:
            return
        splitter = self.pbx.splitter
        if splitter is None and self._queue is None:
            self.pbx.bytes_sent += len(data)
            self.transport.write(data)
            return
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._writer = asyncio.get_running_loop().create_task(self._drain())
        for piece in (splitter(data) if splitter is not None else [data]):
            self._queue.put_nowait(piece)

    async def _drain(self) -> None:
        assert self._queue is not None
        while True:
            piece = await self._queue.get()
            if self.transport is None:
                return
            self.pbx.bytes_sent += len(piece)
            self.transport.write(piece)
            await asyncio.sleep(self.pbx.split_pause_s)

    def close(self, abort: bool = False) -> None:
        if self.transport is not None:
            if abort:
                self.transport.abort()
            else:
                self.transport.close()


# -- the server ------------------------------------------------------------------------------


class FakeAsterisk:
    """An Asterisk 22 stand-in on a real TCP port (see the module docstring).

    Knobs (all plain attributes, change them at any time):

    * ``time_scale``: multiply every wait the PBX does (prompt playback,
      ``GET DATA`` timeouts, script times) - 0.01 plays a 90 s scenario in
      under a second.  ``Timestamp:`` headers then show the *unscaled*
      PBX clock, so evidence offsets still read in real seconds.
    * ``stall_cap_s``: make the PBX clock blind to stalls longer than this
      (see :class:`PbxClock`; for demos and parity tests on busy machines).
    * ``timestamps``: add ``Timestamp:`` to events (``timestampevents``).
    * ``prompt_durations`` / ``default_prompt_s``: how long each sound plays.
    * ``confirm_delay_s``: how long MixMonitor takes to confirm a change.
    * ``mute_works``: ``False`` makes ``MixMonitorMute`` answer Success but
      neither mute nor confirm (the fail-safe case).
    * ``dtmf_grace_s``: hold keys pressed before a gather runs (demos).
    * ``write_recordings``: MixMonitor writes a real WAV at its ``File``
      path on this host (open while recording, silence while muted,
      completed on stop or hangup), for tests that hand it to the vault.
    * ``splitter`` (+ ``split_pause_s``): cut every write into pieces.
    * ``response_delay_s`` / ``event_delay_s``: deliver late.
    * ``lose(kind, name, data) -> bool``: drop a response or event.
    * ``refuse_connections``: close new connections at once.
    * :meth:`drop_connections`, :meth:`send_raw`, :meth:`start_flood`, :meth:`stop_flood`.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, username: str = "callguard",
                 secret: str = "cgsecret", timestamps: bool = False, time_scale: float = 1.0,
                 prompt_durations: Mapping[str, float] | None = None, default_prompt_s: float = 0.05,
                 confirm_delay_s: float = 0.0, heartbeat_variable: str = "CALLGUARD_HEARTBEAT",
                 heartbeat_stale_s: float = HEARTBEAT_STALE_S, noise: bool = True, seed: int = 0,
                 agent: tuple[str, str] | None = ("2001", "Agent Smith"), ssl: Any = None,
                 stall_cap_s: float | None = None):
        self.host = host
        self.ssl = ssl  #: an ``ssl.SSLContext`` to speak AMI over TLS (like ``tlsenable = yes``)
        self.port = port
        self.username = username
        self.secret = secret
        self.timestamps = timestamps
        self.clock = PbxClock(time_scale, stall_cap_s)
        self.prompt_durations = dict(prompt_durations or {})
        self.default_prompt_s = default_prompt_s
        self.confirm_delay_s = confirm_delay_s
        self.heartbeat_variable = heartbeat_variable
        self.heartbeat_stale_s = heartbeat_stale_s
        self.noise = noise
        self.default_agent = agent
        self.crashed = ""  #: why the fake "crashed" (see crash())
        self.mute_works = True
        #: CALLGUARD_PICKUP_S: TIMEOUT(absolute) set before AGI(agi:async).  The shipped dialplan
        #: says 2 s; tests on a loaded machine get more unless they test the guard itself.
        self.pickup_s = 5.0
        self.payment_wait_s = 1.0  #: CALLGUARD_PAYMENT_WAIT_S: the payment guard's wait for the mute
        self.customer_features = False  #: a site's own hotkey Gosub that also runs on the customer
        self.astdb: dict[str, str] = {}  #: AstDB, "/family/key" -> value
        self.rooms: dict[str, str] = {}  #: ConfBridge conference name -> its bridge id
        self.dtmf_grace_s = 0.0  #: see FakeCall.press
        self.write_recordings = False  #: MixMonitor writes a real WAV at its File path
        self.splitter: Splitter | None = None
        self.split_pause_s = 0.0
        self.response_delay_s = 0.0
        self.event_delay_s = 0.0
        self.lose: Callable[[str, str, bytes], bool] | None = None
        self.refuse_connections = False
        self.globals: dict[str, str] = {}
        self.heartbeat_set_at: float | None = None  #: wall clock of the last heartbeat Setvar
        self.channels: dict[str, FakeChannel] = {}
        self.calls: list[FakeCall] = []
        self._by_linkedid: dict[str, FakeCall] = {}
        #: bridge id -> its channels (a scan of every channel per BridgeEnter was quadratic in live calls)
        self._bridges: dict[str, list[FakeChannel]] = {}
        self.actions: list[tuple[float, dict[str, str]]] = []  #: (perf_counter, action) as received
        self.action_hooks: list[Callable[[dict[str, str], float], None]] = []
        self.bytes_sent = 0
        self.bytes_received = 0
        self.flood_sent = 0
        self.logins = 0
        self._sessions: set[_Session] = set()
        self._server: asyncio.base_events.Server | None = None
        self._rng = random.Random(seed)
        self._seq = itertools.count(2)
        self._uid = itertools.count(4)
        self._epoch = int(time.time())
        self._wall0 = time.time()
        self._flood: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()

    # -- lifecycle --------------------------------------------------------------------

    async def start(self) -> "FakeAsterisk":
        loop = asyncio.get_running_loop()
        self.clock.start()
        self._server = await loop.create_server(lambda: _Session(self), self.host, self.port, reuse_address=True,
                                                ssl=self.ssl)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        self.stop_flood()
        self.clock.stop()
        if self._server is not None:
            self._server.close()
        for session in list(self._sessions):
            session.close(abort=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
            self._server = None
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def __aenter__(self) -> "FakeAsterisk":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    @property
    def connected_clients(self) -> int:
        return sum(1 for s in self._sessions if s.authenticated)

    async def wait_for_client(self, timeout: float = 5.0, count: int = 1) -> None:
        """Until ``count`` clients are logged in."""
        async def logged_in() -> None:
            while self.connected_clients < count:
                await asyncio.sleep(0.005)
        await asyncio.wait_for(logged_in(), timeout)

    def drop_connections(self) -> None:
        """Cut every AMI connection (like a network failure: no Shutdown event)."""
        for session in list(self._sessions):
            session.close(abort=True)

    def send_raw(self, data: bytes) -> None:
        """Write exactly these bytes to every logged-in client (a broken or hostile peer)."""
        for session in list(self._sessions):
            if session.authenticated:
                session._write_now(data)

    # -- clocks -------------------------------------------------------------------------

    @property
    def time_scale(self) -> float:
        return self.clock.time_scale

    def now(self) -> float:
        """The PBX clock (epoch seconds): wall time, or unscaled time under ``time_scale``."""
        if self.clock.time_scale == 1.0 and not self.clock.virtual:
            return time.time()
        return self._wall0 + self.clock.elapsed()

    async def sleep(self, seconds: float) -> None:
        """Sleep ``seconds`` of PBX time."""
        await self.clock.sleep(seconds)

    def _uniqueid(self) -> str:
        return f"{self._epoch}.{next(self._uid)}"

    def _spawn(self, coro: Any) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- sending -------------------------------------------------------------------------

    def emit(self, name: str, headers: Iterable[tuple[str, Value]], privilege: str = "call,all") -> None:
        """Send an event to every logged-in connection that wants its class."""
        klass = _CLASS_OF.get(name, privilege.split(",")[0])
        targets = [s for s in self._sessions if s.wants(name, klass)]
        if not targets:
            return
        head: list[tuple[str, Value]] = [("Event", name), ("Privilege", privilege)]
        if self.timestamps:
            head.append(("Timestamp", f"{self.now():.6f}"))
        data = message(head + list(headers))
        for session in targets:
            session.write(data, "event", name)

    def _respond(self, session: _Session, action: Mapping[str, str], headers: list[tuple[str, Value]],
                 response: str = "Success") -> None:
        head: list[tuple[str, Value]] = [("Response", response)]
        if action.get("actionid"):
            head.append(("ActionID", action["actionid"]))
        session.write(message(head + headers), "response", action.get("action", ""))

    def _error(self, session: _Session, action: Mapping[str, str], text: str) -> None:
        self._respond(session, action, [("Message", text)], "Error")

    def _channel_event(self, name: str, channel: FakeChannel, extra: Iterable[tuple[str, Value]] = (),
                       privilege: str = "call,all") -> None:
        self.emit(name, channel.snapshot() + list(extra), privilege)

    def _noise(self, channel: FakeChannel, app: str, data: str = "", variables: int = 2) -> None:
        """The dialplan chatter a real PBX produces (Newexten + VarSet)."""
        if not self.noise:
            return
        channel.application, channel.app_data = app, data
        self._channel_event("Newexten", channel, [("Extension", channel.exten), ("Application", app),
                                                  ("AppData", data)], "dialplan,all")  # raw, like Asterisk
        for i in range(variables):
            self._channel_event("VarSet", channel, [("Variable", f"__CG_NOISE_{i}"), ("Value", app)],
                                "dialplan,all")

    # -- actions ---------------------------------------------------------------------------

    def _handle_action(self, session: _Session, action: dict[str, str]) -> None:
        stamp = time.perf_counter()
        self.actions.append((stamp, action))
        for hook in self.action_hooks:
            hook(action, stamp)
        name = action.get("action", "").lower()
        if name == "challenge":
            return self._challenge(session, action)
        if name == "login":
            return self._login(session, action)
        if name == "logoff":
            self._respond(session, action, [("Message", "Thanks for all the fish.")], "Goodbye")
            asyncio.get_running_loop().call_soon(session.close)
            return
        if not session.authenticated:
            return self._error(session, action, "Permission denied")
        handler = getattr(self, f"_action_{name}", None)
        if handler is None:
            return self._error(session, action, f"Invalid/unknown command: {action.get('action', '')}. "
                                                f"Use Action: ListCommands to show available commands.")
        handler(session, action)

    def _challenge(self, session: _Session, action: dict[str, str]) -> None:
        if action.get("authtype", "").lower() != "md5":
            return self._error(session, action, "Must specify AuthType")
        session.challenge = str(self._rng.randrange(100_000_000, 999_999_999))
        self._respond(session, action, [("Challenge", session.challenge)])

    def _login(self, session: _Session, action: dict[str, str]) -> None:
        ok = action.get("username") == self.username
        if action.get("authtype", "").lower() == "md5":
            expected = hashlib.md5((session.challenge + self.secret).encode()).hexdigest()
            ok = ok and bool(session.challenge) and action.get("key", "").lower() == expected
        else:
            ok = ok and action.get("secret") == self.secret
        if not ok:
            self._error(session, action, "Authentication failed")
            asyncio.get_running_loop().call_later(0.05 * self.time_scale, session.close)
            return
        session.authenticated = True
        session.username = self.username
        events = action.get("events", "on").lower()
        if events in ("on", "yes", "true", "1", "all", ""):
            session.event_classes = None
        elif events in ("off", "no", "false", "0"):
            session.event_classes = set()
        else:
            session.event_classes = {c.strip() for c in events.split(",")}
        self.logins += 1
        self._respond(session, action, [("Message", "Authentication accepted")])
        uptime = int(time.time() - self._wall0)
        head: list[tuple[str, Value]] = [("Event", "FullyBooted"), ("Privilege", "system,all")]
        if self.timestamps:
            head.append(("Timestamp", f"{self.now():.6f}"))
        if session.wants("FullyBooted", "system"):
            session.write(message(head + [("Uptime", uptime), ("LastReload", uptime),
                                          ("Status", "Fully Booted")]), "event", "FullyBooted")

    def _action_events(self, session: _Session, action: dict[str, str]) -> None:
        mask = action.get("eventmask", "on").lower()
        session.event_classes = None if mask in ("on", "yes", "all") else set() if mask in ("off", "no") else {
            c.strip() for c in mask.split(",")}
        self._respond(session, action, [("Events", "On" if session.event_classes is None else "Off")])

    def _action_ping(self, session: _Session, action: dict[str, str]) -> None:
        self._respond(session, action, [("Ping", "Pong"), ("Timestamp", f"{self.now():.6f}")])

    def _action_setvar(self, session: _Session, action: dict[str, str]) -> None:
        variable, value = action.get("variable", ""), action.get("value", "")
        if not variable:
            return self._error(session, action, "No variable specified")
        channel_name = action.get("channel", "")
        if channel_name:
            channel = self.channels.get(channel_name)
            if channel is None:
                return self._error(session, action, "No such channel")
            if variable.upper() == "TIMEOUT(ABSOLUTE)":
                self._arm_timeout(channel, float(value or 0))
            else:
                channel.variables[variable] = value
        else:
            self.globals[variable] = value
            if variable == self.heartbeat_variable:
                self.heartbeat_set_at = time.time()
        self._respond(session, action, [("Message", "Variable Set")])
        if channel_name and channel_name in self.channels:
            self._channel_event("VarSet", self.channels[channel_name], [("Variable", variable),
                                                                         ("Value", c_escape(value))], "dialplan,all")
        else:
            self.emit("VarSet", [("Channel", "none"), ("Uniqueid", "none"), ("Variable", variable),
                                 ("Value", c_escape(value))], "dialplan,all")

    def _action_getvar(self, session: _Session, action: dict[str, str]) -> None:
        variable = action.get("variable", "")
        channel_name = action.get("channel", "")
        if channel_name:
            channel = self.channels.get(channel_name)
            if channel is None:
                return self._error(session, action, "No such channel")
            value = self._read(channel, variable)
        else:
            value = self.globals.get(variable, "")
        self._respond(session, action, [("Variable", variable), ("Value", value)])

    def _read(self, channel: FakeChannel, variable: str) -> str:
        """A variable or one of the functions the listener reads (value raw, like Asterisk)."""
        function = re.fullmatch(r"(\w+)\((.*)\)", variable)
        if function is None:
            return channel.variables.get(variable, "")
        name, args = function.group(1).upper(), function.group(2).split(",")
        if name == "CHANNEL":
            return {"linkedid": channel.linkedid, "uniqueid": channel.uniqueid, "context": channel.context,
                    "exten": channel.exten, "appname": channel.application, "name": channel.name,
                    "channeltype": channel.name.split("/", 1)[0]}.get(args[0].strip().lower(), "")
        if name == "CALLERID":
            return str({"num": channel.number, "name": channel.caller_name}.get(args[0].strip().lower(), ""))
        if name == "MIXMONITOR":  # MIXMONITOR(<id>,filename): empty once that MixMonitor ended
            running = channel.recording
            return running.file if running is not None and running.mixmonitor_id == args[0] else ""
        return ""

    def _action_dbgettree(self, session: _Session, action: dict[str, str]) -> None:
        prefix = "/" + "/".join(p for p in (action.get("family", ""), action.get("key", "")) if p)
        items = [(k, v) for k, v in sorted(self.astdb.items()) if k == prefix or k.startswith(prefix + "/")]
        self._respond(session, action, [("EventList", "start"), ("Message", "Result will follow")])
        aid = action.get("actionid", "")
        head = [("ActionID", aid)] if aid else []
        for key, value in items:
            session.write(message([("Event", "DBGetTreeResponse")] + head + [("Key", key), ("Val", value)]),
                          "response", "DBGetTreeResponse")
        session.write(message([("Event", "DBGetTreeComplete")] + head + [("EventList", "Complete"),
                                                                           ("ListItems", len(items))]),
                      "response", "DBGetTreeComplete")

    def _action_dbdel(self, session: _Session, action: dict[str, str]) -> None:
        key = f"/{action.get('family', '')}/{action.get('key', '')}"
        if self.astdb.pop(key, None) is None:
            return self._error(session, action, "Database entry not found")
        self._respond(session, action, [("Message", "Key deleted successfully")])

    def _action_coreshowchannels(self, session: _Session, action: dict[str, str]) -> None:
        self._respond(session, action, [("EventList", "start"), ("Message", "Channels will follow")])
        live = [c for c in self.channels.values() if not c.hung_up]
        aid = action.get("actionid", "")
        for channel in live:
            snap = channel.snapshot()
            head = [("Event", "CoreShowChannel")] + ([("ActionID", aid)] if aid else [])
            duration = int(time.time() - channel.created)
            body = snap + [("Application", channel.application), ("ApplicationData", channel.app_data),
                           ("Duration", f"{duration // 3600:02d}:{duration // 60 % 60:02d}:{duration % 60:02d}"),
                           ("BridgeId", channel.bridge or "")]
            session.write(message(head + body), "response", "CoreShowChannel")
        tail = [("Event", "CoreShowChannelsComplete")] + ([("ActionID", aid)] if aid else [])
        session.write(message(tail + [("EventList", "Complete"), ("ListItems", len(live))]), "response",
                      "CoreShowChannelsComplete")

    def _action_agi(self, session: _Session, action: dict[str, str]) -> None:
        name, command = action.get("channel", ""), action.get("command", "")
        if not name or not command:
            return self._error(session, action, "Both, Channel and Command are *required*")
        channel = self.channels.get(name)
        if channel is None or channel.hung_up:
            return self._error(session, action, f"Channel {name} does not exist.")
        if channel.agi_queue is None:
            return self._error(session, action, f"Failed to add AGI command to channel {name} queue")
        channel.agi_queue.put_nowait((command, action.get("commandid", "")))
        self._respond(session, action, [("Message", "Added AGI command to queue")])

    def _action_mixmonitor(self, session: _Session, action: dict[str, str]) -> None:
        channel = self.channels.get(action.get("channel", ""))
        if not action.get("channel"):
            return self._error(session, action, "No channel specified")
        if channel is None or channel.hung_up:
            return self._error(session, action, "No such channel")
        if not action.get("file"):
            return self._error(session, action, "Could not start monitoring channel")
        options = action.get("options", "")
        mixmon_id = f"0x7f{self._rng.randrange(16**10):010x}"
        recording = FakeRecording(mixmon_id, channel.name, action["file"], options, self.now())
        recording.changes.append((recording.started_at, False))
        if self.write_recordings:
            try:
                recording.audio = RecordingFile(action["file"], recording.started_at)
            except OSError as exc:  # like Asterisk: the action succeeds, the log says why no file
                log.warning("MixMonitor: cannot write %s: %s", action["file"], exc)
        channel.recording = recording
        channel.recordings.append(recording)
        channel.variables["MIXMONITOR_FILENAME"] = action["file"]
        uid = re.search(r"i\(([^)]*)\)", options)
        headers: list[tuple[str, Value]] = []
        if uid:
            channel.variables[uid.group(1)] = mixmon_id
            headers.append(("MixMonitorID", mixmon_id))
        self._respond(session, action, headers)
        self._later(self.confirm_delay_s, self._channel_event, "MixMonitorStart", channel)

    def _action_mixmonitormute(self, session: _Session, action: dict[str, str]) -> None:
        direction = action.get("direction", "")
        if not direction:
            return self._error(session, action, "No direction specified. Must be read, write or both")
        if direction.lower() not in ("read", "write", "both"):
            return self._error(session, action, "Invalid direction specified. Must be read, write or both")
        if not action.get("channel"):
            return self._error(session, action, "No channel specified")
        state = action.get("state", "")
        if not state:
            return self._error(session, action, "No state specified")
        channel = self.channels.get(action["channel"])
        if channel is None or channel.hung_up:
            return self._error(session, action, "No such channel")
        recording = channel.recording
        if recording is None or recording.stopped_at is not None:
            return self._error(session, action, "Cannot set mute flag")
        muted = state.lower() in ("1", "yes", "true", "on")
        self._respond(session, action, [])
        if not self.mute_works:
            return
        recording.set_muted(self.now(), muted)
        self._later(self.confirm_delay_s, self._channel_event, "MixMonitorMute", channel,
                    [("Direction", direction), ("State", "1" if muted else "0")])

    def _action_stopmixmonitor(self, session: _Session, action: dict[str, str]) -> None:
        if not action.get("channel"):
            return self._error(session, action, "No channel specified")
        channel = self.channels.get(action["channel"])
        if channel is None or channel.hung_up:
            return self._error(session, action, "No such channel")
        recording = channel.recording
        wanted = action.get("mixmonitorid")
        if recording is None or (wanted and wanted != recording.mixmonitor_id):
            return self._error(session, action, "Could not stop monitoring channel")
        recording.stop(self.now())
        channel.recording = None
        self._respond(session, action, [])
        self._later(self.confirm_delay_s, self._channel_event, "MixMonitorStop", channel)

    def _action_muteaudio(self, session: _Session, action: dict[str, str]) -> None:
        """res_mutestream's ``MuteAudio``: Success and no event, like Asterisk 22 (asterisk22_muteaudio.ami)."""
        channel = self.channels.get(action.get("channel", ""))
        if channel is None:
            return self._error(session, action, "No such channel")
        direction, state = action.get("direction", "").lower(), action.get("state", "").lower()
        if direction not in ("in", "out", "all") or state not in ("on", "off"):
            return self._error(session, action, "Failed to mute/unmute stream")
        if state == "on":
            channel.muted_audio.add(direction)
        else:
            channel.muted_audio.discard(direction)
        self._respond(session, action, [])

    def _action_hangup(self, session: _Session, action: dict[str, str]) -> None:
        channel = self.channels.get(action.get("channel", ""))
        if channel is None or channel.hung_up:
            return self._error(session, action, "No such channel")
        self._respond(session, action, [("Message", "Channel Hungup")])
        call = self._call_of(channel)
        if call is not None and channel in (call.channel, call.originator):
            self._spawn(self._hangup_call(call))
        else:
            self._spawn(self._hangup_channel(channel))

    def _action_userevent(self, session: _Session, action: dict[str, str]) -> None:
        name = action.get("userevent", "")
        if not name:
            return self._error(session, action, "UserEvent needs a name")
        extra = [(k.title(), v) for k, v in action.items() if k not in ("action", "actionid", "userevent")]
        self._respond(session, action, [("Message", "Event Sent")])
        self.emit("UserEvent", [("UserEvent", name)] + extra, "user,all")

    def _action_originate(self, session: _Session, action: dict[str, str]) -> None:
        target = action.get("channel", "")
        player = re.fullmatch(r"Local/(pay-[A-Za-z0-9-]+)@" + re.escape(PAYMENT_CONTEXT) + r"(/n)?", target)
        if player:
            return self._originate_player(session, action, player.group(1))
        match = re.fullmatch(r"Local/([^@]+)@" + re.escape(INBOUND_CONTEXT), target)
        if not match:
            return self._error(session, action, "Originate failed")
        cid = re.fullmatch(r'\s*"?([^"<]*)"?\s*<([^>]*)>\s*', action.get("callerid", ""))
        name, number = (cid.group(1).strip(), cid.group(2)) if cid else ("", action.get("callerid", ""))
        call = self.place_call(number, name, exten=match.group(1))
        is_async = action.get("async", "").lower() in ("true", "yes", "1")
        if is_async:
            self._respond(session, action, [("Message", "Originate successfully queued")])
            self._spawn(self._originate_response(session, action, call))
        else:
            async def answer_when_up() -> None:
                await call.answered.wait()
                self._respond(session, action, [("Message", "Originate successfully queued")])
            self._spawn(answer_when_up())

    def _originate_player(self, session: _Session, action: dict[str, str], exten: str) -> None:
        """``Local/pay-<id>@callguard-payment/n``: ;1 runs ``join`` (BridgeAdd into the customer's
        bridge), ;2 runs ``pay-<id>`` (AsyncAGI: the listener plays prompts; then Hangup)."""
        variables = dict(v.split("=", 1) for v in action.get("variable", "").split(",") if "=" in v)
        target = self.channels.get(variables.get("CALLGUARD_PAY_TARGET", ""))
        call = self._call_of(target) if target is not None else None
        if call is None or target is None or target.bridge is None:
            return self._error(session, action, "Originate failed")
        self._respond(session, action, [("Message", "Originate successfully queued")])
        seq = next(self._seq)
        near = FakeChannel(f"Local/{exten}@{PAYMENT_CONTEXT}-{seq:08x};1", self._uniqueid(), call.linkedid,
                           "", "callguard payment", PAYMENT_CONTEXT, "join")
        far = FakeChannel(f"Local/{exten}@{PAYMENT_CONTEXT}-{seq:08x};2", self._uniqueid(), call.linkedid,
                          "", "callguard payment", PAYMENT_CONTEXT, exten)
        call.player = (near, far)
        for channel in (near, far):
            self.channels[channel.name] = channel
            self._channel_event("Newchannel", channel)

        async def run() -> None:
            self._bridge(call, near)  # BridgeAdd(${CALLGUARD_PAY_TARGET})
            await self._async_agi(far, call)
            for channel in (far, near):
                await self._hangup_channel(channel)
            call.player = None

        self._spawn(run())

    async def _originate_response(self, session: _Session, action: dict[str, str], call: FakeCall) -> None:
        await call.answered.wait()
        head: list[tuple[str, Value]] = [("Event", "OriginateResponse"), ("Privilege", "call,all")]
        if self.timestamps:
            head.append(("Timestamp", f"{self.now():.6f}"))
        body: list[tuple[str, Value]] = [
            ("ActionID", action.get("actionid", "")), ("Response", "Success"), ("Channel", call.originator.name),
            ("Context", action.get("context", "")), ("Exten", action.get("exten", "")), ("Reason", 4),
            ("Uniqueid", call.originator.uniqueid), ("CallerIDNum", c_escape(call.number)),
            ("CallerIDName", c_escape(call.name))]
        if session.wants("OriginateResponse", "call"):
            session.write(message(head + body), "event", "OriginateResponse")

    def _later(self, delay: float, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn`` after ``delay`` PBX seconds (at once for 0)."""
        if delay > 0:
            self.clock.timer(delay).add_done_callback(lambda future: future.cancelled() or fn(*args))
        else:
            fn(*args)

    # -- calls and the dialplan ------------------------------------------------------------

    def place_call(self, number: Value = "+14155550123", name: Value = "José Cust", *, exten: str = "100",
                   agent: tuple[str, str] | None | bool = True, agent_via_join: bool = False,
                   agent_marked: bool = True, agent_endpoint: str = "Local/agent@agent-sim") -> FakeCall:
        """An inbound call enters ``callguard-inbound``; returns at once (the call runs as a task).

        The agent is dialled like the shipped README shows: with
        ``U(callguard-staff^s^1)`` (``agent_marked``: ``CALLGUARD_STAFF=1``
        and the hotkeys on that leg), or through ``callguard-join``
        (``agent_via_join``), or with neither (a site that did not add the
        Gosub).  ``agent_endpoint`` names the leg (``PJSIP/agent-101`` gives
        ``PJSIP/agent-101-0000000a``; a ``Local/...`` endpoint gets its ``;1``/``;2`` halves).
        """
        spec = self.default_agent if agent is True else (None if agent is False else agent)
        call = FakeCall(self, number, name, exten, spec, agent_via_join)  # type: ignore[arg-type]
        call.agent_marked, call.agent_endpoint = agent_marked, agent_endpoint
        self.calls.append(call)
        self._by_linkedid[call.linkedid] = call
        call.task = self._spawn(self._run_call(call))
        return call

    def _call_of(self, channel: FakeChannel) -> FakeCall | None:
        return self._by_linkedid.get(channel.linkedid)

    def heartbeat_fresh(self) -> bool:
        """What the shipped dialplan's check decides (wall clock, like ``${EPOCH}``)."""
        raw = self.globals.get(self.heartbeat_variable, "")
        try:
            value = float(raw)
        except ValueError:
            return False
        return time.time() - value <= self.heartbeat_stale_s

    async def _run_call(self, call: FakeCall) -> None:
        for channel in (call.originator, call.channel):
            self.channels[channel.name] = channel
            channel.state = 0 if channel is call.originator else 4
            self._channel_event("Newchannel", channel)
        for channel in (call.channel, call.originator):
            channel.state = 6
            if self.noise:
                self._channel_event("Newstate", channel)
        self._noise(call.channel, "Answer")
        for variable, value in (("CALLGUARD_ROLE", "caller"), ("CALLGUARD_PAYMENT", "0"), ("CALLGUARD_PAUSED", "0")):
            call.channel.variables[variable] = value
        call.channel.priority = 3
        if self.heartbeat_fresh():
            call.path = "asyncagi"
            self._arm_timeout(call.channel, self.pickup_s)
            await self._async_agi(call.channel, call)
            if call.channel.timed_out and not call.channel.hung_up:
                call.path = "timeout-fallback"
                await self._fallback(call, "listener-timeout")
            else:
                self._arm_timeout(call.channel, 0)  # Set(TIMEOUT(absolute)=0) after AGI returned
        else:
            call.path = "fallback"
            call.answered_at = self.now()
            call._answered_pbx = self.clock.elapsed()
            call.answered.set()
            await self._fallback(call, "heartbeat-stale")
        if call.channel.hung_up:
            return await self._finish(call)
        call.channel.priority = 4
        if call.destination is not None:
            self._noise(call.channel, "Goto", call.destination)
        elif call.agent_spec is not None:
            await self._dial_agent(call)
        await call.ended.wait()

    async def _fallback(self, call: FakeCall, reason: str) -> None:
        """``[callguard-fallback]``: notice, no recording, a line in AstDB."""
        channel = call.channel
        channel.timed_out = False
        self._arm_timeout(channel, 0)
        channel.variables["CALLGUARD_FALLBACK"] = reason
        channel.variables["CALLGUARD_CONSENT"] = "not-recorded"
        self._dialplan_stop_mixmonitor(channel)
        self._astdb_fallback(channel, reason)
        self._noise(channel, "Playback", "callguard/fallback-notice")
        await self._play_wait(channel, "callguard/en/fallback-notice")

    def _arm_timeout(self, channel: FakeChannel, seconds: float) -> None:
        """``TIMEOUT(absolute)``: 0 disarms; when it fires in AGI the channel leaves AGI for "T"."""
        if channel.timeout_timer is not None:
            channel.timeout_timer.cancel()
            channel.timeout_timer = None
        if seconds <= 0 or channel.hung_up:
            return
        # Real seconds even under time_scale: the guard watches the listener,
        # which runs in real time (a scaled guard would fire between two beats).
        loop = asyncio.get_running_loop()
        timer = channel.timeout_timer = loop.create_future()
        handle = loop.call_later(seconds, lambda: timer.done() or timer.set_result(None))
        timer.add_done_callback(lambda _: handle.cancel())

        def fire(future: asyncio.Future) -> None:
            if future.cancelled() or channel.hung_up or channel.timeout_timer is not timer:
                return
            channel.timeout_timer = None
            channel.timed_out = True
            # Like a soft hangup (AST_SOFTHANGUP_TIMEOUT): playback and GET DATA end
            # with result=-1 and AsyncAGI returns; the dialplan goes on at "T".
            if channel.hangup_future is not None and not channel.hangup_future.done():
                channel.hangup_future.set_result(None)

        timer.add_done_callback(fire)

    async def _async_agi(self, channel: FakeChannel, call: FakeCall, args: tuple[str, ...] = ()) -> None:
        """``AGI(agi:async)``: announce the channel, run queued commands until BREAK or hangup."""
        channel.application, channel.app_data = "AGI", "agi:async"
        channel.agi_queue = asyncio.Queue()
        channel.agi_done.clear()
        self._noise(channel, "AGI", "agi:async", variables=1)
        env = [("agi_request", "async"), ("agi_channel", channel.name), ("agi_language", channel.language),
               ("agi_type", "Local"), ("agi_uniqueid", channel.uniqueid),
               ("agi_version", "UNKNOWN__and_probably_unsupported"), ("agi_callerid", channel.number),
               ("agi_calleridname", channel.caller_name), ("agi_callingpres", "0"), ("agi_callingani2", "0"),
               ("agi_callington", "0"), ("agi_callingtns", "0"), ("agi_dnid", "unknown"),
               ("agi_rdnis", "unknown"), ("agi_context", channel.context), ("agi_extension", channel.exten),
               ("agi_priority", str(channel.priority)), ("agi_enhanced", "0.0"), ("agi_accountcode", ""),
               ("agi_threadid", str(140178104178368 + next(self._seq)))]
        env += [(f"agi_arg_{i}", a) for i, a in enumerate(args, 1)]
        raw = b"".join(k.encode() + b": " + (v if isinstance(v, bytes) else str(v).encode("utf-8")) + b"\n"
                       for k, v in env) + b"\n"
        if channel is call.channel:
            call.answered_at = self.now()
            call._answered_pbx = self.clock.elapsed()
        self._channel_event("AsyncAGIStart", channel, [("Env", uri_encode(raw))], "agi,all")
        if channel is call.channel:
            call.answered.set()
        await self._agi_loop(channel, call)

    async def _agi_loop(self, channel: FakeChannel, call: FakeCall) -> None:
        assert channel.agi_queue is not None
        queue = channel.agi_queue
        hangup = channel.hangup_future = asyncio.get_running_loop().create_future()
        try:
            while not channel.hung_up and not channel.timed_out:
                getter = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait({getter, hangup}, return_when=asyncio.FIRST_COMPLETED)
                if getter not in done:
                    getter.cancel()
                    break
                command, command_id = getter.result()
                internal = str(self._rng.randrange(10_000_000, 2_000_000_000))
                self._channel_event("AGIExecStart", channel, [("CommandId", internal), ("Command", command)],
                                    "agi,all")
                result, leave = await self._agi_command(channel, call, command)
                if self.noise:
                    self._channel_event("AGIExecEnd", channel, [("CommandId", internal), ("Command", command),
                                                                ("ResultCode", "200"), ("Result", "Success")],
                                        "agi,all")
                self._channel_event("AsyncAGIExec", channel, [("Result", uri_encode(result)),
                                                              ("CommandId", command_id)], "agi,all")
                if leave or channel.hung_up or channel.timed_out:
                    break
        finally:
            channel.agi_queue = None
            channel.application, channel.app_data = "", ""
            self._channel_event("AsyncAGIEnd", channel, (), "agi,all")
            channel.agi_done.set()
            call._notify()

    async def _agi_command(self, channel: FakeChannel, call: FakeCall, command: str) -> tuple[str, bool]:
        """Run one AGI command; returns (result line, leaves AGI)."""
        words = _agi_args(command)
        verb = " ".join(w.upper() for w in words[:2])
        if verb == "ASYNCAGI BREAK":
            return "200 result=0\n", True
        if verb == "STREAM FILE" and len(words) >= 3:
            if call.player is not None and channel is call.player[1]:
                call.caller_heard.append(words[2])
            completed, endpos = await self._play_wait(channel, words[2])
            return (f"200 result=0 endpos={endpos}\n" if completed else f"200 result=-1 endpos={endpos}\n"), False
        if verb == "GET DATA" and len(words) >= 3:
            timeout_ms = int(words[3]) if len(words) > 3 and words[3].isdigit() else 5000
            max_digits = int(words[4]) if len(words) > 4 and words[4].isdigit() else 1024
            return await self._get_data(channel, words[2], timeout_ms, max_digits), False
        if verb == "SET VARIABLE" and len(words) >= 4:
            channel.variables[words[2]] = words[3]
            self._channel_event("VarSet", channel, [("Variable", words[2]), ("Value", c_escape(words[3]))],
                                "dialplan,all")
            return "200 result=1\n", False
        if verb in ("SET CONTEXT", "SET EXTENSION", "SET PRIORITY") and len(words) >= 3:
            key = verb.split()[1].lower()
            parts = dict(zip(("context", "extension", "priority"),
                             (call.destination or f"{channel.context},{channel.exten},1").split(",")))
            parts[key] = words[2]
            if channel is call.channel:
                call.destination = ",".join(parts[k] for k in ("context", "extension", "priority"))
            return "200 result=0\n", False
        if verb == "ANSWER" or words[:1] == ["ANSWER"]:
            return "200 result=0\n", False
        return "510 Invalid or unknown command\n", False

    def _prompt_seconds(self, file: str) -> float:
        base = file.rsplit("/", 1)[-1]
        return self.prompt_durations.get(file, self.prompt_durations.get(base, self.default_prompt_s))

    async def _play_wait(self, channel: FakeChannel, file: str) -> tuple[bool, int]:
        """Play a sound: (completed, endpos in 8 kHz samples)."""
        seconds = self._prompt_seconds(file)
        started = self.clock.elapsed()
        hangup = channel.hangup_future
        if hangup is None or hangup.done():
            hangup = channel.hangup_future = asyncio.get_running_loop().create_future()
        played = self.clock.timer(seconds)
        try:
            await asyncio.wait({hangup, played}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            played.cancel()
        if not hangup.done():
            return True, int(seconds * 8000)
        return False, int(min(self.clock.elapsed() - started, seconds) * 8000)

    async def _get_data(self, channel: FakeChannel, file: str, timeout_ms: int, max_digits: int) -> str:
        loop = asyncio.get_running_loop()
        gather = channel.gather = _Gather(max(1, max_digits), loop.create_future())
        call = self._call_of(channel)
        if call is not None:
            call._notify()
        hangup = channel.hangup_future
        if hangup is None or hangup.done():
            hangup = channel.hangup_future = loop.create_future()
        expiry = self.clock.timer(self._prompt_seconds(file) + timeout_ms / 1000.0)
        try:
            done, _ = await asyncio.wait({gather.future, hangup, expiry}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            expiry.cancel()
            channel.gather = None
            if call is not None:
                call._notify()
        if hangup in done or channel.hung_up or channel.timed_out:
            return "200 result=-1\n"
        if gather.future.done() and not gather.future.cancelled():
            return f"200 result={gather.digits}\n"
        return f"200 result={gather.digits} (timeout)\n"

    def _dtmf(self, channel: FakeChannel, digit: str) -> None:
        """A key pressed on ``channel``'s phone, as Asterisk 22 handles it (fixtures asterisk22_dtmf*,
        asterisk22_framedrop_*, asterisk22_muteaudio).

        ``DTMFBegin``/``DTMFEnd`` Received on the pressing leg, Sent on each leg of its bridge the
        digit is written to, Received on the far half of a Local channel - unless that half has
        ``FRAME_DROP(RX)`` with DTMF (then no event there and nothing goes on: it is what keeps
        digits from an agent reached through a Local channel).  The keypress also carries in-band
        tone audio, which ``MuteAudio`` (in) on the far half keeps from the agent, and which the
        recording writes unless muted.  ``FRAME_DROP(TX)`` on a leg a digit crosses crashes Asterisk.
        """
        if _drops_dtmf(channel, "RX"):
            return  # dropped before the AMI layer: no event on any channel
        self._dtmf_events(channel, digit, "Received")
        gather = channel.gather
        call = self._call_of(channel)
        if call is not None and channel is call.channel:
            now = self.now()
            recording = channel.recording
            if recording is not None and recording.audio is not None:
                recording.audio.dtmf(now, digit, audible=not recording.muted)
            if channel.bridge is not None and (gather is None or gather.future.done()):
                self._cross_bridge(call, channel, digit, now)
        if gather is None or gather.future.done():
            return
        gather.digits += digit
        if len(gather.digits) >= gather.max_digits or digit == "#":
            gather.digits = gather.digits.rstrip("#")
            gather.future.set_result(gather.digits)

    def _dtmf_events(self, channel: FakeChannel, digit: str, direction: str) -> None:
        self._channel_event("DTMFBegin", channel, [("Digit", digit), ("Direction", direction)], "dtmf,all")
        self._channel_event("DTMFEnd", channel, [("Digit", digit), ("DurationMs", 120),
                                                 ("Direction", direction)], "dtmf,all")

    def _cross_bridge(self, call: FakeCall, source: FakeChannel, digit: str, now: float) -> None:
        for leg in [c for c in self._bridges.get(source.bridge or "", ()) if c is not source]:
            if _drops_dtmf(leg, "TX") or _drops_dtmf(source, "TX"):
                self.crash("FRAME_DROP(TX) matched a DTMF frame in a bridge: free(): double free detected")
                return
            self._dtmf_events(leg, digit, "Sent")
            if leg is call.agent and call.agent_far is not None:
                far = call.agent_far
                if not _drops_dtmf(far, "RX"):
                    self._dtmf_events(far, digit, "Received")
                    call.agent_heard.append(("dtmf", digit, now))
                if "in" not in far.muted_audio and "all" not in far.muted_audio:
                    call.agent_heard.append(("tone", digit, now))

    def crash(self, why: str) -> None:
        """Asterisk aborts: every AMI stream just ends (no Shutdown event), nothing answers again."""
        log.error("fake Asterisk crashed: %s", why)
        self.crashed = why
        self.refuse_connections = True
        for session in list(self._sessions):
            session.close(abort=True)

    def _set(self, channel: FakeChannel, variable: str, value: str) -> None:
        """``Set(variable=value)`` in the dialplan (a VarSet, value escaped like Asterisk)."""
        channel.variables[variable] = value
        self._channel_event("VarSet", channel, [("Variable", variable), ("Value", c_escape(value))],
                            "dialplan,all")

    def _next_seq(self, channel: FakeChannel) -> str:
        """``Set(CALLGUARD_SEQ=$[0${CALLGUARD_SEQ} + 1])``."""
        seq = str(int(channel.variables.get("CALLGUARD_SEQ") or 0) + 1)
        self._set(channel, "CALLGUARD_SEQ", seq)
        return seq

    def _feature(self, call: FakeCall, channel: FakeChannel, action: str) -> None:
        """``[callguard-feature]``: the hotkey Gosub on the channel that pressed the keys."""
        if channel.variables.get("CALLGUARD_ROLE") == "caller" and channel is call.channel and \
                not self.customer_features:
            return  # the shipped Gosub ignores the caller's own channel
        self._set(channel, "CALLGUARD_HOTKEY", f"{action}:{self._next_seq(channel)}")
        if action in ("pause", "resume"):  # the card Gosubs (callguard-card) leave it alone
            self._set(call.channel, "CALLGUARD_PAUSED", "1" if action == "pause" else "0")  # MASTER_CHANNEL()
        self._user_event(call, channel, action, "agent-hotkey", context=FEATURE_CONTEXT)

    async def _signal(self, call: FakeCall, action: str) -> None:
        """``[callguard-signal]`` on the caller's channel, payment guard included."""
        channel = call.channel
        if channel.hung_up:
            return
        if action.startswith("payment"):
            self._set(channel, "CALLGUARD_PAYMENT", "1" if action == "payment-start" else "0")
        elif action in ("pause", "resume"):  # callguard-card's ivr step leaves both alone
            self._set(channel, "CALLGUARD_PAUSED", "1" if action == "pause" else "0")
        self._set(channel, "CALLGUARD_SIGNAL", f"{action}:{self._next_seq(channel)}")
        self._user_event(call, channel, action, "ivr", context="callguard-signal")
        if action == "payment-start" and channel.variables.get("CALLGUARD_MIXMON_ID"):
            deadline = self.clock.elapsed() + self.payment_wait_s
            while channel.variables.get("CALLGUARD_MUTED") != "1" and not channel.hung_up:
                if self.clock.elapsed() >= deadline:
                    self._dialplan_stop_mixmonitor(channel)
                    self._astdb_fallback(channel, "payment-not-confirmed")
                    break
                await self.clock.sleep(0.05)
        call.signals.append((self.now(), action, "ivr"))  # the segment's audio starts now

    def _user_event(self, call: FakeCall, channel: FakeChannel, action: str, source: str,
                    context: str | None = None) -> None:
        """``UserEvent(CallGuard,Action: ...,Source: ...)`` from ``channel``."""
        if source != "ivr":
            call.signals.append((self.now(), action, source))
        saved = channel.context, channel.exten, channel.priority
        if context is not None:
            channel.context, channel.exten, channel.priority = context, action, 1
        self._channel_event("UserEvent", channel, [("UserEvent", "CallGuard"), ("Action", action),
                                                   ("Source", source)], "user,all")
        channel.context, channel.exten, channel.priority = saved

    def _dialplan_stop_mixmonitor(self, channel: FakeChannel) -> None:
        """``StopMixMonitor(${CALLGUARD_MIXMON_ID})`` run by the dialplan (no-op if none runs)."""
        recording = channel.recording
        if recording is None or recording.mixmonitor_id != channel.variables.get("CALLGUARD_MIXMON_ID"):
            return
        recording.stop(self.now())
        channel.recording = None
        self._later(self.confirm_delay_s, self._channel_event, "MixMonitorStop", channel)

    def _astdb_fallback(self, channel: FakeChannel, reason: str) -> None:
        """``Set(DB(callguard-fallback/${UNIQUEID})=${EPOCH}:${CHANNEL(linkedid)}:<reason>)``."""
        self.astdb[f"/callguard-fallback/{channel.uniqueid}"] = f"{int(self.now())}:{channel.linkedid}:{reason}"

    async def _dial_agent(self, call: FakeCall) -> None:
        assert call.agent_spec is not None
        number, name = call.agent_spec
        agent, other = self._staff_leg(call, call.agent_endpoint, number, marked=False)
        call.agent, call.agent_far = agent, other
        if call.agent_via_join:
            await self._join_gosub(agent, call, "agent-sim")
        elif call.agent_marked:  # Dial(...,U(callguard-staff^s^1)): the shipped way to reach staff
            self._staff_gosub(agent)
        if agent.hung_up or call.channel.hung_up:
            return
        self._bridge(call, agent)
        self._bridge(call, call.channel)

    def _staff_leg(self, call: FakeCall, endpoint: str, number: str, marked: bool
                   ) -> tuple[FakeChannel, FakeChannel | None]:
        """A dialled leg: ``<endpoint>-<seq>`` (Local endpoints as a ``;1``/``;2`` pair)."""
        seq = next(self._seq)
        local = endpoint.startswith("Local/")
        base = f"{endpoint}-{seq:08x}"
        leg = FakeChannel(base + (";1" if local else ""), self._uniqueid(), call.linkedid, number, call.name,
                          "agent-sim", "agent", connected=(call.number, call.name))
        far = FakeChannel(base + ";2", self._uniqueid(), call.linkedid, call.number, call.name, "agent-sim",
                          "agent", connected=(number, call.name)) if local else None
        for channel in (leg, far):
            if channel is not None:
                self.channels[channel.name] = channel
                self._channel_event("Newchannel", channel)
        if far is not None:
            self._noise(far, "Answer")
        if marked:
            self._staff_gosub(leg)
        return leg, far

    @staticmethod
    def _staff_gosub(channel: FakeChannel) -> None:
        """``[callguard-staff]``: CALLGUARD_STAFF=1 and the hotkeys, on that leg only."""
        channel.variables["CALLGUARD_STAFF"] = "1"
        channel.variables["DYNAMIC_FEATURES"] = "callguard_pause#callguard_resume"

    async def blind_transfer(self, call: FakeCall, number: str, *, endpoint: str = "", staff: bool = True,
                             via_join: bool = False) -> FakeChannel:
        """The agent blind-transfers the customer (fixture asterisk22_dial_transfer.ami).

        ``BlindTransfer`` (Transferer* = agent, Transferee* = customer), the
        agent leaves, the customer's channel dials the target, which enters a
        new bridge first, then the customer.  The target runs
        ``[callguard-staff]`` (``staff``), ``callguard-join`` (``via_join``) or nothing.
        """
        old = call.agent
        assert old is not None and call.bridge_id is not None
        self.emit("BlindTransfer", [("Result", "Success")] + old.snapshot("Transferer")
                  + call.channel.snapshot("Transferee") + [("IsExternal", "Yes"), ("Context", "staff-xfer"),
                                                           ("Extension", number)])
        for channel in (old, call.agent_far):
            if channel is not None:
                await self._hangup_channel(channel)
        self._leave_bridge(call, call.channel)
        self.emit("BridgeDestroy", self._bridge_headers(call, 0))
        call.bridge_id = None
        target, far = self._staff_leg(call, endpoint or f"Local/{_slug(number)}@staff", number, marked=staff)
        call.agent, call.agent_far = target, far
        if via_join:
            await self._join_gosub(target, call, "agent-sim")
        if not target.hung_up and not call.channel.hung_up:
            self._bridge(call, target)
            self._bridge(call, call.channel)
        return target

    async def enter_conference(self, call: FakeCall, room: str) -> None:
        """The recorded customer goes into ``ConfBridge(room)`` (fixture asterisk22_confbridge.ami)."""
        if call.bridge_id is not None:
            self._leave_bridge(call, call.channel)
        for channel in (call.agent, call.agent_far):
            if channel is not None:
                await self._hangup_channel(channel)
        call.agent = call.agent_far = None
        call.bridge_id = self._room(room)
        self._conference_enter(room, call.channel)

    async def conference_guest(self, room: str, number: str, name: str = "Guest", *, via_join: bool = True,
                               staff: bool = False) -> FakeCall:
        """Someone dials into ``room`` on a call of their own: through ``callguard-join`` (with
        ``CALLGUARD_CONFERENCE=<room>``, as dialplan/README.md shows), marked staff, or neither."""
        guest = FakeCall(self, number, name, "conf", None, False)
        seq = next(self._seq)
        guest.channel = FakeChannel(f"Local/{_slug(number)}@guest-sim-{seq:08x};2", guest.linkedid,
                                    guest.linkedid, number, name, "guest-sim", "conf")
        self.calls.append(guest)
        self._by_linkedid[guest.linkedid] = guest
        self.channels[guest.channel.name] = guest.channel
        self._channel_event("Newchannel", guest.channel)
        if staff:
            self._staff_gosub(guest.channel)
        if via_join:
            guest.channel.variables["CALLGUARD_CONFERENCE"] = room
            await self._join_gosub(guest.channel, guest, "guest-sim")
        if not guest.channel.hung_up:
            guest.bridge_id = self._room(room)
            self._conference_enter(room, guest.channel)
        return guest

    def _room(self, room: str) -> str:
        if room not in self.rooms:
            bridge = f"{self._rng.getrandbits(128):032x}"
            self.rooms[room] = "-".join((bridge[:8], bridge[8:12], bridge[12:16], bridge[16:20], bridge[20:]))
            self.emit("ConfbridgeStart", [("Conference", room)] + self._room_headers(room, 0))
        return self.rooms[room]

    def _room_headers(self, room: str, members: int) -> list[tuple[str, Value]]:
        return [("BridgeUniqueid", self.rooms[room]), ("BridgeType", "base"), ("BridgeTechnology", "softmix"),
                ("BridgeCreator", "ConfBridge"), ("BridgeName", room), ("BridgeNumChannels", members),
                ("BridgeVideoSourceMode", "none")]

    def _conference_enter(self, room: str, channel: FakeChannel) -> None:
        channel.bridge = self.rooms[room]
        members = sum(1 for c in self.channels.values() if c.bridge == channel.bridge and not c.hung_up)
        self.emit("BridgeEnter", self._room_headers(room, members) + channel.snapshot())
        self.emit("ConfbridgeJoin", [("Conference", room)] + self._room_headers(room, members) + channel.snapshot()
                  + [("Admin", "Yes" if channel.variables.get("CALLGUARD_STAFF") else "No"), ("Muted", "No")])

    def _leave_bridge(self, call: FakeCall, channel: FakeChannel) -> None:
        if channel.bridge is None:
            return
        members = sum(1 for c in self.channels.values() if c.bridge == channel.bridge and not c.hung_up) - 1
        if call.bridge_id is not None:
            self.emit("BridgeLeave", self._bridge_headers(call, members) + channel.snapshot())
        channel.bridge = None

    async def _join_gosub(self, channel: FakeChannel, call: FakeCall, home: str) -> None:
        """``U(callguard-join^s^1)`` on an answered party: AGI under the pickup guard, "T" on timeout."""
        channel.context, channel.exten = JOIN_CONTEXT, "s"
        if self.heartbeat_fresh():
            self._arm_timeout(channel, self.pickup_s)
            await self._async_agi(channel, call)
            self._arm_timeout(channel, 0)
        else:
            channel.timed_out = True  # the stale path plays the same notice
        if channel.timed_out and not channel.hung_up:
            channel.timed_out = False
            await self._play_wait(channel, "callguard/en/fallback-notice")
        channel.context, channel.exten = home, ""

    def _bridge(self, call: FakeCall, channel: FakeChannel) -> None:
        if call.bridge_id is None:
            call.bridge_id = f"{self._rng.getrandbits(128):032x}"
            call.bridge_id = "-".join((call.bridge_id[:8], call.bridge_id[8:12], call.bridge_id[12:16],
                                       call.bridge_id[16:20], call.bridge_id[20:]))
            self.emit("BridgeCreate", self._bridge_headers(call, 0))
        channel.bridge = call.bridge_id
        bridged = self._bridges.setdefault(call.bridge_id, [])
        if channel not in bridged:
            bridged.append(channel)
        members = sum(1 for c in bridged if not c.hung_up)
        self.emit("BridgeEnter", self._bridge_headers(call, members) + channel.snapshot())

    def _bridge_headers(self, call: FakeCall, members: int) -> list[tuple[str, Value]]:
        return [("BridgeUniqueid", call.bridge_id or ""), ("BridgeType", "basic"),
                ("BridgeTechnology", "simple_bridge"), ("BridgeCreator", "<unknown>"),
                ("BridgeName", "<unknown>"), ("BridgeNumChannels", members), ("BridgeVideoSourceMode", "none")]

    async def _join(self, call: FakeCall, number: str, name: str, announceable: bool) -> None:
        seq = next(self._seq)
        channel = FakeChannel(f"Local/{_slug(number)}@join-sim-{seq:08x};1", self._uniqueid(), call.linkedid,
                              number, name or number, "join-sim", "s", connected=(call.number, call.name))
        call.parties[number] = channel
        self.channels[channel.name] = channel
        call._notify()
        self._channel_event("Newchannel", channel)
        if announceable:
            await self._join_gosub(channel, call, "join-sim")
        if not channel.hung_up and not call.channel.hung_up:
            self._bridge(call, channel)

    async def _hangup_channel(self, channel: FakeChannel, cause: int = 16) -> None:
        if channel.hung_up:
            return
        self._arm_timeout(channel, 0)
        channel.hung_up = True
        if channel.hangup_future is not None and not channel.hangup_future.done():
            channel.hangup_future.set_result(None)
        if channel.gather is not None and not channel.gather.future.done():
            channel.gather.future.cancel()
        if channel.agi_queue is not None:  # the AGI loop reports -1 and AsyncAGIEnd first
            await channel.agi_done.wait()
        if self.noise:
            self._channel_event("SoftHangupRequest", channel, [("Cause", cause)])
        if channel.bridge is not None:
            call = self._call_of(channel)
            bridged = self._bridges.get(channel.bridge, [])
            members = sum(1 for c in bridged if not c.hung_up)
            if call is not None:
                self.emit("BridgeLeave", self._bridge_headers(call, members) + channel.snapshot())
            if channel in bridged:
                bridged.remove(channel)
            if not bridged:
                self._bridges.pop(channel.bridge, None)
            channel.bridge = None
        if channel.recording is not None:
            channel.recording.stop(self.now())
            channel.recording = None
        self._channel_event("Hangup", channel, [("Cause", cause), ("Cause-txt", "Normal Clearing")])
        self.channels.pop(channel.name, None)

    async def _hangup_call(self, call: FakeCall) -> None:
        if call.ended.is_set():
            return
        # Like the fixture: the caller's own leg goes first, then the AGI
        # channel reports -1 / AsyncAGIEnd, then everyone else.
        await self._hangup_channel(call.originator)
        await self._hangup_channel(call.channel)
        for channel in [call.agent, call.agent_far] + list(call.parties.values()):
            if channel is not None:
                await self._hangup_channel(channel)
        if call.bridge_id is not None:
            self.emit("BridgeDestroy", self._bridge_headers(call, 0))
            call.bridge_id = None
        await self._finish(call)

    async def _finish(self, call: FakeCall) -> None:
        call.ended.set()

    # -- scenarios --------------------------------------------------------------------------

    async def play(self, scenario: Any, *, on_api: Callable[[FakeCall, Any], Any] | None = None,
                   exten: str = "100", tail_s: float = 30.0, timeout: float = 30.0) -> FakeCall:
        """Play a :class:`~callguard.testing.scenario.Scenario` as one call; returns when it ended.

        Applies the scenario's ``[pbx]`` knobs (``confirm_delay_ms``,
        ``confirm_mute``, ``prompt_duration_s``).  ``api`` steps are not AMI
        traffic: they go to ``on_api(call, step)`` (the harness's engine).
        """
        self.confirm_delay_s = scenario.confirm_delay_s
        self.mute_works = scenario.confirm_mute
        self.default_prompt_s = scenario.prompt_duration_s
        agent = (scenario.agent.number, scenario.agent.name or scenario.agent.number) if scenario.agent else None
        call = self.place_call(scenario.caller.number, scenario.caller.name, exten=exten,
                               agent=agent if agent else False)

        async def run() -> None:
            await call.wait_answered(timeout)
            for step in scenario.steps:
                await call._at(step.at)
                await self._play_step(call, step, on_api)
                if call.ended.is_set():
                    return
            if not call.ended.is_set():
                await call._at(scenario.duration + tail_s)
                await call.hangup("caller")

        await asyncio.wait_for(run(), timeout)
        await call.wait_ended(timeout)
        return call

    async def _play_step(self, call: FakeCall, step: Any, on_api: Callable[[FakeCall, Any], Any] | None) -> None:
        action, value = step.action, step.value
        if action == "press":
            await call.press(value, party=step.party)
        elif action == "hotkey":
            await call.hotkey(value)
        elif action == "ivr":
            await call.ivr(value)
        elif action == "join":
            self._spawn(call.join(value, step.name, step.announceable))
        elif action == "leave":
            await call.leave(value)
        elif action == "hangup":
            await call.hangup(value)
        elif action == "api" and on_api is not None:
            result = on_api(call, step)
            if asyncio.iscoroutine(result):
                await result

    # -- background flood ---------------------------------------------------------------------

    def start_flood(self, rate: float, tick_s: float = 0.005) -> None:
        """Send ``rate`` events per second of unrelated traffic (the fixtures' mix)."""
        self.stop_flood()
        self._flood = self._spawn(self._flood_loop(rate, tick_s))

    def stop_flood(self) -> None:
        if self._flood is not None:
            self._flood.cancel()
            self._flood = None

    async def _flood_loop(self, rate: float, tick_s: float) -> None:
        batch = flood_events(2000, self._rng)
        sent, index = 0, 0
        start = time.monotonic()
        while True:
            await asyncio.sleep(tick_s)
            due = int((time.monotonic() - start) * rate) - sent
            if due <= 0:
                continue
            chunk = []
            for _ in range(due):
                chunk.append(batch[index])
                index = (index + 1) % len(batch)
            data = b"".join(chunk)
            sent += due
            self.flood_sent += due
            for session in list(self._sessions):
                if session.wants("VarSet", "call"):
                    session.write(data, "flood", "flood")

    @property
    def flood_running(self) -> bool:
        return self._flood is not None and not self._flood.done()


def flood_events(count: int, rng: random.Random | None = None) -> list[bytes]:
    """Unrelated channel traffic in roughly the captured mix (35% VarSet, 17% Newexten, ...)."""
    rng = rng or random.Random(1)
    mix = (["VarSet"] * 35 + ["Newexten"] * 17 + ["DeviceStateChange"] * 6 + ["Newstate"] * 3
           + ["Newchannel"] * 3 + ["NewCallerid"] * 3 + ["NewConnectedLine"] * 3 + ["AGIExecStart"] * 3
           + ["AGIExecEnd"] * 3 + ["SoftHangupRequest"] * 2 + ["HangupRequest"] * 2 + ["Hangup"] * 3
           + ["BridgeEnter"] * 2 + ["BridgeLeave"] * 2 + ["DialBegin"] * 2 + ["DialEnd"] * 2
           + ["LocalBridge"] * 2 + ["UserEvent"] * 1 + ["BridgeCreate"] * 1 + ["BridgeDestroy"] * 1
           + ["MusicOnHoldStart"] * 1 + ["Newexten"] * 4)
    out = []
    for i in range(count):
        name = rng.choice(mix)
        seq = i % 997
        channel = FakeChannel(f"PJSIP/trunk-{seq:08x}", f"1700000000.{seq}", f"1700000000.{seq - seq % 2}",
                              f"+4420794{seq:05d}", "Flood Caller", "from-trunk", "s")
        head: list[tuple[str, Value]] = [("Event", name), ("Privilege", "call,all")]
        if name == "DeviceStateChange":
            body: list[tuple[str, Value]] = [("Device", f"PJSIP/trunk{seq}"), ("State", "INUSE")]
        elif name == "VarSet":
            body = channel.snapshot() + [("Variable", "RTPAUDIOQOS"), ("Value", "ssrc=1;themssrc=2;lp=0")]
        elif name == "Newexten":
            body = channel.snapshot() + [("Extension", "s"), ("Application", "Set"), ("AppData", "X=1")]
        elif name.startswith("Bridge"):
            body = [("BridgeUniqueid", f"00000000-0000-0000-0000-{seq:012d}"), ("BridgeType", "basic"),
                    ("BridgeNumChannels", 1)] + (channel.snapshot() if name in ("BridgeEnter", "BridgeLeave") else [])
        elif name == "UserEvent":
            body = channel.snapshot() + [("UserEvent", "SiteStats"), ("Calls", seq)]
        elif name.startswith("AGIExec"):
            body = channel.snapshot() + [("CommandId", seq), ("Command", "VERBOSE x 1")]
        else:
            body = channel.snapshot() + ([("Cause", 16)] if "Hangup" in name else [])
        out.append(message(head + body))
    return out


def _drops_dtmf(channel: FakeChannel, direction: str) -> bool:
    """``FRAME_DROP(<direction>)`` on the channel lists a DTMF frame type."""
    value = channel.variables.get(f"FRAME_DROP({direction})", "")
    return any(kind.strip().upper() in ("DTMF_BEGIN", "DTMF_END") for kind in value.split(","))


def _agi_args(command: str) -> list[str]:
    """Split an AGI command like Asterisk's ``parse_args`` (quotes, backslashes)."""
    out, current, quoted, escaped, started = [], [], False, False, False
    for ch in command:
        if escaped:
            current.append(ch)
            escaped, started = False, True
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            quoted, started = not quoted, True
        elif ch in " \t" and not quoted:
            if started:
                out.append("".join(current))
            current, started = [], False
        else:
            current.append(ch)
            started = True
    if started:
        out.append("".join(current))
    return out


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9+]", "_", text)[:32] or "party"


class FakeAsteriskThread:
    """Run a :class:`FakeAsterisk` on its own event loop thread (aiosmtpd ``Controller`` style).

    For synchronous callers (CLI subprocess tests, benchmarks)::

        ctl = FakeAsteriskThread(secret="s")
        pbx = ctl.start()          # returns once the port is bound
        ...
        ctl.call(pbx.place_call, "+14155550123")   # run a function on the PBX loop
        ctl.stop()
    """

    def __init__(self, **kwargs: Any):
        self.kwargs = kwargs
        self.loop: asyncio.AbstractEventLoop | None = None
        self.pbx: FakeAsterisk | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start(self) -> FakeAsterisk:
        def run() -> None:
            loop = asyncio.new_event_loop()
            self.loop = loop
            asyncio.set_event_loop(loop)
            try:
                self.pbx = loop.run_until_complete(FakeAsterisk(**self.kwargs).start())
            except BaseException as exc:  # surfaced in start()
                self._error = exc
                self._ready.set()
                return
            self._ready.set()
            loop.run_forever()
            loop.run_until_complete(self.pbx.stop())
            loop.close()

        self._thread = threading.Thread(target=run, name="fake-asterisk", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise self._error
        assert self.pbx is not None
        return self.pbx

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``fn`` on the PBX loop (awaiting it if it is a coroutine function); return its result."""
        assert self.loop is not None

        async def run() -> Any:
            result = fn(*args, **kwargs)
            return await result if asyncio.iscoroutine(result) else result

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(30)

    def stop(self) -> None:
        if self.loop is not None and self._thread is not None:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)


__all__ = ["FakeAsterisk", "FakeAsteriskThread", "FakeCall", "FakeChannel", "FakeRecording", "flood_events",
           "HEARTBEAT_STALE_S", "INBOUND_CONTEXT", "JOIN_CONTEXT"]
