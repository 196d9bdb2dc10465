"""A fake FreeSWITCH 1.10 that speaks ESL over real TCP, in both directions.

It is faithful where callguard depends on FreeSWITCH's behaviour, as
captured from a real 1.10.12 (tests/adapters/freeswitch/fixtures):

* **inbound** (``mod_event_socket``): ``auth/request`` on connect, ``auth``
  -> ``+OK accepted`` / ``-ERR invalid``, ``event plain ...`` where every
  word after ``CUSTOM`` is a subclass (so event names placed after it are
  ignored, as on the real thing), ``api`` -> ``api/response`` with
  Content-Length, ``bgapi`` -> ``Job-UUID`` then a ``BACKGROUND_JOB`` event
  with a body, ``text/event-plain`` events only for what was subscribed;
* **outbound** (the ``socket`` application): connects to the listener,
  answers ``connect`` with the channel's data, ``myevents``, ``linger``,
  runs ``sendmsg`` applications one at a time (``play_and_get_digits`` with
  FreeSWITCH's argument rules including ``transfer_on_failure``,
  ``record_session``, ``stop_record_session``, ``playback``, ``set``,
  ``transfer``, ``hangup``) with ``CHANNEL_EXECUTE`` /
  ``CHANNEL_EXECUTE_COMPLETE``, and returns the channel to a model of the
  shipped dialplan on ``exit`` (or when nothing listens: the fail-closed
  path, fallback notice, no recording);
* **media** is modelled as time spans: a :class:`FakeRecording` knows when
  it was audible, masked or stopped, so tests can ask "was the payment
  segment recorded?".

A scriptable caller comes from :meth:`FakeFreeSWITCH.play` (a
:class:`~callguard.testing.scenario.Scenario`: key presses, agent hotkeys as
``CUSTOM callguard::pause``/``resume`` from the agent leg carrying
``variable_callguard_call``, IVR payment signals, parties joining through
the socket or straight into the bridge, hangups) or from the lower-level
:meth:`FakeFreeSWITCH.new_call`.

Fault knobs (:class:`Faults`): split every write into small chunks (also
inside UTF-8 sequences), delay replies, stall the connection on a command
(FreeSWITCH never drops a reply on a live connection; a hung ``api`` blocks
the socket), drop inbound connections on a command or on demand, and flood
subscribers with background events.

Time: by default the fake runs on a **virtual clock** (``clock="virtual"``).
Everything that takes time on a PBX (a prompt playing, a gather's timeout,
a scripted key press or hangup at ``at`` seconds) waits for a point on that
clock, and the clock only moves to the next point once both sides are
quiet: nothing queued to write, no command being handled, no parked
channel waiting for the listener's next instruction, and nothing the
watched listener reports as in flight (:meth:`FakeFreeSWITCH.watch`).  So
a two-minute scenario runs in milliseconds, in the same order every time,
however loaded the test machine is, and ``Event-Date-Timestamp`` carries
scenario time.  ``time_scale`` adds real pacing (seconds per scenario
second) when a test wants wall-clock behaviour too.  ``clock="real"`` runs
everything on the wall clock instead (benchmarks with many concurrent
calls and background floods, where "quiet" never happens).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import re
import socket
import time
import uuid as uuidlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from callguard.testing.esl_wire import (
    AUTH_REQUEST,
    RUDE_REJECTION,
    EventClock,
    api_frame,
    disconnect_frame,
    event_frame,
    reply_frame,
    serialize_event,
)
from callguard.testing import freeswitch_keypad as keypad
from callguard.testing.recording_file import RecordingFile

log = logging.getLogger("callguard.testing.fake_freeswitch")

#: Decision words the shipped callguard.xml treats as "the listener decided".
DECIDED = ("granted", "implied", "declined", "no-input", "not-recorded", "not-required", "error")


@dataclass
class Faults:
    """What can go wrong on the wire.  All knobs default to "nothing"."""

    #: write every frame in chunks of this many bytes (1 = byte by byte), each its own TCP segment
    chunk: int = 0
    #: seconds to wait before answering a command whose line matches the regex (blocks the connection)
    reply_delay: dict[str, float] = field(default_factory=dict)
    #: regexes: a matching command is never answered and the connection stalls (until it is closed)
    stall_on: list[str] = field(default_factory=list)
    #: regex: close the inbound connection when a matching command arrives (once, then the knob clears)
    drop_inbound_on: str = ""
    #: with ``drop_inbound_on``: carry the command out before dropping (the reply is what is lost)
    drop_after_executing: bool = False
    #: background events per second to every inbound subscriber (other calls' hangups/bridges)
    flood_per_s: float = 0.0
    #: answer every inbound connection with text/rude-rejection (an ACL that does not allow the client)
    reject_acl: bool = False
    #: answer ``auth`` with ``-ERR invalid`` whatever the password (FreeSWITCH restarting, config changed)
    refuse_logins: bool = False
    #: every frame passes through this before it is written (e.g. give one a Content-Length that lies)
    rewrite: Callable[[bytes], bytes] | None = None

    def delay_for(self, line: str) -> float:
        return max((d for pattern, d in self.reply_delay.items() if re.search(pattern, line)), default=0.0)

    def stalls(self, line: str) -> bool:
        return any(re.search(pattern, line) for pattern in self.stall_on)


class _Conn:
    """One TCP connection: an ordered writer task honouring the split fault."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, faults: Faults):
        self.reader, self.writer, self.faults = reader, writer, faults
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._task = asyncio.create_task(self._pump())
        self.closed = False
        self.writing = False
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send(self, data: bytes) -> None:
        if not self.closed:
            self._queue.put_nowait(data)

    @property
    def busy(self) -> bool:
        return not self.closed and (self.writing or not self._queue.empty())

    async def _pump(self) -> None:
        try:
            while True:
                data = await self._queue.get()
                if data is None:
                    break
                self.writing = True
                if self.faults.rewrite is not None:
                    data = self.faults.rewrite(data)
                chunk = self.faults.chunk
                if chunk <= 0:
                    self.writer.write(data)
                    await self.writer.drain()
                else:
                    for i in range(0, len(data), chunk):
                        self.writer.write(data[i:i + chunk])
                        await self.writer.drain()
                        await asyncio.sleep(0)
                self.writing = False
        except (ConnectionError, OSError):
            pass
        finally:
            self.closed = True
            self.writing = False
            with contextlib.suppress(Exception):
                self.writer.close()

    async def read_command(self) -> tuple[str, dict[str, str], bytes] | None:
        """One ESL command: first line, ``Name: value`` headers, optional body."""
        try:
            block = await self.reader.readuntil(b"\n\n")
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError, OSError):
            return None
        lines = block.decode("utf-8", "replace").rstrip("\n").split("\n")
        while lines and not lines[0].strip():
            lines.pop(0)
        if not lines:
            return "", {}, b""
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        body = b""
        if headers.get("content-length", "").isdigit():
            with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
                body = await self.reader.readexactly(int(headers["content-length"]))
        return lines[0].strip(), headers, body

    def close(self, flush: bool = True) -> None:
        """Close after what is queued (``flush``) or at once, without a goodbye."""
        if flush:
            self._queue.put_nowait(None)
        else:
            self.closed = True
            self._task.cancel()
            self.writer.transport.abort()


@dataclass
class FakeRecording:
    """One ``record_session`` / ``uuid_record start``: when was it audible?"""

    path: str
    started: float  #: scenario time
    ops: list[tuple[float, str]] = field(default_factory=list)  #: (scenario time, start|mask|unmask|stop)
    masked: bool = False
    stopped: float | None = None
    audio: RecordingFile | None = None  #: the WAV on disk (``FakeFreeSWITCH.write_recordings``)

    def mark(self, at: float, op: str) -> None:
        """``mask`` / ``unmask`` / ``stop`` at scenario time ``at``; the file on disk follows."""
        if self.audio is not None:
            self.audio.advance(at, not self.masked)
        if op == "stop":
            self.stopped = at
            if self.audio is not None:
                self.audio.close(at, not self.masked)
        else:
            self.masked = op == "mask"
        self.ops.append((at, op))

    def audible_spans(self, end: float) -> list[tuple[float, float]]:
        """Intervals (scenario seconds) in which real audio was written."""
        spans: list[tuple[float, float]] = []
        since: float | None = None
        for at, op in self.ops:
            if op in ("start", "unmask") and since is None:
                since = at
            elif op in ("mask", "stop") and since is not None:
                spans.append((since, at))
                since = None
        if since is not None:
            spans.append((since, self.stopped if self.stopped is not None else end))
        return spans

    def audible_during(self, start: float, end: float) -> bool:
        return any(a < end and b > start for a, b in self.audible_spans(end))


