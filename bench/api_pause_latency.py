"""API pause -> PBX-confirmed latency with 1,000 live calls (issue 14: p99 under 20 ms).

This process runs the production listener (AMI client, engine, SQLite
ledger) with the console served from its event loop, exactly as
``callguard run asterisk`` with ``[web] enabled``; FakeAsterisk runs in its
own process (like a PBX next door).  1,000 calls are placed, consent and are
recorded.  Then a separate client *process* (a CRM, the CLI) sends
``POST /api/v1/calls/<id>/pause`` and ``/resume`` with an API token, one at
a time over a kept-alive connection, and times each request: the API
answers only after the PBX confirmed the mute (``MixMonitorMute`` event),
so the request's round trip is the API pause -> PBX-confirmed latency.

Baseline in the same run: the same pauses and resumes through the control
surface on the listener's loop (``CallControl.pause``: engine, AMI action,
PBX confirmation) with no HTTP, token check, routing or JSON.

    python bench/api_pause_latency.py [--calls 1000] [--requests 400]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def q(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000

    return {"p50": q(0.50), "p90": q(0.90), "p99": q(0.99), "max": ordered[-1] * 1000,
            "mean": statistics.fmean(ordered) * 1000}


def pbx_process(conn, calls: int) -> None:
    """FakeAsterisk in its own process: place the calls, consent, report their ids, serve until told."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    asyncio.run(_pbx_main(conn, calls))


async def _pbx_main(conn, n_calls: int) -> None:
    from callguard.testing.fake_asterisk import FakeAsterisk

    loop = asyncio.get_running_loop()
    # noise off and a lenient heartbeat: setting up 1,000 calls on a small machine is not what we measure
    async with FakeAsterisk(secret="bench", default_prompt_s=0.01, noise=False, heartbeat_stale_s=3600) as pbx:
        conn.send(pbx.port)
        await loop.run_in_executor(None, conn.recv)  # "place the calls"
        placed = []
        for i in range(n_calls):
            placed.append(pbx.place_call(f"+1415555{i:04d}", "Bench", agent=False))
            if i % 10 == 9:
                await asyncio.sleep(0.05)
        await asyncio.gather(*(c.answer_prompt("1", timeout=300) for c in placed))
        conn.send([c.linkedid for c in placed])
        await loop.run_in_executor(None, conn.recv)  # "done"


def client(url: str, token: str, call_ids: list[str], requests: int, out: "mp.Queue[list[float]]") -> None:
    """The API client, in its own process: sequential pause/resume requests, each timed."""
    import httpx

    samples = []
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=10) as http:
        http.get("/api/v1/me").raise_for_status()  # connect once, as a CRM keeps its connection
        for i in range(requests):
            call_id = call_ids[(i // 2) % len(call_ids)]
            action = "pause" if i % 2 == 0 else "resume"
            t0 = time.perf_counter()
            response = http.post(f"/api/v1/calls/{call_id}/{action}")
            samples.append(time.perf_counter() - t0)
            body = response.json()
            expected = "muted" if action == "pause" else "recording"
            if response.status_code != 200 or body["state"] != expected:
                raise SystemExit(f"{action} {call_id}: {response.status_code} {body}")
    out.put(samples)


async def run(calls: int, requests: int) -> None:
    from callguard.adapters.asterisk.runner import console_probe, start_listener, tune_interpreter
    from callguard.config import parse_config
    from callguard.core.prompts import StaticPrompts
    from callguard.ledger import Ledger
    from callguard.web.server import serve_console
    from callguard.web.users import Credentials

    tmp = Path(tempfile.mkdtemp(prefix="callguard-bench-api-"))
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    pbx_proc = ctx.Process(target=pbx_process, args=(child, calls), daemon=True)
    pbx_proc.start()
    pbx_port = await asyncio.to_thread(parent.recv)
    config = parse_config({
        "asterisk": {"port": pbx_port, "secret": "bench", "heartbeat_interval_s": 1.0, "action_timeout_ms": 5000},
        "recording": {"confirm_timeout_ms": 2000, "start_timeout_ms": 10000},
        "consent": {"timeout_ms": 20000},
        "policy": {"home": "US-NY", "default_regime": "one-party"},
        "ledger": {"url": f"sqlite:///{tmp / 'ledger.sqlite'}"},
        "vault": {"ingest_on_stop": False},
        "web": {"enabled": True, "credentials": str(tmp / "users.json")},
        "users": {"crm": "supervisor"},
    }, "<bench>", environ={})
    credentials = Credentials(config.web.credentials)
    credentials.set_user("crm", "bench-password-123")
    token = credentials.add_token("crm", "bench")
    tune_interpreter()
    ledger = Ledger.open(config.ledger.url, "asterisk@bench")
    running = await start_listener(config, ledger, prompts=StaticPrompts(("en",), durations={"notice": 0.01}))
    engine = running.engine
    try:
        async with serve_console(config, engine, console_probe(running), pbx="asterisk", port=0) as console:
            print(f"placing {calls} calls ...", flush=True)

            parent.send("place")
            call_ids = await asyncio.to_thread(parent.recv)
            t0 = time.monotonic()
            while sum(1 for s in list(engine.sessions.values()) if s.state.value == "recording") < calls:
                if time.monotonic() - t0 > 300:
                    from collections import Counter
                    states = Counter(s.state.value for s in list(engine.sessions.values()))
                    raise SystemExit(f"calls did not all reach 'recording' within 5 minutes: {dict(states)}")
                await asyncio.sleep(0.1)
            ledger.flush(60)
            print(f"{len(engine.sessions)} live recorded calls", flush=True)

            control = console.control
            direct = []
            for i in range(requests):
                call_id = call_ids[(i // 2) % len(call_ids)]
                t = time.perf_counter()
                view = await (control.pause if i % 2 == 0 else control.resume)(call_id, "bench")
                direct.append(time.perf_counter() - t)
                assert view.state == ("muted" if i % 2 == 0 else "recording"), view.state

            queue: mp.Queue[list[float]] = mp.get_context("spawn").Queue()
            proc = mp.get_context("spawn").Process(target=client, args=(console.url, token, call_ids[::-1],
                                                                         requests, queue))
            proc.start()
            api = await asyncio.to_thread(queue.get, True, 600)
            await asyncio.to_thread(proc.join, 30)
    finally:
        await running.stop()
        ledger.close(30)
        parent.send("done")
        await asyncio.to_thread(pbx_proc.join, 30)
    d, a = percentiles(direct), percentiles(api)
    print(f"\n{requests} pause/resume requests over {calls} live recorded calls (FakeAsterisk, same host)")
    print(f"{'':32} {'p50':>8} {'p90':>8} {'p99':>8} {'max':>8}  (ms)")
    print(f"{'baseline: control surface':32} {d['p50']:8.2f} {d['p90']:8.2f} {d['p99']:8.2f} {d['max']:8.2f}")
    print(f"{'API (HTTP, token, JSON)':32} {a['p50']:8.2f} {a['p90']:8.2f} {a['p99']:8.2f} {a['max']:8.2f}")
    print(f"ratio API / baseline: p50 x{a['p50'] / d['p50']:.2f}, p99 x{a['p99'] / d['p99']:.2f}; "
          f"target p99 < 20 ms: {'met' if a['p99'] < 20 else 'NOT met'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=400)
    args = parser.parse_args()
    asyncio.run(run(args.calls, args.requests))


if __name__ == "__main__":
    main()
