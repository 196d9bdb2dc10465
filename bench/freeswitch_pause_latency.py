"""Pause latency at 1,000 concurrent calls: hotkey CUSTOM event in -> ``uuid_record ... mask`` out.

Two processes, as in production: this one runs the real FreeSWITCH listener
(engine, outbound socket server in its gevent thread, inbound ESL client,
SQLite ledger writer); a child process runs FakeFreeSWITCH on the wall
clock with N calls that went through notice + consent and are being
recorded, plus a background flood of other calls' hangup events.

Per press (``CUSTOM callguard::pause``/``resume`` for a call the listener
knows) we time the issue's metric: from the fake writing the event into
the socket to the listener writing the ``api uuid_record <uuid> mask|unmask
<path>`` it caused (both stamped with ``time.perf_counter``, CLOCK_MONOTONIC,
shared by the two processes), split into the time the bytes sat unread in
the socket and the time inside the listener (start of the
``data_received`` that carried the event -> the command's write, with the
loop thread's CPU time and the share spent on earlier events of the same
read).  Each command is attributed to the press that caused it; a press
whose command goes out later (*deferred*: the engine waits for the
previous mask's reply) or not at all is counted and shown with the state it
found, and calls whose mask failed (fail-safe stop) are counted from the
ledger.  Baseline in the same run: one call, no flood.  Memory per call:
RSS of the listener (and of the ledger's writer process), before the calls
vs. with every call recording.  Latencies are also given *load-corrected*
(minus the loop thread's run-queue wait, see bench/measure.py).

The ledger: ``memory`` (entries in a list: the baseline), ``thread`` (SQLite
written by a thread of the listener) or ``process`` (SQLite written by a
child process, what ``callguard run`` uses).  Without ``--ledger`` all three
run one after the other and the table gives each one's ratio to ``memory``.

Run: python bench/freeswitch_pause_latency.py [--calls 1000] [--flood 20000] [--ledger process]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SOUNDS = "/usr/share/freeswitch/sounds"
sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import (  # noqa: E402
    MachineLoad,
    RunQueueClock,
    describe_load,
    percentile,
    process_cpu_s,
    ratio,
    rss_kib,
    run_variants,
)


# -- the fake PBX (child process) -------------------------------------------------------------


async def fake_main() -> None:
    from callguard.testing.fake_freeswitch import FakeFreeSWITCH, Faults

    faults = Faults()
    fake = FakeFreeSWITCH(password="bench", clock="real", prompt_duration_s=0.2, faults=faults)
    await fake.start()
    reader = asyncio.StreamReader()
    await asyncio.get_running_loop().connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    calls: list[Any] = []

    def reply(**data: Any) -> None:
        sys.stdout.write(json.dumps(data) + "\n")
        sys.stdout.flush()

    agents: dict[str, Any] = {}

    async def one_call(i: int) -> Any:
        ch = fake.new_channel(f"+1415555{i:04d}", f"Caller {i}")
        ch.variables["callguard_call"] = ch.uuid
        ch.variables["export_vars"] = "callguard_call"
        ch.auto_press = "1"
        await fake.run_socket(ch)
        if ch.recording is not None:
            # A staff agent (marked in the dial string) bridged in: hotkeys come from its leg, and a
            # resume is only honoured from a staff leg of the call (issue 11 section 1).
            agent = fake.new_channel("1000", "Agent", direction="outbound", caller=ch,
                                     variables={"callguard_staff": "true"})
            agents[ch.uuid] = agent
            await fake.answer_bleg(ch, agent, through_socket=False)
        return ch

    reply(port=fake.port)
    while True:
        line = await reader.readline()
        if not line:
            break
        cmd = json.loads(line)
        if cmd["cmd"] == "calls":
            fake.socket_address = ("127.0.0.1", cmd["socket_port"])
            # Calls arrive at cmd["rate"] per second (a PBX does not answer 1,000 at once).
            tasks = []
            for i in range(cmd["n"]):
                tasks.append(asyncio.ensure_future(one_call(len(calls) + i)))
                await asyncio.sleep(1.0 / cmd.get("rate", 50))
            new = await asyncio.gather(*tasks)
            recorded = [c for c in new if c.recording is not None]
            calls += recorded
            reply(ready=len(recorded), unrecorded=[{"decision": c.variables.get("callguard_decision", ""),
                                                   "trace": [t for _, t in c.trace][-3:]}
                                                  for c in new if c.recording is None][:5])
        elif cmd["cmd"] == "flood":
            faults.flood_per_s = cmd["rate"]
            fake._spawn(fake._flood())
            reply(flooding=cmd["rate"])
        elif cmd["cmd"] in ("pause", "resume"):
            spread = cmd.get("spread_s", 2.0) / max(1, len(calls))
            subclass = f"callguard::{cmd['cmd']}"
            stamps = {}
            for ch in calls:
                # perf_counter is CLOCK_MONOTONIC, shared with the listener process.
                stamps[ch.uuid] = time.perf_counter()
                # The feature extension on the agent's leg (callguard_features.xml), as *6 / *7 run it.
                fake.run_feature(agents[ch.uuid], f"callguard_{cmd['cmd']}")
                await asyncio.sleep(spread)
            reply(sent=len(calls), stamps=stamps)
        elif cmd["cmd"] == "hangup":
            for ch in calls:
                await fake.hangup(ch)
            calls = []
            reply(hung_up=True)
        elif cmd["cmd"] == "exit":
            break
    await fake.stop()


# -- the listener (this process) --------------------------------------------------------------


class Probe:
    """Follows each hotkey press from the read that carried it to the mask it caused.

    A press is a ``CUSTOM callguard::pause``/``resume`` event for a call the
    listener knows.  Its ``uuid_record ... mask|unmask`` is either written
    while that event is being handled (*immediate*: the issue's metric,
    timed from the start of the ``data_received`` holding the event's bytes)
    or later (*deferred*: the engine holds an unmask until the PBX answered
    the previous mask); a press asking for what the call already is writes
    nothing.  A mask is attributed to the press that caused it, never to
    whichever read happened to come last.
    """

    def __init__(self) -> None:
        from callguard.adapters.freeswitch import inbound
        from callguard.adapters.freeswitch.listener import FreeSwitchListener

        self.presses: list[dict[str, Any]] = []
        self.unattributed = 0  #: masks no press asked for (re-asserted after a reconnect, joiners)
        self.runqueue: RunQueueClock | None = None  #: of the loop thread, made on its first read
        self._read = (0.0, 0.0, 0)
        self._current: dict[str, Any] | None = None
        self._waiting: dict[str, dict[str, Any]] = {}
        original_rx, original_send = inbound.InboundProtocol.data_received, inbound.InboundProtocol.send
        original_event = FreeSwitchListener._on_inbound_event
        probe = self

        def data_received(proto: Any, data: bytes) -> None:
            if probe.runqueue is None:
                probe.runqueue = RunQueueClock()
            probe.runqueue.mark()
            probe._read = (time.perf_counter(), time.thread_time(), len(data))
            try:
                original_rx(proto, data)
            finally:
                probe.runqueue.mark()

        def on_event(listener: Any, event: Any, received_at: float) -> None:
            subclass = event.get("Event-Subclass") or ""
            uuid = event.get("Unique-ID") or ""
            state = listener.calls.get(event.get("variable_callguard_call") or uuid)
            session = listener.engine.session(state.call_id) if state is not None and listener.engine else None
            if subclass not in ("callguard::pause", "callguard::resume") or session is None:
                return original_event(listener, event, received_at)
            press = {"channel": state.channel, "read": probe._read[0], "read_cpu": probe._read[1],
                     "read_bytes": probe._read[2], "handler": time.perf_counter(), "state": session.state.value,
                     "mask": None, "how": "none", "action": subclass.split("::")[1]}
            probe.presses.append(press)
            probe._current = press
            try:
                return original_event(listener, event, received_at)
            finally:
                probe._current = None
                if press["mask"] is None:
                    earlier = probe._waiting.pop(state.channel, None)
                    if earlier is not None:
                        earlier["how"] = "superseded"
                    probe._waiting[state.channel] = press

        def send(proto: Any, data: bytes, command: str = "") -> Any:
            result = original_send(proto, data, command)
            if data.startswith(b"api uuid_record ") and (b" mask " in data or b" unmask " in data):
                now, cpu = time.perf_counter(), time.thread_time()
                channel = data.split(b" ", 3)[2].decode()
                current = probe._current
                if current is not None and current["channel"] == channel and current["mask"] is None:
                    current["mask"], current["mask_cpu"], current["how"] = now, cpu, "immediate"
                    current["mask_wait"] = probe.runqueue.now() if probe.runqueue is not None else 0.0
                elif channel in probe._waiting:
                    press = probe._waiting.pop(channel)
                    press["mask"], press["how"] = now, "deferred"
                else:
                    probe.unattributed += 1
            return result

        inbound.InboundProtocol.data_received = data_received  # type: ignore[method-assign]
        inbound.InboundProtocol.send = send  # type: ignore[method-assign]
        FreeSwitchListener._on_inbound_event = on_event  # type: ignore[method-assign]

    def take(self) -> list[dict[str, Any]]:
        presses, self.presses = self.presses, []
        return presses

    @property
    def masked(self) -> int:
        return sum(1 for p in self.presses if p["mask"] is not None)


class _MemoryLedger:
    """``--ledger memory``: entries kept in a list, no writer at all (the baseline)."""

    def __init__(self) -> None:
        from callguard.runtime import MemoryLedger
        self._inner = MemoryLedger()

    def append(self, entry: Any, received_at: float) -> None:
        self._inner.append(entry, received_at)

    def flush(self, timeout: float | None = None) -> bool:
        return True

    def close(self, timeout: float | None = None) -> bool:
        return True


def open_ledger(kind: str, config: Any) -> Any:
    """What ``callguard run freeswitch`` opens (``memory``: the baseline without a database)."""
    from callguard.wiring import build_ledger

    if kind == "memory":
        return _MemoryLedger()
    return build_ledger(config, "bench", writer=kind,
                        recordings=(config.freeswitch.recording_dir, "[freeswitch] recording_dir"))


def errors_in(ledger: Any) -> dict[str, int]:
    """Engine errors the ledger holds (what a failed mask / start left), by what failed."""
    from collections import Counter

    if isinstance(ledger, _MemoryLedger):
        return dict(Counter(str(e.data.get("what")) for e, _ in ledger._inner.entries if e.kind == "error"))
    from callguard.ledger import export_entries

    return dict(Counter(str(e.data.get("what")) for e in export_entries(ledger.engine) if e.kind == "error"))


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from callguard.adapters.freeswitch.commands import directory_prompts
    from callguard.adapters.freeswitch.listener import FreeSwitchListener
    from callguard.adapters.interpreter import tune_interpreter
    from callguard.config import parse_config
    from callguard.core.prompts import StaticPrompts

    probe = Probe()
    child = await asyncio.create_subprocess_exec(sys.executable, __file__, "--fake", stdin=asyncio.subprocess.PIPE,
                                                 stdout=asyncio.subprocess.PIPE, limit=1 << 20)
    assert child.stdin is not None and child.stdout is not None

    async def ask(**cmd: Any) -> dict[str, Any]:
        child.stdin.write((json.dumps(cmd) + "\n").encode())  # type: ignore[union-attr]
        await child.stdin.drain()  # type: ignore[union-attr]
        return json.loads(await asyncio.wait_for(child.stdout.readline(), 1800))  # type: ignore[union-attr]

    port = json.loads(await child.stdout.readline())["port"]
    tmp = tempfile.mkdtemp(prefix="callguard-bench-")
    config = parse_config({"freeswitch": {"port": port, "password": "bench", "listen_port": 0,
                                          "max_calls": args.calls + 100, "action_timeout_ms": 5000},
                           "consent": {"timeout_ms": 2000},
                           "recording": {"confirm_timeout_ms": 2000, "start_timeout_ms": 30000},
                           "ledger": {"url": f"sqlite:///{tmp}/ledger.sqlite"}}, "<bench>", environ={})
    ledger = open_ledger(args.ledger, config)
    writer_pid = getattr(ledger, "pid", None)
    tune_interpreter()  # as `callguard run freeswitch` does
    listener = FreeSwitchListener(config, ledger, prompts=StaticPrompts(durations={"notice": 0.2}),
                                  prompt_path=directory_prompts(SOUNDS))
    await listener.start()
    await asyncio.wait_for(listener.connected.wait(), 30)
    engine = listener.engine
    assert engine is not None
    out: dict[str, Any] = {"ledger": args.ledger, "calls": args.calls, "flood": args.flood}

    async def muted(n: int, want: bool, settle: bool = False) -> dict[str, int]:
        """Wait until ``n`` calls are (un)muted; with ``settle``, until none is still on its way."""
        deadline = time.perf_counter() + 300
        while sum(1 for s in engine.sessions.values() if s.muted == want and s.recording) < n:
            if settle and not any(s.state.value in ("muting", "unmuting") for s in engine.sessions.values()):
                break  # every call is muted, or its mute failed (counted below, not hidden)
            if time.perf_counter() > deadline:
                states: dict[str, int] = {}
                for s in engine.sessions.values():
                    states[s.state.value] = states.get(s.state.value, 0) + 1
                raise RuntimeError(f"only some calls reached muted={want}: {states}; "
                                   f"{probe.masked} masks sent, stats {listener.stats}")
            await asyncio.sleep(0.01)
        states: dict[str, int] = {}
        for s in engine.sessions.values():
            states[s.state.value] = states.get(s.state.value, 0) + 1
        return states

    # Baseline: one call, no flood, 50 pauses.
    await ask(cmd="calls", n=1, socket_port=listener.outbound_port)
    written: dict[str, list[float]] = {}
    for _ in range(50):
        for action, want in (("pause", True), ("resume", False)):
            for uuid, stamp in (await ask(cmd=action, spread_s=0))["stamps"].items():
                written.setdefault(uuid, []).append(stamp)
            await muted(1, want)
    baseline = probe.take()
    await ask(cmd="hangup")
    await asyncio.sleep(0.5)

    # Load: N concurrent recorded calls, flood, one pause per call spread over 2 s.
    await asyncio.sleep(0.2)
    probe.take()
    gc.collect()
    ledger.flush(30)
    out["idle_rss_kib"], out["writer_idle_rss_kib"] = rss_kib(), rss_kib(writer_pid) if writer_pid else 0
    cpu0, wcpu0 = process_cpu_s(), process_cpu_s(writer_pid) if writer_pid else 0.0
    setup_load = MachineLoad()
    started = time.perf_counter()
    ready = await ask(cmd="calls", n=args.calls, socket_port=listener.outbound_port, rate=args.arrivals)
    out["setup_s"] = time.perf_counter() - started
    if ready["ready"] != args.calls:
        assert ledger.flush(30)
        raise SystemExit(f"only {ready['ready']} of {args.calls} calls are being recorded: {errors_in(ledger)}")
    await listener_quiet(listener, args.calls)
    await asyncio.sleep(2.0)  # greenswitch's per-session event greenlets notice the end within 1 s
    ledger.flush(120)
    out["setup_cpu_s"] = process_cpu_s() - cpu0
    out["setup_writer_cpu_s"] = (process_cpu_s(writer_pid) - wcpu0) if writer_pid else 0.0
    out["setup_load"] = setup_load.stop()
    gc.collect()
    out["rss_per_call"] = (rss_kib() - out["idle_rss_kib"]) * 1024 / args.calls
    out["writer_rss_per_call"] = ((rss_kib(writer_pid) - out["writer_idle_rss_kib"]) * 1024 / args.calls
                                  if writer_pid else 0.0)
    await ask(cmd="flood", rate=args.flood)
    await asyncio.sleep(1.0)
    skipped0 = listener.skipped_events
    phase_load = MachineLoad()
    t0 = time.perf_counter()
    loaded_written = {uuid: [stamp] for uuid, stamp in (await ask(cmd="pause", spread_s=2.0))["stamps"].items()}
    loaded_states = await muted(args.calls, True, settle=True)
    flood_rate = (listener.skipped_events - skipped0) / (time.perf_counter() - t0)
    out["phase_load"] = phase_load.stop()
    loaded = probe.take()
    assert ledger.flush(60)
    out["errors"] = errors_in(ledger)
    await ask(cmd="hangup")
    child.stdin.write(b'{"cmd": "exit"}\n')
    await child.wait()
    await listener.stop()
    ledger.close(30)

    print(f"setup: {ready['ready']} calls through notice + consent + record_session, arriving at "
          f"{args.arrivals:g}/s, in {out['setup_s']:.1f} s; ledger: {args.ledger}")
    out["baseline"] = report("baseline (1 call, no flood, 50 pauses + 50 resumes)", baseline, written, probe)
    out["loaded"] = report(f"loaded ({args.calls} calls, flood {flood_rate:,.0f} events/s read while pausing)",
                           loaded, loaded_written, probe)
    print(f"masks not caused by a press: {probe.unattributed}")
    print(f"loaded phase, call states after the pauses: {loaded_states}; engine errors in the ledger: "
          f"{out['errors'] or 'none'}")
    print(f"  machine while setting up: {describe_load(out['setup_load'])}")
    print(f"  machine while pausing: {describe_load(out['phase_load'])}")
    print(f"idle RSS: listener {out['idle_rss_kib'] / 1024:.1f} MiB"
          + (f", writer process {out['writer_idle_rss_kib'] / 1024:.1f} MiB" if writer_pid else ""))
    print(f"memory per recorded call: RSS {out['rss_per_call'] / 1024:.1f} KiB of the listener"
          + (f" + {out['writer_rss_per_call'] / 1024:.1f} KiB of the writer process" if writer_pid else "")
          + " (target <= 20 KiB)")
    print(f"CPU per call (set-up): listener {out['setup_cpu_s'] / args.calls * 1e3:.2f} ms"
          + (f", writer process {out['setup_writer_cpu_s'] / args.calls * 1e3:.2f} ms" if writer_pid else ""))
    return out


def pct(values: list[float], q: float) -> float:
    return percentile(values, q)


def summary(values: list[float], short: bool = False) -> str:
    if not values:
        return "no samples"
    text = f"p50 {pct(values, 0.5) * 1000:.3f} ms p99 {pct(values, 0.99) * 1000:.3f} ms"
    return text if short else f"n={len(values)} {text} max {max(values) * 1000:.3f} ms"


def report(name: str, presses: list[dict[str, Any]], written: dict[str, list[float]], probe: Probe) -> dict[str, Any]:
    """Print one phase; return its pause figures (seconds): p50/p99 raw and load-corrected."""
    print(name)
    seen: dict[str, int] = {}
    for press in presses:  # the n-th press on a channel is the n-th event the fake fired on it
        n = seen[press["channel"]] = seen.get(press["channel"], -1) + 1
        stamps = written.get(press["channel"], [])
        press["written"] = stamps[n] if n < len(stamps) else None
    result: dict[str, Any] = {"p50": float("nan"), "p99": float("nan"), "p99_corrected": float("nan")}
    runqueue = probe.runqueue
    for action in ("pause", "resume"):
        mine = [p for p in presses if p["action"] == action]
        if not mine:
            continue
        immediate = [p for p in mine if p["how"] == "immediate"]
        deferred = [p for p in mine if p["how"] == "deferred"]
        idle = [p for p in mine if p["how"] in ("none", "superseded")]
        timed = [p for p in immediate if p["written"] is not None]
        socket = [p["mask"] - p["written"] for p in timed]
        corrected = [p["mask"] - p["written"] - max(0.0, p.get("mask_wait", 0.0) - runqueue.at(p["written"]))
                     for p in timed] if runqueue is not None else socket
        print(f"  {action}: {len(mine)} presses; {'mask' if action == 'pause' else 'unmask'} written while "
              f"handling the event: {len(immediate)}; deferred: {len(deferred)}; none: {len(idle)}")
        print(f"    issue metric (event written into the socket by the PBX -> command written by the listener): "
              f"{summary(socket)}")
        print(f"    load-corrected (minus the loop thread's run-queue wait): {summary(corrected)}")
        print(f"      of which unread in the socket: "
              f"{summary([p['read'] - p['written'] for p in timed])}")
        print(f"      in listener (start of the read carrying it -> command written): "
              f"{summary([p['mask'] - p['read'] for p in immediate])}; CPU "
              f"{summary([p['mask_cpu'] - p['read_cpu'] for p in immediate], short=True)}")
        print(f"      of which earlier events in the same read: "
              f"{summary([p['handler'] - p['read'] for p in immediate], short=True)}; largest read "
              f"{max((p['read_bytes'] for p in immediate), default=0):,} bytes")
        for state in sorted({p["state"] for p in deferred}):
            late = [p["mask"] - p["read"] for p in deferred if p["state"] == state]
            print(f"    deferred: {len(late)} pressed in state {state} (waits for the PBX to answer the previous "
                  f"mask/unmask): {summary(late)}")
        for state in sorted({p["state"] for p in idle}):
            print(f"    nothing to send: {sum(1 for p in idle if p['state'] == state)} pressed in state {state}")
        if action == "pause" and socket:
            result = {"p50": pct(socket, 0.5), "p99": pct(socket, 0.99), "p99_corrected": pct(corrected, 0.99)}
    return result


def compare(results: list[dict[str, Any]]) -> int:
    base = next(r for r in results if r["ledger"] == "memory")["loaded"]
    first = results[0]
    print(f"\n== pause p99 with {first['calls']:,} calls + flood {first['flood']:,.0f}/s; ratio to the in-memory "
          f"ledger of this run (targets: SQLite <= 2 ms and <= 1.5x) ==")
    print(f"{'ledger':10s} {'p99 raw':>10s} {'ratio':>7s} {'p99 load-corr.':>15s} {'ratio':>7s} {'RSS/call':>9s} "
          f"{'idle RSS':>9s}  machine")
    ok = True
    for r in results:
        loaded = r["loaded"]
        rss = (r["rss_per_call"] + r["writer_rss_per_call"]) / 1024
        print(f"{r['ledger']:10s} {loaded['p99'] * 1e3:8.3f}ms {ratio(loaded['p99'], base['p99']):>7s} "
              f"{loaded['p99_corrected'] * 1e3:13.3f}ms {ratio(loaded['p99_corrected'], base['p99_corrected']):>7s} "
              f"{rss:7.1f}KiB {r['idle_rss_kib'] / 1024:7.1f}MiB  load {r['phase_load']['loadavg_end']:.1f}, PSI "
              f"{r['phase_load']['cpu_pressure_s']:.0f} s")
        if r["ledger"] == "process":
            ok = loaded["p99_corrected"] <= 0.002 and loaded["p99_corrected"] <= 1.5 * base["p99_corrected"]
    return 0 if ok else 1


async def listener_quiet(listener: Any, calls: int) -> None:
    """Every call recording, off the socket, nothing in flight."""
    engine = listener.engine
    deadline = time.perf_counter() + 120
    while (sum(1 for s in engine.sessions.values() if s.recording) < calls or listener.parked
           or listener.busy()):
        if time.perf_counter() > deadline:
            raise RuntimeError(f"not quiet: {sum(1 for s in engine.sessions.values() if s.recording)} recording, "
                               f"{len(listener.parked)} parked, busy={listener.busy()}, "
                               f"parked states {[(c.hung_up, c.finished, c.queue.qsize(), c._waiting) for c in list(listener.parked.values())[:5]]}")
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--flood", type=float, default=20000, help="background events per second")
    parser.add_argument("--arrivals", type=float, default=50, help="new calls per second while setting up")
    parser.add_argument("--ledger", choices=("memory", "thread", "process"),
                        help="one run with this ledger (default: compare all three, ratios to memory)")
    parser.add_argument("--json", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--fake", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
    if args.fake:
        asyncio.run(fake_main())
        return 0
    if args.ledger is None:
        common = ["--calls", str(args.calls), "--flood", str(args.flood), "--arrivals", str(args.arrivals)]
        return compare(run_variants(Path(__file__), [["--ledger", kind, *common]
                                                     for kind in ("memory", "thread", "process")]))
    result = asyncio.run(run(args))
    if args.json:
        args.json.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