@dataclass
class FakeChannel:
    """A leg: caller (inbound), agent or joiner (outbound b-leg)."""

    uuid: str
    name: str
    direction: str
    number: str
    cid_name: str
    destination: str
    caller_number: str = ""  #: for b-legs: the original caller's id (FreeSWITCH copies it)
    caller_name: str = ""
    variables: dict[str, str] = field(default_factory=dict)
    answered: bool = True
    hung_up: bool = False
    hangup_cause: str = ""
    recording: FakeRecording | None = None
    recordings: list[FakeRecording] = field(default_factory=list)
    link: "_OutboundLink | None" = None
    #: for a b-leg: the leg that originated it (``Other-Type: originator`` headers, as captured)
    originator: "FakeChannel | None" = None
    #: the caller-profile context (loopback puts it in the callee id of its b-leg, as captured)
    context: str = "default"
    source: str = "mod_sofia"
    #: hotkeys bound on this leg by ``bind_meta_app``: digit -> (flags, feature extension)
    meta: dict[str, tuple[str, str]] = field(default_factory=dict)
    #: feature extensions held back by a failed hold (``s`` flag without hold music), run at teardown
    held_back: list[str] = field(default_factory=list)
    transferred_to: str = ""
    trace: list[tuple[float, str]] = field(default_factory=list)
    created: float = 0.0  #: epoch seconds (``show channels``)
    #: keys this party presses as soon as a gather starts (a caller who always answers)
    auto_press: str = ""
    #: DTMF and media state (block_dtmf, uuid_audio, the bridge peer) and what reached this leg's phone
    keypad: keypad.Keypad = field(default_factory=keypad.Keypad)
    #: private events (sendmsg <uuid>) run one at a time, in the order queued
    _private: asyncio.Lock = field(default_factory=asyncio.Lock)
    _digits: asyncio.Queue[str] = field(default_factory=asyncio.Queue)
    _collecting: bool = False
    _gone: asyncio.Event = field(default_factory=asyncio.Event)

    def profile(self, variables: bool = True) -> list[tuple[str, str]]:
        """Channel and caller-profile headers, then every variable, as FreeSWITCH lists them.

        ``variables=False`` for the events that carry none (conference
        ``add-member``/``del-member``, DTMF: fixtures conference_join, dtmf).
        """
        if self.direction == "inbound":
            cid_number, cid_name, callee_number, callee_name = self.number, self.cid_name, self.destination, ""
        else:
            cid_number, cid_name = self.caller_number, self.caller_name
            callee_number, callee_name = self.number, self.cid_name
        out = [
            ("Channel-State", "CS_HANGUP" if self.hung_up else "CS_EXECUTE"),
            ("Channel-Call-State", "HANGUP" if self.hung_up else "ACTIVE"),
            ("Channel-State-Number", "10" if self.hung_up else "4"),
            ("Channel-Name", self.name),
            ("Unique-ID", self.uuid),
            ("Call-Direction", self.direction),
            ("Presence-Call-Direction", self.direction),
            ("Channel-HIT-Dialplan", "true"),
            ("Channel-Call-UUID", self.originator.uuid if self.originator is not None else self.uuid),
            ("Answer-State", "hangup" if self.hung_up else ("answered" if self.answered else "ringing")),
        ]
        if self.hung_up:
            out.append(("Hangup-Cause", self.hangup_cause))
        out += [
            ("Channel-Read-Codec-Name", "L16"),
            ("Channel-Read-Codec-Rate", "8000"),
            ("Channel-Write-Codec-Name", "L16"),
            ("Channel-Write-Codec-Rate", "8000"),
            ("Caller-Direction", self.direction),
            ("Caller-Logical-Direction", self.direction),
            ("Caller-Dialplan", "xml"),
            ("Caller-Caller-ID-Name", cid_name),
            ("Caller-Caller-ID-Number", cid_number),
            ("Caller-Orig-Caller-ID-Name", cid_name),
            ("Caller-Orig-Caller-ID-Number", cid_number),
            ("Caller-Callee-ID-Name", callee_name),
            ("Caller-Callee-ID-Number", callee_number),
            ("Caller-ANI", cid_number),
            ("Caller-Destination-Number", self.destination),
            ("Caller-Unique-ID", self.uuid),
            ("Caller-Source", self.source),
            ("Caller-Context", self.context),
            ("Caller-Channel-Name", self.name),
        ]
        if self.originator is not None:
            # The b-leg names its originator in every event (fixture agent_leg_socket).
            origin = dict(self.originator.profile(variables=False))
            out.append(("Other-Type", "originator"))
            out += [(f"Other-Leg-{k[len('Caller-'):]}", origin[k]) for k in
                    ("Caller-Direction", "Caller-Caller-ID-Name", "Caller-Caller-ID-Number", "Caller-Callee-ID-Name",
                     "Caller-Callee-ID-Number", "Caller-Destination-Number", "Caller-Unique-ID",
                     "Caller-Context", "Caller-Channel-Name")]
        if variables:
            out += [(f"variable_{k}", v) for k, v in self.variables.items()]
        return out

    def profile_variable(self, name: str) -> str | None:
        """``uuid_getvar`` falls back to the caller profile (``caller_id_number``: verified on 1.10.12)."""
        field_name = {"caller_id_number": "Caller-Caller-ID-Number", "caller_id_name": "Caller-Caller-ID-Name",
                      "destination_number": "Caller-Destination-Number", "read_rate": "Channel-Read-Codec-Rate"}
        if name not in field_name:
            return None
        return dict(self.profile(variables=False)).get(field_name[name]) or None

    def buglist(self) -> str:
        """``uuid_buglist``: a running recording is a ``session_record`` media bug on its path (verified)."""
        bugs = "".join(f" <media-bug>\n  <function>session_record</function>\n  <target>{rec.path}</target>\n"
                       f"  <thread-locked>0</thread-locked>\n </media-bug>\n" for rec in [self.recording] if rec)
        return f"<media-bugs>\n{bugs}</media-bugs>\n"

    def channel_row(self, now: float) -> dict[str, str]:
        """This leg as a row of ``show channels as json`` (every column 1.10.12 lists, all strings)."""
        profile = dict(self.profile(variables=False))
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.created or now))
        app = self.variables.get("current_application", "")
        return {
            "uuid": self.uuid, "direction": self.direction, "created": created,
            "created_epoch": str(int(self.created or now)), "name": self.name, "state": "CS_EXECUTE",
            "cid_name": profile["Caller-Caller-ID-Name"], "cid_num": profile["Caller-Caller-ID-Number"],
            "ip_addr": "", "dest": self.destination, "application": app,
            "application_data": self.variables.get("current_application_data", "") if app else "",
            "dialplan": "xml", "context": self.context, "read_codec": "L16", "read_rate": "8000",
            "read_bit_rate": "128000", "write_codec": "L16", "write_rate": "8000", "write_bit_rate": "128000",
            "secure": "", "hostname": "fake", "presence_id": "", "presence_data": "", "accountcode": "",
            "callstate": "ACTIVE" if self.answered else "RINGING", "callee_name": profile["Caller-Callee-ID-Name"],
            "callee_num": profile["Caller-Callee-ID-Number"], "callee_direction": "",
            "call_uuid": self.originator.uuid if self.originator is not None else self.uuid,
            "sent_callee_name": "", "sent_callee_num": "", "initial_cid_name": profile["Caller-Caller-ID-Name"],
            "initial_cid_num": profile["Caller-Caller-ID-Number"], "initial_ip_addr": "",
            "initial_dest": self.destination, "initial_dialplan": "xml", "initial_context": self.context,
        }

    def other_leg(self) -> list[tuple[str, str]]:
        """This leg described from the other side of a bridge (``Other-Leg-*``)."""
        profile = dict(self.profile(variables=False))
        return [("Other-Type", "originatee"), ("Other-Leg-Direction", self.direction)] + [
            (f"Other-Leg-{k[len('Caller-'):]}", profile[k]) for k in
            ("Caller-Caller-ID-Name", "Caller-Caller-ID-Number", "Caller-Callee-ID-Name", "Caller-Callee-ID-Number",
             "Caller-Destination-Number", "Caller-Unique-ID", "Caller-Channel-Name")]


