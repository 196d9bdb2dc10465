"""Pause latency at 1,000 concurrent calls: hotkey CUSTOM event in -> ``uuid_record ... mask`` out.

Two processes, as in production: this one runs the real FreeSWITCH listener
(engine, outbound socket server in its gevent thread, inbound ESL client,
SQLite ledger writer); a child process runs FakeFreeSWITCH on the wall
clock with N calls that went through notice + consent and are being
recorded, plus a background flood of other calls' hangup events.

Latency is measured inside the listener: from the moment the bytes holding
the ``CUSTOM callguard::pause`` event are handed to the inbound connection
(``data_received``) to the moment the ``api uuid_record <uuid> mask <path>``
command is written to the same socket.  Baseline in the same run: one call,
no flood.  Memory per call: Python heap (tracemalloc) and RSS of the
listener process, before the calls vs. with every call recording.

Run: python bench/freeswitch_pause_latency.py [--calls 1000] [--flood 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

SOUNDS = "/usr/share/freeswitch/sounds"


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

    async def one_call(i: int) -> Any:
        ch = fake.new_channel(f"+1415555{i:04d}", f"Caller {i}")
        ch.variables["callguard_call"] = ch.uuid
        ch.auto_press = "1"
        await fake.run_socket(ch)
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
            for ch in calls:
                fake.fire_custom(ch, subclass, {"callguard_action": cmd["cmd"], "callguard_source": "agent-hotkey"})
                await asyncio.sleep(spread)
            reply(sent=len(calls))
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
    """Times from a read that carried a pause to the mask command it caused."""

    def __init__(self) -> None:
        from callguard.adapters.freeswitch import inbound

        self.latencies: list[float] = []
        self.cpu: list[float] = []  #: the same span in this thread's CPU time (no waiting for the OS)
        self.rx = 0.0
        self.rx_cpu = 0.0
        original_rx, original_send = inbound.InboundProtocol.data_received, inbound.InboundProtocol.send
        probe = self

        def data_received(proto: Any, data: bytes) -> None:
            probe.rx = time.perf_counter()
            probe.rx_cpu = time.thread_time()
            original_rx(proto, data)

        def send(proto: Any, data: bytes, command: str = "") -> Any:
            if data.startswith(b"api uuid_record ") and b" mask " in data:
                probe.latencies.append(time.perf_counter() - probe.rx)
                probe.cpu.append(time.thread_time() - probe.rx_cpu)
            return original_send(proto, data, command)

        inbound.InboundProtocol.data_received = data_received  # type: ignore[method-assign]
        inbound.InboundProtocol.send = send  # type: ignore[method-assign]


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


async def run(args: argparse.Namespace) -> None:
    from callguard.adapters.freeswitch.listener import FreeSwitchListener
    from callguard.adapters.freeswitch.wire import directory_prompts
    from callguard.config import parse_config
    from callguard.core.prompts import StaticPrompts
    from callguard.ledger import Ledger

    probe = Probe()
    child = await asyncio.create_subprocess_exec(sys.executable, __file__, "--fake", stdin=asyncio.subprocess.PIPE,
                                                 stdout=asyncio.subprocess.PIPE, limit=1 << 20)
    assert child.stdin is not None and child.stdout is not None

    async def ask(**cmd: Any) -> dict[str, Any]:
        child.stdin.write((json.dumps(cmd) + "\n").encode())  # type: ignore[union-attr]
        await child.stdin.drain()  # type: ignore[union-attr]
        return json.loads(await asyncio.wait_for(child.stdout.readline(), 600))  # type: ignore[union-attr]

    port = json.loads(await child.stdout.readline())["port"]
    tmp = tempfile.mkdtemp(prefix="callguard-bench-")
    config = parse_config({"freeswitch": {"port": port, "password": "bench", "listen_port": 0,
                                          "max_calls": args.calls + 100, "action_timeout_ms": 5000},
                           "consent": {"timeout_ms": 2000},
                           "recording": {"confirm_timeout_ms": 2000, "start_timeout_ms": 30000}}, "<bench>",
                          environ={})
    ledger = Ledger.open(f"sqlite:///{tmp}/ledger.sqlite", "bench")
    listener = FreeSwitchListener(config, ledger, prompts=StaticPrompts(durations={"notice": 0.2}),
                                  prompt_path=directory_prompts(SOUNDS))
    await listener.start()
    await asyncio.wait_for(listener.connected.wait(), 30)
    engine = listener.engine
    assert engine is not None

    async def muted(n: int, want: bool) -> None:
        deadline = time.perf_counter() + 120
        while sum(1 for s in engine.sessions.values() if s.muted == want and s.recording) < n:
            if time.perf_counter() > deadline:
                states: dict[str, int] = {}
                for s in engine.sessions.values():
                    states[s.state.value] = states.get(s.state.value, 0) + 1
                raise RuntimeError(f"only some calls reached muted={want}: {states}; "
                                   f"{len(probe.latencies)} masks sent, stats {listener.stats}")
            await asyncio.sleep(0.01)

    # Baseline: one call, no flood, 50 pauses.
    await ask(cmd="calls", n=1, socket_port=listener.outbound_port)
    for _ in range(50):
        await ask(cmd="pause", spread_s=0)
        await muted(1, True)
        await ask(cmd="resume", spread_s=0)
        await muted(1, False)
    baseline, baseline_cpu = probe.latencies[:], probe.cpu[:]
    await ask(cmd="hangup")
    await asyncio.sleep(0.5)

    # Load: N concurrent recorded calls, flood, one pause per call spread over 2 s.
    probe.latencies.clear()
    probe.cpu.clear()
    await asyncio.sleep(0.2)
    tracemalloc.start()
    heap0, rss0 = tracemalloc.get_traced_memory()[0], rss_kib()
    started = time.perf_counter()
    ready = await ask(cmd="calls", n=args.calls, socket_port=listener.outbound_port, rate=args.arrivals)
    setup_s = time.perf_counter() - started
    if ready["ready"] != args.calls:
        from collections import Counter

        from callguard.ledger import export_entries
        assert ledger.flush(30)
        why = Counter(str(e.data.get("detail")) for e in export_entries(ledger.engine) if e.kind == "error")
        raise SystemExit(f"only {ready['ready']} of {args.calls} calls are being recorded: {dict(why)}")
    await listener_quiet(listener, args.calls)
    await asyncio.sleep(2.0)  # greenswitch's per-session event greenlets notice the end within 1 s
    gc.collect()
    heap1, rss1 = tracemalloc.get_traced_memory()[0], rss_kib()
    tracemalloc.stop()
    await ask(cmd="flood", rate=args.flood)
    await asyncio.sleep(1.0)
    skipped0 = listener.skipped_events
    t0 = time.perf_counter()
    await ask(cmd="pause", spread_s=2.0)
    await muted(args.calls, True)
    flood_rate = (listener.skipped_events - skipped0) / (time.perf_counter() - t0)
    loaded, loaded_cpu = probe.latencies[:], probe.cpu[:]
    await ask(cmd="hangup")
    child.stdin.write(b'{"cmd": "exit"}\n')
    await child.wait()
    await listener.stop()
    ledger.close(30)

    def pct(values: list[float], q: float) -> float:
        values = sorted(values)
        return values[min(len(values) - 1, int(q * len(values)))] * 1000

    print(f"setup: {ready['ready']} calls through notice + consent + record_session, arriving at "
          f"{args.arrivals:g}/s, in {setup_s:.1f} s")
    print(f"baseline (1 call, no flood, {len(baseline)} pauses): p50 {pct(baseline, 0.5):.3f} ms  "
          f"p99 {pct(baseline, 0.99):.3f} ms")
    print(f"loaded ({args.calls} calls, flood {flood_rate:,.0f} events/s read while pausing, {len(loaded)} pauses): "
          f"p50 {pct(loaded, 0.5):.3f} ms  p99 {pct(loaded, 0.99):.3f} ms  max {max(loaded) * 1000:.3f} ms")
    print(f"ratio loaded/baseline: p50 {pct(loaded, 0.5) / pct(baseline, 0.5):.1f}x  "
          f"p99 {pct(loaded, 0.99) / pct(baseline, 0.99):.1f}x")
    print(f"CPU time on the pause path (this thread, excludes waiting for the OS): baseline p50 "
          f"{pct(baseline_cpu, 0.5):.3f} ms p99 {pct(baseline_cpu, 0.99):.3f} ms; loaded p50 "
          f"{pct(loaded_cpu, 0.5):.3f} ms p99 {pct(loaded_cpu, 0.99):.3f} ms")
    print(f"host load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"memory per recorded call: Python heap {(heap1 - heap0) / args.calls / 1024:.1f} KiB, "
          f"RSS {(rss1 - rss0) / args.calls:.1f} KiB")


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--flood", type=float, default=20000, help="background events per second")
    parser.add_argument("--arrivals", type=float, default=50, help="new calls per second while setting up")
    parser.add_argument("--fake", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
    if args.fake:
        asyncio.run(fake_main())
    else:
        asyncio.run(run(args))


if __name__ == "__main__":
    main()