class _OutboundLink:
    """FreeSWITCH's side of one ``socket`` application: we connected to the listener."""

    def __init__(self, fake: "FakeFreeSWITCH", channel: FakeChannel, conn: _Conn):
        self.fake, self.channel, self.conn = fake, channel, conn
        self.myevents = False
        self.linger = False
        self.apps: asyncio.Queue[tuple[str, str] | None] = asyncio.Queue()
        self.exited = False
        self.running = False  #: an application is executing on the channel
        self.commands: list[str] = []

    async def run(self) -> None:
        runner = asyncio.create_task(self._run_apps())
        try:
            while True:
                command = await self.conn.read_command()
                if command is None:
                    break
                line, headers, body = command
                if not line:
                    continue
                self.commands.append(line)
                self.fake._busy += 1
                try:
                    await self.fake._pause_for(line, self.conn)
                    if not await self._handle(line, headers, body):
                        break
                finally:
                    self.fake._busy -= 1
        finally:
            # FreeSWITCH closes the socket as soon as it has said goodbye; an
            # application still running finishes on the channel, unobserved.
            self.exited = True
            self.conn.close()
            await self.apps.put(None)
            with contextlib.suppress(asyncio.CancelledError):
                await runner

    async def _handle(self, line: str, headers: dict[str, str], body: bytes) -> bool:
        word = line.split(" ", 1)[0]
        if word == "connect":
            self.conn.send(self._connect_reply())
        elif word == "myevents":
            self.myevents = True
            self.conn.send(reply_frame("+OK Events Enabled"))
        elif word == "linger":
            self.linger = True
            self.conn.send(reply_frame("+OK will linger"))
        elif word == "nolinger":
            self.linger = False
            self.conn.send(reply_frame("+OK will not linger"))
        elif word == "sendmsg":
            self._sendmsg(headers, body)
        elif word == "api":
            self.conn.send(api_frame(await self.fake.run_api(line[4:].strip())))
        elif word == "exit":
            self.conn.send(reply_frame("+OK bye"))
            self.conn.send(disconnect_frame(self.channel.uuid))
            return False
        else:
            self.conn.send(reply_frame("-ERR command not found"))
        return True

    def _connect_reply(self) -> bytes:
        headers = self.fake.clock_headers("CHANNEL_DATA", calling=("mod_event_socket.c", "parse_command", 2021))
        headers += self.channel.profile()
        headers += [("Content-Type", "command/reply"), ("Reply-Text", "+OK\n"), ("Socket-Mode", "async"),
                    ("Control", "full")]
        return serialize_event(headers)

    def _sendmsg(self, headers: dict[str, str], body: bytes) -> None:
        self.conn.send(reply_frame("+OK"))
        if headers.get("call-command") != "execute":
            return
        arg = headers.get("execute-app-arg", "") or body.decode("utf-8", "replace")
        self.apps.put_nowait((headers.get("execute-app-name", ""), arg))

    async def _run_apps(self) -> None:
        while True:
            item = await self.apps.get()
            if item is None:
                return
            self.running = True
            try:
                await self.fake.execute_app(self.channel, *item)
            finally:
                self.running = False

    def event(self, frame: bytes) -> None:
        if self.myevents and not self.exited:
            self.conn.send(frame)

    def hung_up(self) -> None:
        """The channel hung up while the socket was attached."""
        if self.exited:
            return
        if self.linger:
            self.conn.send(disconnect_frame(self.channel.uuid, linger=True, channel_name=self.channel.name))
        else:
            self.conn.send(disconnect_frame(self.channel.uuid))
            self.exited = True
            self.conn.close()


class _InboundClient:
    """One client of the event socket (the listener's inbound connection)."""

    def __init__(self, fake: "FakeFreeSWITCH", conn: _Conn):
        self.fake, self.conn = fake, conn
        self.authed = False
        self.events: set[str] = set()
        self.custom: set[str] = set()
        self.all_custom = False
        self.commands: list[str] = []

    def wants(self, name: str, subclass: str) -> bool:
        if not self.authed:
            return False
        if name == "CUSTOM":
            return "ALL" in self.events or self.all_custom or subclass in self.custom
        return "ALL" in self.events or name in self.events

    async def run(self) -> None:
        if self.fake.faults.reject_acl:
            self.conn.send(RUDE_REJECTION)
            self.conn.close()
            return
        self.conn.send(AUTH_REQUEST)
        try:
            while True:
                command = await self.conn.read_command()
                if command is None:
                    break
                line = command[0]
                if not line:
                    continue
                self.commands.append(line)
                faults = self.fake.faults
                if faults.drop_inbound_on and re.search(faults.drop_inbound_on, line):
                    if faults.drop_after_executing and line.startswith("api "):
                        await self.fake.run_api(line[4:].strip())
                    self.fake.dropped.append(line)
                    faults.drop_inbound_on = ""
                    self.conn.close(flush=False)
                    break
                self.fake._busy += 1
                try:
                    if not await self.fake._pause_for(line, self.conn):
                        break
                    if not await self._handle(line, command[1]):
                        break
                finally:
                    self.fake._busy -= 1
        finally:
            self.conn.close()
            if self in self.fake.clients:
                self.fake.clients.remove(self)

    async def _handle(self, line: str, headers: dict[str, str] | None = None) -> bool:
        word, _, rest = line.partition(" ")
        if word == "auth":
            if rest == self.fake.password and not self.fake.faults.refuse_logins:
                self.authed = True
                self.conn.send(reply_frame("+OK accepted"))
                return True
            self.conn.send(reply_frame("-ERR invalid"))
            self.conn.send(disconnect_frame())
            return False
        if not self.authed:
            self.conn.send(reply_frame("-ERR command not found"))
            return True
        if word == "event":
            fmt, _, names = rest.partition(" ")
            if fmt != "plain":
                self.conn.send(reply_frame(f"-ERR unsupported format {fmt}"))
                return True
            custom = False
            for name in names.split():
                if custom:
                    self.custom.add(name)  # every word after CUSTOM is a subclass (verified)
                elif name == "CUSTOM":
                    custom = True
                else:
                    self.events.add(name)
            if custom and not self.custom:
                self.all_custom = True
            self.conn.send(reply_frame("+OK event listener enabled plain"))
        elif word == "noevents":
            self.events.clear()
            self.custom.clear()
            self.all_custom = False
            self.conn.send(reply_frame("+OK no longer listening for events"))
        elif word == "api":
            self.conn.send(api_frame(await self.fake.run_api(rest)))
        elif word == "bgapi":
            job = str(uuidlib.uuid4())
            self.conn.send(reply_frame(f"+OK Job-UUID: {job}", {"Job-UUID": job}))
            result = await self.fake.run_api(rest)
            name, _, arg = rest.partition(" ")
            self.fake.emit("BACKGROUND_JOB", None, [("Job-UUID", job), ("Job-Command", name),
                                                    ("Job-Command-Arg", arg)], body=result)
        elif word == "sendmsg":
            self.conn.send(reply_frame(self.fake.sendmsg(rest.strip(), headers or {})))
        elif word == "exit":
            self.conn.send(reply_frame("+OK bye"))
            self.conn.send(disconnect_frame())
            return False
        else:
            self.conn.send(reply_frame("-ERR command not found"))
        return True


@dataclass
class CallRecord:
    """What happened to one scripted call, for assertions."""

    caller: FakeChannel
    agent: FakeChannel | None = None
    joiners: dict[str, FakeChannel] = field(default_factory=dict)
    #: ``socket`` result: "connected", "refused"
    socket: str = ""
    #: model of the shipped dialplan after the socket: "decided", "fallback", "transferred", "hung-up"
    dialplan: str = ""
    ended_at: float = 0.0  #: scenario time the caller hung up

    @property
    def call_id(self) -> str:
        return self.caller.uuid

    @property
    def decision(self) -> str:
        return self.caller.variables.get("callguard_decision", "")

    @property
    def recordings(self) -> list[FakeRecording]:
        return self.caller.recordings


class FakeFreeSWITCH:
    """The fake server.  ``async with FakeFreeSWITCH() as fs: ...``"""

    def __init__(self, *, password: str = "ClueCon", host: str = "127.0.0.1", port: int = 0,
                 socket_address: tuple[str, int] = ("127.0.0.1", 8084), faults: Faults | None = None,
                 clock: str = "virtual", time_scale: float = 0.0, prompt_duration_s: float = 4.0,
                 prompt_durations: dict[str, float] | None = None, mask_reply_delay_s: float = 0.0,
                 unconfirmed_mask_delay_s: float = 1.5, base_epoch: float | None = None,
                 meta_flags: str = "a si", hold_music: bool = False):
        if clock not in ("virtual", "real"):
            raise ValueError("clock must be 'virtual' or 'real'")
        self.password = password
        #: the flags callguard_agent binds the hotkeys with (``bind_meta_app 1 <flags> ...``)
        self.meta_flags = meta_flags
        #: the digits callguard_agent binds (*6 pause, *7 resume in the shipped callguard.xml)
        self.hotkeys = ("6", "7")
        #: the card payment hotkeys it binds (*8 start, *9 cancel)
        self.card_hotkeys = ("8", "9")
        #: mod_local_stream and a working hold_music (the captures had none)
        self.hold_music = hold_music
        #: what ``module_exists`` answers true for (the build in shared/realpbx, no mod_local_stream)
        self.modules = {"mod_event_socket", "mod_dptools", "mod_commands", "mod_dialplan_xml", "mod_expr",
                        "mod_conference", "mod_loopback", "mod_sofia", "mod_sndfile", "mod_tone_stream"}
        #: dialplan contexts ``xml_locate`` finds (:meth:`load_dialplan`)
        self.contexts: dict[str, str] = {}
        self.host, self.requested_port = host, port
        self.socket_address = socket_address
        self.faults = faults or Faults()
        self.clock_mode = clock
        self.time_scale = time_scale
        self.prompt_duration_s = prompt_duration_s
        self.prompt_durations = dict(prompt_durations or {})
        self.mask_reply_delay_s = mask_reply_delay_s
        #: how late a mask is answered when a scenario says ``confirm_mute = false`` (later than the
        #: listener's confirm timeout, sooner than its heartbeat watchdog)
        self.unconfirmed_mask_delay_s = unconfirmed_mask_delay_s
        #: extra wait before answering uuid_record (a scenario's ``confirm_delay_ms``)
        self.record_reply_delay_s = 0.0
        #: record_session / uuid_record write a real WAV at their path on this host (open while
        #: recording, silence while masked, completed on stop or hangup), for tests of the vault
        self.write_recordings = False
        self.core_uuid = str(uuidlib.uuid4())
        self.base_epoch = base_epoch if base_epoch is not None else time.time()
        self._events = EventClock(self.core_uuid, clock=self.now_epoch)
        self.channels: dict[str, FakeChannel] = {}
        self.clients: list[_InboundClient] = []
        self.globals: dict[str, str] = {}
        self.api_log: list[tuple[float, str]] = []
        self.dropped: list[str] = []
        self.flood_sent = 0
        self.port = 0
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._names = itertools.count(1)
        self._stall = asyncio.Event()
        self._busy = 0  #: applications working (not waiting for the clock or a person) + commands handled
        self._links: set[_OutboundLink] = set()
        self._watched: list[Callable[[], bool]] = []
        self._holds = 0
        self.calls: list[CallRecord] = []  #: every call :meth:`play` started, as it starts
        self.conferences: dict[str, dict[str, int]] = {}  #: conference name -> member leg uuid -> member id
        self.conference_ids: dict[str, str] = {}
        self._member_ids = itertools.count(1)
        self._base_loop = 0.0
        self.vnow = 0.0  #: scenario seconds on the virtual clock
        self._timers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._timer_seq = itertools.count()
        self._timer_added = asyncio.Event()

    # -- life cycle ---------------------------------------------------------------------------

    async def start(self) -> "FakeFreeSWITCH":
        self._base_loop = asyncio.get_running_loop().time()
        self._server = await asyncio.start_server(self._accept, self.host, self.requested_port, limit=1 << 20)
        self.port = self._server.sockets[0].getsockname()[1]
        if self.clock_mode == "virtual":
            self._spawn(self._run_clock())
        if self.faults.flood_per_s > 0:
            self._spawn(self._flood())
        return self

    async def stop(self) -> None:
        self._stall.set()
        if self._server is not None:
            self._server.close()
        for client in list(self.clients):
            client.conn.close(flush=False)
        for link in list(self._links):
            link.conn.close(flush=False)
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)

    async def __aenter__(self) -> "FakeFreeSWITCH":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- quiet / busy ----------------------------------------------------------------------------

    def watch(self, busy: Callable[[], bool]) -> None:
        """Also wait for ``busy()`` to be false before the virtual clock moves (e.g. ``listener.busy``)."""
        self._watched.append(busy)

    @contextlib.contextmanager
    def hold(self) -> Any:
        """Keep the virtual clock where it is (a test acting "between" two scripted moments)."""
        self._holds += 1
        try:
            yield self
        finally:
            self._holds -= 1

    def busy(self) -> bool:
        """Work in progress on our side, or a parked channel waiting for the listener."""
        if self._busy or self._holds:
            return True
        if any(c.conn.busy for c in self.clients):
            return True
        for link in self._links:
            if link.conn.busy or not link.apps.empty():
                return True
            if not link.exited and not link.running and not link.channel.hung_up:
                return True  # the listener owes this parked channel its next instruction
        return any(watched() for watched in self._watched)

    async def settle(self, quiet_polls: int = 3, poll_s: float = 0.002, cap_s: float = 10.0) -> None:
        """Wait until :meth:`busy` has been false for ``quiet_polls`` polls in a row (at most ``cap_s``)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + cap_s
        quiet = 0
        while quiet < quiet_polls and loop.time() < deadline:
            await asyncio.sleep(poll_s)
            quiet = 0 if self.busy() else quiet + 1

    # -- clocks ---------------------------------------------------------------------------------

    def scenario_time(self) -> float:
        """Seconds of scenario time: the virtual clock, or wall-clock seconds since start."""
        if self.clock_mode == "virtual":
            return self.vnow
        return asyncio.get_running_loop().time() - self._base_loop

    def now_epoch(self) -> float:
        """The clock FreeSWITCH stamps events with (scenario time on ``base_epoch``)."""
        try:
            return self.base_epoch + self.scenario_time()
        except RuntimeError:
            return time.time()

    async def until(self, at: float) -> None:
        """Wait until scenario time ``at``."""
        if self.clock_mode == "real":
            await asyncio.sleep(max(0.0, at - self.scenario_time()))
            return
        if at <= self.vnow:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._timers, (at, next(self._timer_seq), future))
        self._timer_added.set()
        await future

    async def _run_clock(self) -> None:
        """Move the virtual clock to the next waiting point whenever everything is quiet."""
        while True:
            while not any(not f.done() for _, _, f in self._timers):
                self._timers.clear()
                self._timer_added.clear()
                await self._timer_added.wait()
            await self.settle()
            while self._timers and self._timers[0][2].done():
                heapq.heappop(self._timers)
            if not self._timers:
                continue
            at = self._timers[0][0]
            if self.time_scale > 0 and at > self.vnow:
                await asyncio.sleep((at - self.vnow) * self.time_scale)
                if self.busy() or not self._timers or self._timers[0][0] < at:
                    continue  # work arrived or something earlier was scheduled meanwhile
            self.vnow = max(self.vnow, at)
            while self._timers and self._timers[0][0] <= self.vnow:
                _, _, future = heapq.heappop(self._timers)
                if not future.done():
                    future.set_result(None)
                    await asyncio.sleep(0)

    def clock_headers(self, name: str, subclass: str = "",
                      calling: tuple[str, str, int] = ("switch_channel.c", "switch_channel_perform", 1)
                      ) -> list[tuple[str, str]]:
        return self._events.headers(name, subclass, calling)

    # -- inbound server ---------------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        client = _InboundClient(self, _Conn(reader, writer, self.faults))
        self.clients.append(client)
        await client.run()

    def drop_inbound(self) -> int:
        """Close every inbound connection now (no goodbye); how many there were."""
        count = 0
        for client in list(self.clients):
            client.conn.close(flush=False)
            count += 1
        return count

    def release_stalls(self) -> None:
        """Let commands held by ``Faults.stall_on`` be answered."""
        self._stall.set()
        self._stall = asyncio.Event()

    async def _pause_for(self, line: str, conn: _Conn) -> bool:
        """Apply the reply-delay and stall faults to one command; False: the connection is gone."""
        if self.faults.stalls(line):
            stall = self._stall
            while not conn.closed and not conn.reader.at_eof() and not stall.is_set():
                await asyncio.sleep(0.01)
            return not conn.closed
        delay = self.faults.delay_for(line)
        if self.mask_reply_delay_s and re.search(r"uuid_record \S+ mask ", line):
            delay = max(delay, self.mask_reply_delay_s)
        if self.record_reply_delay_s and "uuid_record " in line:
            delay = max(delay, self.record_reply_delay_s)
        if delay:
            await asyncio.sleep(delay)
        return True

    def emit(self, name: str, channel: FakeChannel | None, extra: Iterable[tuple[str, str]] = (),
             subclass: str = "", body: str | bytes = b"", outbound: bool = True, variables: bool = True) -> bytes:
        """Fire an event: to subscribed inbound clients and to the channel's ``myevents`` socket."""
        headers = self.clock_headers(name, subclass)
        if channel is not None:
            headers += channel.profile(variables)
        headers += list(extra)
        frame = event_frame(headers, body)
        for client in list(self.clients):
            if client.wants(name, subclass):
                client.conn.send(frame)
        if outbound and channel is not None and channel.link is not None:
            channel.link.event(frame)
        return frame

    async def _flood(self) -> None:
        """Other calls' hangups, as a busy box sends them (pre-rendered, so high rates are cheap)."""
        loop = asyncio.get_running_loop()
        pool = []
        for i in range(256):
            ghost = FakeChannel(str(uuidlib.uuid4()), f"sofia/internal/ghost-{i}", "inbound", f"+1555555{i:04d}",
                                "Ghost", "200", variables={"sip_from_user": f"1555555{i:04d}"})
            pool.append(event_frame(self.clock_headers("CHANNEL_HANGUP_COMPLETE") + ghost.profile()
                                    + [("Hangup-Cause", "NORMAL_CLEARING")]))
        start, sent, index = loop.time(), 0, 0
        while True:
            await asyncio.sleep(0.005)
            due = int((loop.time() - start) * self.faults.flood_per_s) - sent
            if due <= 0:
                continue
            chunk = [pool[(index + k) % len(pool)] for k in range(due)]
            index = (index + due) % len(pool)
            sent += due
            self.flood_sent += due
            data = b"".join(chunk)
            for client in list(self.clients):
                if client.wants("CHANNEL_HANGUP_COMPLETE", ""):
                    client.conn.send(data)

    # -- api ----------------------------------------------------------------------------------------

    async def run_api(self, command: str) -> str:
        """What ``api <command>`` answers (the body of the api/response)."""
        self.api_log.append((self.scenario_time(), command))
        name, _, arg = command.partition(" ")
        args = arg.split()
        if name == "uuid_record":
            return self._uuid_record(args)
        if name == "uuid_audio":
            return keypad.uuid_audio(self.channels, args)
        if name in ("uuid_setvar", "uuid_getvar", "uuid_exists", "uuid_kill"):
            ch = self.channels.get(args[0]) if args else None
            if name == "uuid_exists":
                return "true" if ch is not None and not ch.hung_up else "false"
            if ch is None or ch.hung_up:
                return "-ERR No such channel!\n"
            if name == "uuid_setvar" and len(args) >= 2:
                ch.variables[args[1]] = " ".join(args[2:])
                return "+OK\n"
            if name == "uuid_getvar" and len(args) == 2:
                return ch.variables.get(args[1]) or ch.profile_variable(args[1]) or "_undef_"
            if name == "uuid_kill":
                self._spawn(self.hangup(ch, args[1] if len(args) > 1 else "NORMAL_CLEARING"))
                return "+OK\n"
            return f"-USAGE: {name} <uuid> ...\n"
        if name == "show" and arg.strip() == "channels as json":
            return self._show_channels()
        if name == "uuid_buglist":
            ch = self.channels.get(args[0]) if args else None
            if ch is None or ch.hung_up:
                return "-ERR Operation Failed\n"
            return ch.buglist()
        if name == "global_setvar" and "=" in arg:
            key, _, value = arg.partition("=")
            self.globals[key.strip()] = value.strip()
            return "+OK\n"
        if name == "global_getvar":
            return self.globals.get(arg.strip(), "")
        if name == "status":
            return "UP 0 years, 0 days\nFreeSWITCH (Version 1.10.12 fake) is ready\n"
        if name == "module_exists":
            return "true" if arg.strip() in self.modules else "false"
        if name == "xml_locate":
            # "xml_locate dialplan context name <ctx>": the loaded context, as FreeSWITCH serialises it
            if len(args) == 4 and args[:3] == ["dialplan", "context", "name"] and args[3] in self.contexts:
                return self.contexts[args[3]]
            return "can't find anything"
        return f"-ERR {name} Command not found!\n"

    def _show_channels(self) -> str:
        """``show channels as json`` as 1.10.12 writes it (cJSON; no ``rows`` at all when empty)."""
        import json

        rows = [ch.channel_row(self.now_epoch()) for ch in self.channels.values() if not ch.hung_up]
        return json.dumps({"row_count": len(rows), "rows": rows} if rows else {"row_count": 0}, indent="\t")

    def _uuid_record(self, args: list[str]) -> str:
        usage = "-USAGE: <uuid> [start|stop|mask|unmask] <path> [<limit>]\n"
        if len(args) < 3:
            return usage
        uuid, action, path = args[0], args[1], args[2]
        ch = self.channels.get(uuid)
        if ch is None or ch.hung_up:
            return "-ERR Cannot locate session!\n"
        if action == "start":
            self._start_recording(ch, path)
            return "+OK Success\n"
        rec = ch.recording
        if rec is None or (path != "all" and rec.path != path):
            return "-ERR Cannot locate recording!\n"
        now = self.scenario_time()
        if action in ("mask", "unmask"):
            rec.mark(now, action)
        elif action == "stop":
            self._stop_recording(ch)
        else:
            return usage
        return "+OK Success\n"

    def _start_recording(self, ch: FakeChannel, path: str) -> None:
        if ch.recording is not None and ch.recording.path == path:
            return
        now = self.scenario_time()
        rec = FakeRecording(path, now, ops=[(now, "start")])
        if self.write_recordings:
            try:
                rec.audio = RecordingFile(path, now)
            except OSError as exc:  # FreeSWITCH logs it; the channel carries on
                log.warning("record_session: cannot write %s: %s", path, exc)
        ch.recording = rec
        ch.recordings.append(rec)
        self.emit("RECORD_START", ch, [("Record-File-Path", path)], outbound=False)

    def _stop_recording(self, ch: FakeChannel) -> None:
        rec = ch.recording
        if rec is None:
            return
        rec.mark(self.scenario_time(), "stop")
        ch.recording = None
        self.emit("RECORD_STOP", ch, [("Record-File-Path", rec.path)], outbound=False)

    # -- applications ------------------------------------------------------------------------------------

    async def execute_app(self, ch: FakeChannel, app: str, arg: str) -> None:
        """Run one dialplan application on ``ch`` (CHANNEL_EXECUTE ... CHANNEL_EXECUTE_COMPLETE)."""
        self._busy += 1
        try:
            await self._execute_app(ch, app, arg)
        finally:
            self._busy -= 1

    async def _execute_app(self, ch: FakeChannel, app: str, arg: str) -> None:
        app_headers = [("Application", app), ("Application-Data", arg), ("Application-UUID", str(uuidlib.uuid4()))]
        ch.variables["current_application"] = app
        ch.variables["current_application_data"] = arg
        ch.trace.append((self.scenario_time(), f"{app} {arg}".strip()))
        self.emit("CHANNEL_EXECUTE", ch, app_headers)
        response = "_none_"
        if ch.hung_up:
            pass
        elif app == "play_and_get_digits":
            await self._pagd(ch, arg)
        elif app == "playback":
            await self._play(ch, arg)
            response = "FILE PLAYED"
        elif app == "record_session":
            self._start_recording(ch, arg.split(" +", 1)[0].strip())
        elif app == "stop_record_session":
            if ch.recording is not None and (arg in ("", "all") or arg == ch.recording.path):
                self._stop_recording(ch)
        elif app in ("set", "export") and "=" in arg:
            key, _, value = arg.partition("=")
            ch.variables[key] = value
        elif app in ("block_dtmf", "unblock_dtmf"):
            ch.keypad.dtmf_blocked = app == "block_dtmf"
        elif app == "transfer":
            ch.transferred_to = arg
        elif app == "hangup":
            await self.hangup(ch, arg or "NORMAL_CLEARING")
        self.emit("CHANNEL_EXECUTE_COMPLETE", ch, app_headers + [("Application-Response", response)])

    def duration_of(self, path: str) -> float:
        for key, seconds in self.prompt_durations.items():
            if key in path:
                return seconds
        if path.startswith("silence_stream://"):
            tail = path.rsplit("/", 1)[-1]
            return int(tail) / 1000.0 if tail.isdigit() else 0.0
        return self.prompt_duration_s

    async def _play(self, ch: FakeChannel, path: str) -> None:
        """A prompt playing: until its end on the scenario clock, or the hangup."""
        await self._first(ch, self.until(self.scenario_time() + self.duration_of(path)))

    async def _first(self, ch: FakeChannel, *waits: Any) -> Any:
        """The result of the first of ``waits`` to finish, None if the channel hangs up first.

        Waiting for the clock or for a person is not work: :meth:`busy` does not count it.
        """
        tasks = [asyncio.ensure_future(w) for w in waits]
        gone = asyncio.ensure_future(ch._gone.wait())
        self._busy -= 1
        try:
            done, _ = await asyncio.wait([*tasks, gone], return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._busy += 1
            for task in [*tasks, gone]:
                if not task.done():
                    task.cancel()
        for task in tasks:
            if task in done and not task.cancelled():
                return task.result()
        return None

    async def _pagd(self, ch: FakeChannel, arg: str) -> None:
        """``play_and_get_digits`` with FreeSWITCH's argument rules (mod_dptools, switch_ivr_play_say.c)."""
        argv = arg.split(" ")

        def at(i: int, default: str = "") -> str:
            return argv[i] if len(argv) > i else default

        min_digits = max(int(at(0, "0") or 0), 0)
        max_digits = max(int(at(1, "1") or 1), min_digits, 1)
        tries = int(at(2, "1") or 1)
        timeout_s = max(1000, int(at(3, "1000") or 1000)) / 1000.0
        terminators = at(4) or "#"
        prompt, invalid = at(5), at(6)
        var, regex = at(7), at(8)
        transfer_on_failure = " ".join(argv[10:]) if len(argv) > 10 else ""
        if var:
            ch.variables.pop(var, None)
            ch.variables.pop(f"{var}_invalid", None)
        success = False
        while tries > 0 and not ch.hung_up:
            digits = await self._collect(ch, self.duration_of(prompt), timeout_s, max_digits, terminators)
            if ch.hung_up:
                break
            if digits:
                if not regex or re.search(regex, digits):
                    if var:
                        ch.variables[var] = digits
                    success = True
                    break
                if var:
                    ch.variables[f"{var}_invalid"] = digits
            await self._play(ch, invalid)
            tries -= 1
        if not success and transfer_on_failure and not ch.hung_up:
            target = transfer_on_failure.split(" ")[0]
            ch.trace.append((self.scenario_time(), f"PAGD failure! Transfer to: {target}"))
            if target == "None":
                # What greenswitch's "None None" leads to (verified): no such extension, the caller is dropped.
                await self.hangup(ch, "NO_ROUTE_DESTINATION")
            else:
                ch.transferred_to = transfer_on_failure

    async def _collect(self, ch: FakeChannel, prompt_s: float, timeout_s: float, max_digits: int,
                       terminators: str) -> str:
        """Digits pressed during the prompt (which they cut short) or within the timeout after it."""
        while not ch._digits.empty():
            ch._digits.get_nowait()
        ch._collecting = True
        if ch.auto_press:
            asyncio.get_running_loop().call_soon(self.press, ch, ch.auto_press)
        digits = ""
        try:
            window_end = self.scenario_time() + prompt_s + timeout_s
            while len(digits) < max_digits and not ch.hung_up:
                if digits:
                    window_end = self.scenario_time() + timeout_s
                digit = await self._first(ch, ch._digits.get(), self.until(window_end))
                if not isinstance(digit, str):
                    break  # timed out or hung up
                if digit in terminators and max_digits == 1:
                    return ""  # a lone terminator is swallowed (switch_ivr_read)
                if digit in terminators:
                    break
                digits += digit
        finally:
            ch._collecting = False
        return digits

    def press(self, ch: FakeChannel, digits: str) -> None:
        """The party on ``ch`` presses keys (DTMF events; collected if a gather runs)."""
        for digit in digits:
            if keypad.key_pressed(ch, digit, self.scenario_time()):
                self.emit("DTMF", ch, [("DTMF-Digit", digit), ("DTMF-Duration", "2000"), ("DTMF-Source", "RTP")],
                          variables=False)
            if ch._collecting:
                ch._digits.put_nowait(digit)

    # -- channels -------------------------------------------------------------------------------------

    def new_channel(self, number: str, name: str = "", *, direction: str = "inbound", destination: str = "100",
                    caller: FakeChannel | None = None, variables: dict[str, str] | None = None,
                    tech: str = "sofia") -> FakeChannel:
        """A leg.  With ``caller`` it is that caller's b-leg, marked as FreeSWITCH marks one.

        A b-leg carries the CALLER's number as its caller id and names its
        originator everywhere (``Other-Type: originator``,
        ``variable_originator``, ``signal_bond``, ``Channel-Call-UUID``:
        fixture agent_leg_socket).  On ``tech="loopback"`` its callee id is
        the loopback context (``agent-sim``), not the dialled user.
        """
        serial = next(self._names)
        uid = str(uuidlib.uuid4())
        if tech == "loopback":
            chan_name = f"loopback/{number}-a" if caller is not None else f"loopback/in-{serial}-b"
        else:
            chan_name = f"sofia/internal/{serial}" if direction == "inbound" else f"sofia/internal/{number}@fake"
        callee = "agent-sim" if tech == "loopback" and caller is not None else number
        ch = FakeChannel(uid, chan_name, direction, callee, name, destination,
                         caller_number=caller.number if caller else "", caller_name=caller.cid_name if caller else "",
                         originator=caller, source="mod_loopback" if tech == "loopback" else "mod_sofia",
                         context="agent-sim" if tech == "loopback" and caller is not None else "default")
        ch.variables.update({"direction": direction, "uuid": uid, "channel_name": chan_name, "call_uuid": uid})
        if caller is not None:
            ch.variables.update({"is_outbound": "true", "originator": caller.uuid,
                                 "originating_leg_uuid": caller.uuid, "signal_bond": caller.uuid})
            exported = caller.variables.get("export_vars", "")
            ch.variables.update({k: caller.variables[k] for k in exported.split(",") if k in caller.variables})
            if exported:
                ch.variables["export_vars"] = exported
        ch.variables.update(variables or {})
        ch.created = self.now_epoch()
        self.channels[uid] = ch
        return ch

    async def run_socket(self, ch: FakeChannel) -> str:
        """The ``socket <listener> async full`` application on ``ch``: "connected" or "refused"."""
        host, port = self.socket_address
        ch.variables["current_application"] = "socket"
        ch.variables["current_application_data"] = f"{host}:{port} async full"
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            ch.trace.append((self.scenario_time(), "socket: Connection refused"))
            return "refused"
        link = _OutboundLink(self, ch, _Conn(reader, writer, self.faults))
        ch.link = link
        self._links.add(link)
        try:
            await link.run()
        finally:
            ch.link = None
            self._links.discard(link)
        return "connected"

    async def hangup(self, ch: FakeChannel, cause: str = "NORMAL_CLEARING") -> None:
        if ch.hung_up:
            return
        for extension in ch.held_back:  # what a failed hold kept back runs as the leg ends (seen: ~10 s late)
            self.run_feature(ch, extension)
        ch.held_back.clear()
        for room, members in list(self.conferences.items()):
            if ch.uuid in members:
                self.conference_del(ch, room)
        ch.hung_up = True
        ch.hangup_cause = cause
        ch._gone.set()
        ch.keypad.write_mute = ch.keypad.read_mute = 0  # media bugs are removed at hangup
        ch.variables["digits_dialed"] = keypad.digits_dialed(ch)
        self.emit("CHANNEL_HANGUP", ch)
        if ch.recording is not None:
            self._stop_recording(ch)  # carries Answer-State: hangup and the cause, as captured
        self.emit("CHANNEL_HANGUP_COMPLETE", ch)
        if ch.link is not None:
            ch.link.hung_up()

    def fire_custom(self, ch: FakeChannel, subclass: str, fields: dict[str, str]) -> None:
        """The dialplan's ``event`` application on ``ch``: a CUSTOM event with ``ch``'s variables."""
        self.emit("CUSTOM", ch, list(fields.items()), subclass=subclass, outbound=False)

    def load_dialplan(self, path: str) -> None:
        """Load a dialplan include file (e.g. the shipped callguard.xml): its contexts answer ``xml_locate``."""
        import xml.etree.ElementTree as ET

        root = ET.parse(path).getroot()
        for context in root.iter("context"):
            self.contexts[context.get("name", "")] = ET.tostring(context, encoding="unicode")

        # -- conferences (mod_conference) ---------------------------------------------------------------

    def conference_add(self, ch: FakeChannel, name: str) -> int:
        """``conference <name>@default`` on ``ch``: ``conference::maintenance`` ``add-member``.

        As captured (fixture conference_join): the member events carry the
        channel and caller-profile headers but NO ``variable_*`` headers, so
        no ``callguard_call`` either.
        """
        room = self.conferences.setdefault(name, {})
        if not room:
            self.conference_ids[name] = str(uuidlib.uuid4())
            self.emit("CUSTOM", None, self._conference_headers(name) + [("Action", "conference-create")],
                      subclass="conference::maintenance")
        member_id = next(self._member_ids)
        room[ch.uuid] = member_id
        ch.trace.append((self.scenario_time(), f"conference {name}@default"))
        self._member_event(ch, name, member_id, "add-member")
        return member_id

    def conference_del(self, ch: FakeChannel, name: str) -> None:
        room = self.conferences.get(name, {})
        member_id = room.pop(ch.uuid, None)
        if member_id is None:
            return
        self._member_event(ch, name, member_id, "del-member")
        if not room:
            self.emit("CUSTOM", None, self._conference_headers(name) + [("Action", "conference-destroy")],
                      subclass="conference::maintenance")

    def _conference_headers(self, name: str) -> list[tuple[str, str]]:
        return [("Conference-Name", name), ("Conference-Domain", "fake"),
                ("Conference-Size", str(len(self.conferences.get(name, {})))), ("Conference-Ghosts", "0"),
                ("Conference-Profile-Name", "default"), ("Conference-Unique-ID", self.conference_ids.get(name, ""))]

    def _member_event(self, ch: FakeChannel, name: str, member_id: int, action: str) -> None:
        extra = [("See", "true"), ("Speak", "true"), ("Talking", "false"), ("Mute-Detect", "false"),
                 ("Hold", "false"), ("Member-ID", str(member_id)), ("Member-Type", "member"),
                 ("Member-Ghost", "false"), ("Energy-Level", "100"), ("Current-Energy", "0"), ("Action", action)]
        headers = self._conference_headers(name) + [("Floor", "false")] + ch.profile(variables=False) + extra
        self.emit("CUSTOM", None, headers, subclass="conference::maintenance")

    async def conference_guest(self, number: str, name: str, conference: str, *, through_socket: bool = True,
                               auto_press: str = "") -> FakeChannel:
        """A caller who dials straight into ``conference``.

        ``through_socket``: the site routes conference callers through the
        shipped ``callguard_conference`` extension first (``set
        callguard_conference=<room>``, then the socket: the listener plays
        the notice per the rule); without it they walk straight in.
        """
        guest = self.new_channel(number, name, destination=conference)
        guest.variables["callguard_conference"] = conference
        guest.auto_press = auto_press
        if through_socket:
            await self.run_socket(guest)
            if guest.variables.get("callguard_decision") == "declined":
                guest.trace.append((self.scenario_time(), "declined: not sent into the conference"))
                return guest
        if not guest.hung_up:
            self.conference_add(guest, conference)
        return guest

    def sendmsg(self, uuid: str, headers: dict[str, str]) -> str:
        """``sendmsg <uuid>`` on the event socket: queue a private event on that channel (mod_event_socket).

        An ``execute`` runs its application when the channel gets to it, after
        what was queued before (a bridged leg's bridge loop runs them), as
        ``uuid_broadcast <uuid> <file> aleg`` does.
        """
        ch = self.channels.get(uuid)
        if ch is None or ch.hung_up:
            return f"-ERR invalid session id [{uuid}]"
        if headers.get("call-command") == "execute":
            self._spawn(self._private_app(ch, headers.get("execute-app-name", ""), headers.get("execute-app-arg", "")))
        return "+OK"

    async def _private_app(self, ch: FakeChannel, app: str, arg: str) -> None:
        async with ch._private:
            if ch.hung_up:
                return
            if app == "playback":
                ch.keypad.prompts.append(arg)
            await self.execute_app(ch, app, arg)

    def bridge(self, a: FakeChannel, b: FakeChannel) -> None:
        """``CHANNEL_BRIDGE`` on ``a`` with ``b`` as the other leg."""
        a.keypad.peer, b.keypad.peer = b, a
        self.emit("CHANNEL_BRIDGE", a, [("Bridge-A-Unique-ID", a.uuid), ("Bridge-B-Unique-ID", b.uuid)]
                  + b.other_leg(), outbound=False)

    # -- scripted calls ------------------------------------------------------------------------------------

    def apply_knobs(self, scenario: Any) -> None:
        """A scenario's ``[pbx]`` table: prompt length, confirmation delay, unconfirmed mutes."""
        self.prompt_duration_s = scenario.prompt_duration_s
        self.record_reply_delay_s = scenario.confirm_delay_s
        self.mask_reply_delay_s = 0.0 if scenario.confirm_mute else self.unconfirmed_mask_delay_s

    async def play(self, scenario: Any, *, agent_through_socket: bool = True, join_order: str = "bridge-first",
                   join_skew_s: float = 0.0, agent_tech: str = "sofia", staff_mark: bool = True,
                   caller_variables: dict[str, str] | None = None, auto_press: str = "",
                   on_api: Callable[[CallRecord, Any], Any] | None = None) -> CallRecord:
        """Play a :class:`~callguard.testing.scenario.Scenario` and return what happened.

        The caller's leg runs a model of the shipped ``callguard.xml``:
        ``export callguard_call=${uuid}``, ``socket``, then with a decision
        bridge the agent (if the scenario has one) and go on; with none
        (listener down or gone) play the fallback notice and go on
        unrecorded.  Hotkeys come from the agent leg, IVR signals from the
        caller's leg, as CUSTOM events carrying ``variable_callguard_call``;
        both also flag the recorded leg (``callguard_paused`` /
        ``callguard_payment``) as callguard_features.xml does.  ``api``
        steps are not PBX traffic: they go to ``on_api(record, step)``.
        Call :meth:`apply_knobs` first to honour the scenario's ``[pbx]`` table.

        The agent is dialled as the README shows: ``{callguard_staff=true,
        execute_on_answer='execute_extension callguard_agent XML callguard'}``
        (``staff_mark=False`` leaves the mark out; ``agent_through_socket=False``
        leaves out execute_on_answer).  ``auto_press``: the caller presses these
        keys as soon as a gather starts (tests on the wall clock, where a
        scripted press can come before a slow listener starts the gather).  On answer FreeSWITCH bridges the leg
        and the leg's own socket session connects, racing each other on two
        connections: ``join_order`` "bridge-first" (what the capture shows)
        or "socket-first", the second one ``join_skew_s`` wall-clock seconds
        after the first.
        """
        from callguard.testing.scenario import Step

        if on_api is None and any(step.action == "api" for step in scenario.steps):
            raise ValueError("scenario steps with api = ... are callguard API calls, not PBX events; "
                             "pass on_api= to deliver them (or use callguard simulate)")
        steps = list(scenario.steps)
        if not any(s.action == "hangup" and s.party == "caller" for s in steps):
            steps.append(Step(scenario.duration + 30.0, "hangup", "caller"))
        caller = self.new_channel(scenario.caller.number, scenario.caller.name)
        caller.variables["callguard_call"] = caller.uuid
        caller.variables["export_vars"] = "callguard_call"
        caller.variables.update(caller_variables or {})
        caller.auto_press = auto_press  # keys pressed as each gather starts, however late it starts
        record = CallRecord(caller)
        self.calls.append(record)
        self.emit("CHANNEL_ANSWER", caller)
        runner = self._spawn(self._script(steps, self.scenario_time(), record, on_api))
        record.socket = await self.run_socket(caller)
        if caller.hung_up:
            record.dialplan = "hung-up"
        elif caller.transferred_to:
            record.dialplan = "transferred"
        elif caller.variables.get("callguard_decision") in DECIDED:
            record.dialplan = "decided"
        else:
            # callguard.xml's fail-closed branch: the notice from the PBX itself, no recording.
            record.dialplan = "fallback"
            await self.execute_app(caller, "playback", "fallback-notice")
        if scenario.agent is not None and not caller.hung_up and record.dialplan != "transferred":
            agent = self.new_channel(scenario.agent.number, scenario.agent.name, direction="outbound",
                                     destination=scenario.agent.number, caller=caller, tech=agent_tech,
                                     variables={"callguard_staff": "true"} if staff_mark else None)
            record.agent = agent
            await self.answer_bleg(caller, agent, through_socket=agent_through_socket, order=join_order,
                                   skew_s=join_skew_s)
        await runner
        return record

    async def _loopback_far_leg(self, leg: FakeChannel) -> None:
        """The far half of a loopback pair runs the same execute_on_answer (verified on 1.10.12:
        loopback copies it, and the dial string's variables, to the far leg): its own socket session."""
        far = self.new_channel(leg.number, leg.cid_name, direction="inbound", destination=leg.destination,
                               variables=dict(leg.variables), tech="loopback")
        far.name = leg.name[:-2] + "-b" if leg.name.endswith("-a") else leg.name + "-b"
        far.variables.update({"uuid": far.uuid, "channel_name": far.name, "call_uuid": far.uuid,
                              "other_loopback_leg_uuid": leg.uuid})
        leg.variables["other_loopback_leg_uuid"] = far.uuid
        self.bind_hotkeys(far)
        await self.run_socket(far)

    async def answer_bleg(self, caller: FakeChannel, leg: FakeChannel, *, through_socket: bool = True,
                          order: str = "bridge-first", skew_s: float = 0.0) -> None:
        """A dialled leg answers: bridged to ``caller``; with ``through_socket`` its
        execute_on_answer runs the shipped ``callguard_agent`` (hotkeys bound, then the socket)."""
        if order not in ("bridge-first", "socket-first"):
            raise ValueError("order must be 'bridge-first' or 'socket-first'")

        def bridge() -> None:
            if not caller.hung_up and not leg.hung_up:
                leg.variables["bridge_to"] = caller.uuid
                caller.variables["bridge_to"] = leg.uuid
                self.bridge(caller, leg)

        if not through_socket:
            bridge()
            return
        leg.variables["execute_on_answer"] = "execute_extension callguard_agent XML callguard"
        self.bind_hotkeys(leg)
        if leg.source == "mod_loopback":
            self._spawn(self._loopback_far_leg(leg))
        if order == "bridge-first":
            bridge()
            if skew_s:
                with self.hold():
                    await asyncio.sleep(skew_s)
            self._spawn(self.run_socket(leg))
            return
        socket_task = self._spawn(self.run_socket(leg))
        with self.hold():
            while leg.link is None or not leg.link.myevents:
                if socket_task.done():
                    break
                await asyncio.sleep(0.001)
            if skew_s:
                await asyncio.sleep(skew_s)
        bridge()

    async def _script(self, steps: list[Any], start: float, record: CallRecord,
                      on_api: Callable[[CallRecord, Any], Any] | None) -> None:
        for step in steps:
            await self.until(start + step.at)
            if record.caller.hung_up:
                return
            if step.action == "api" and on_api is not None:
                result = on_api(record, step)
                if asyncio.iscoroutine(result):
                    await result
                continue
            await self._step(step, record)

    async def _step(self, step: Any, record: CallRecord) -> None:
        caller = record.caller
        if step.action == "press":
            target = self._party(step.party, record)
            if target is not None:
                self.press(target, step.value)
        elif step.action in ("hotkey", "ivr"):
            self.signal(record, step.value, source="agent-hotkey" if step.action == "hotkey" else "ivr")
        elif step.action == "join":
            joiner = self.new_channel(step.value, step.name, direction="outbound", destination=step.value,
                                      caller=caller, variables={"callguard_call": caller.uuid})
            record.joiners[step.value] = joiner
            self._spawn(self._join(caller, joiner, step.announceable))
        elif step.action == "leave":
            joiner = record.joiners.get(step.value)
            if joiner is not None:
                await self.hangup(joiner)
        elif step.action == "hangup":
            if step.party == "caller":
                await self.hangup_call(record)
            else:
                target = self._party(step.party, record)
                if target is not None:
                    await self.hangup(target)

    def signal(self, record: CallRecord, what: str, source: str = "agent-hotkey") -> None:
        """A feature code or IVR signal (pause | resume | payment-start | payment-end).

        Hotkeys are the agent pressing ``*1`` / ``*2`` on its leg (when there
        is one): what happens then depends on how ``bind_meta_app`` bound
        them (:meth:`press_hotkey`).  IVR signals run the feature extension on
        the caller's leg at once.
        """
        if source == "agent-hotkey" and record.agent is not None and what in ("pause", "resume"):
            self.press_hotkey(record.agent, self.hotkeys[0] if what == "pause" else self.hotkeys[1])
            return
        origin = record.agent if source == "agent-hotkey" and record.agent is not None else record.caller
        self.run_feature(origin, f"callguard_{what.replace('-', '_')}", source)

    #: callguard_features.xml: feature extension -> (CUSTOM subclass, flag on the recorded leg, flag value)
    FEATURES = {
        "callguard_pause": ("callguard::pause", "callguard_paused", "agent-hotkey"),
        "callguard_resume": ("callguard::resume", "callguard_paused", ""),
        "callguard_payment_start": ("callguard::payment_start", "callguard_payment", "ivr"),
        "callguard_payment_end": ("callguard::payment_end", "callguard_payment", ""),
    }

    def run_feature(self, origin: FakeChannel, extension: str, source: str = "agent-hotkey") -> None:
        """``execute_extension <extension> XML callguard-features`` on ``origin``, as shipped.

        The hotkey extensions only act on a leg that is not the recorded one
        and record what was pressed on the pressing leg (``callguard_hotkey``,
        read back by the listener before it resumes); every signal leaves its
        state on the recorded leg, then fires the CUSTOM event from ``origin``.
        """
        if extension in self.CARD_FEATURES:
            self._card_feature(origin, extension, source)
            return
        subclass, flag, value = self.FEATURES[extension]
        action = extension[len("callguard_"):]
        call = self.channels.get(origin.variables.get("callguard_call", ""))
        hotkey = action in ("pause", "resume")
        if hotkey and (call is None or call is origin):
            origin.trace.append((self.scenario_time(), f"{extension}: not a staff leg, ignored"))
            return
        if hotkey or action == "payment_end":
            origin.variables["callguard_hotkey"] = action
        if call is not None:
            call.variables[flag] = source if value else ""
            if action.startswith("payment"):
                call.variables["sensitive_dtmf"] = "true" if value else "false"
            if value:
                call.variables["callguard_masked"] = "true"  # the mark a restarted listener adopts the call by
            rec = call.recording
            if value and rec is not None and rec.path == call.variables.get("callguard_recording") and not rec.masked:
                # ${uuid_record(${callguard_call} mask ${uuid_getvar(... callguard_recording)})}: the
                # PBX masks before any payment audio flows, listener or not.
                origin.trace.append((self.scenario_time(), f"uuid_record {call.uuid} mask {rec.path} (from the dialplan)"))
                rec.mark(self.scenario_time(), "mask")
        origin.trace.append((self.scenario_time(), f"execute_extension {extension}"))
        self.fire_custom(origin, subclass, {"callguard_action": action, "callguard_source": source})

    #: callguard_features.xml's card payment extensions: extension -> (CUSTOM subclass, the leg it runs on)
    CARD_FEATURES = {
        "callguard_card": ("callguard::card_start", "staff"),
        "callguard_card_cancel": ("callguard::card_cancel", "staff"),
        "callguard_card_ivr": ("callguard::card_start", "caller"),
    }

    def _card_feature(self, origin: FakeChannel, extension: str, source: str) -> None:
        """A card payment extension as shipped: staff-only or caller-only, a cancel marks its leg first."""
        subclass, runs_on = self.CARD_FEATURES[extension]
        call = self.channels.get(origin.variables.get("callguard_call", ""))
        on = "caller" if call is origin else "staff"
        if call is None or on != runs_on:
            origin.trace.append((self.scenario_time(), f"{extension}: not a {runs_on} leg, ignored"))
            return
        if extension == "callguard_card_cancel":
            origin.variables["callguard_card"] = "cancel"
        origin.trace.append((self.scenario_time(), f"execute_extension {extension}"))
        self.fire_custom(origin, subclass, {"callguard_source": "ivr" if runs_on == "caller" else source})

    def bind_hotkeys(self, leg: FakeChannel) -> None:
        """``callguard_agent``'s ``bind_meta_app`` lines on ``leg``, with :attr:`meta_flags`."""
        leg.meta = {self.hotkeys[0]: (self.meta_flags, "callguard_pause"),
                    self.hotkeys[1]: (self.meta_flags, "callguard_resume"),
                    self.card_hotkeys[0]: (self.meta_flags, "callguard_card"),
                    self.card_hotkeys[1]: (self.meta_flags, "callguard_card_cancel")}

    def press_hotkey(self, leg: FakeChannel, digit: str) -> None:
        """The party on ``leg`` presses ``*<digit>``: a bound meta app runs, or nothing.

        Verified on 1.10.12 (DESIGN.md): with the ``i`` flag the extension
        runs inline at once; with ``s`` (hold the other leg) and no working
        hold music, the extension is held back until the leg is torn down.
        Unbound digits are plain DTMF.
        """
        self.press(leg, "*" + digit)
        binding = leg.meta.get(digit)
        if binding is None:
            return
        flags, extension = binding
        if "i" in flags.split()[-1] or self.hold_music:
            self.run_feature(leg, extension)
        else:
            leg.trace.append((self.scenario_time(), f"bind_meta_app {digit}: hold failed, {extension} held back"))
            leg.held_back.append(extension)

    async def _join(self, caller: FakeChannel, joiner: FakeChannel, announceable: bool) -> None:
        if announceable:
            # callguard.xml dials joiners with execute_on_answer=socket: they hear
            # the notice from the listener before they are bridged.
            await self.run_socket(joiner)
        if not joiner.hung_up and not caller.hung_up:
            self.bridge(caller, joiner)

    def _party(self, party: str, record: CallRecord) -> FakeChannel | None:
        if party == "caller":
            return record.caller
        if party == "agent":
            return record.agent
        return record.joiners.get(party)

    async def hangup_call(self, record: CallRecord) -> None:
        """The caller hangs up; the other legs follow (as a bridge tears down)."""
        record.ended_at = self.scenario_time()
        await self.hangup(record.caller)
        for leg in [record.agent, *record.joiners.values()]:
            if leg is not None:
                await self.hangup(leg)


__all__ = ["CallRecord", "Faults", "FakeChannel", "FakeFreeSWITCH", "FakeRecording"]
