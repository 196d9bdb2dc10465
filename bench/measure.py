"""What the pause-latency benches share: machine load, run-queue delay, GC pauses, process CPU and memory.

On a busy machine (the development box has 2 cores shared by several
people) a wall-clock tail is mostly time the listener's loop thread sat
runnable while the kernel ran somebody else.  Linux counts that time per
thread (``/proc/<pid>/task/<tid>/schedstat``, second field: nanoseconds
spent waiting on a run queue), so each latency here is also reported
*load-corrected*: minus the run-queue wait the loop thread accrued in the
same window.  What is left is CPU the listener spent plus time it was not
runnable at all (blocked on the GIL, page faults); that is the part a
ledger writer thread or a GC pause can cause, and it does not depend on
what else runs on the machine.
"""

from __future__ import annotations

import bisect
import gc
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def summary(values: list[float], short: bool = False) -> str:
    if not values:
        return "no samples"
    text = f"p50 {percentile(values, 0.5) * 1000:.3f} ms p99 {percentile(values, 0.99) * 1000:.3f} ms"
    return text if short else f"n={len(values)} {text} max {max(values) * 1000:.3f} ms"


class RunQueueClock:
    """Cumulative run-queue wait of the calling thread, sampled cheaply (one pread).

    ``mark()`` records (now, wait) so that the wait at an earlier instant
    (e.g. when the PBX process wrote an event) can be looked up later:
    ``waited_since(t)`` is the wait accrued since the last mark at or before
    ``t``.  Marks at the start and end of every read keep that close.
    """

    def __init__(self) -> None:
        try:
            self._fd: int | None = os.open(f"/proc/self/task/{threading.get_native_id()}/schedstat", os.O_RDONLY)
        except OSError:  # not Linux: no correction
            self._fd = None
        self._times: list[float] = []
        self._waits: list[float] = []

    def now(self) -> float:
        if self._fd is None:
            return 0.0
        return int(os.pread(self._fd, 128, 0).split()[1]) * 1e-9

    def mark(self) -> float:
        wait = self.now()
        self._times.append(time.perf_counter())
        self._waits.append(wait)
        return wait

    def at(self, t: float) -> float:
        """The cumulative wait as of the last mark at or before ``t``."""
        i = bisect.bisect_right(self._times, t) - 1
        return self._waits[max(i, 0)] if self._waits else 0.0

    def clear(self) -> None:
        self._times.clear()
        self._waits.clear()


class GcRecorder:
    """Every cyclic-GC collection in this process: (seconds, generation, thread)."""

    def __init__(self) -> None:
        self.collections: list[tuple[float, int, str]] = []
        self._started: dict[int, float] = {}
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        ident = threading.get_ident()
        if phase == "start":
            self._started[ident] = time.perf_counter()
        elif ident in self._started:
            self.collections.append((time.perf_counter() - self._started.pop(ident), info["generation"],
                                     threading.current_thread().name))

    def by_generation(self) -> dict[int, dict[str, float]]:
        out: dict[int, dict[str, float]] = {}
        for took, generation, _ in self.collections:
            g = out.setdefault(generation, {"count": 0, "total_s": 0.0, "max_s": 0.0})
            g["count"] += 1
            g["total_s"] += took
            g["max_s"] = max(g["max_s"], took)
        return out


def cpu_pressure_s() -> float:
    """Seconds runnable tasks on this machine waited for a CPU so far (Linux PSI, cpu some), or 0."""
    try:
        with open("/proc/pressure/cpu") as f:
            return float(f.readline().rsplit("total=", 1)[1]) / 1e6
    except (OSError, IndexError, ValueError):
        return 0.0


def stolen_s() -> float:
    """CPU-seconds the hypervisor ran something else while this VM wanted to run (/proc/stat steal)."""
    try:
        with open("/proc/stat") as f:
            return int(f.readline().split()[8]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def process_cpu_s(pid: int | None = None) -> float:
    """User + system CPU seconds of a process (all its threads)."""
    if pid is None:
        return time.process_time()
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def rss_kib(pid: int | None = None) -> int:
    try:
        with open(f"/proc/{pid or 'self'}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class MachineLoad:
    """Load average, CPU pressure and steal over a window, to print next to every figure."""

    def __init__(self) -> None:
        self.start()

    def start(self) -> None:
        self._pressure, self._steal, self._t = cpu_pressure_s(), stolen_s(), time.monotonic()
        self._load0 = os.getloadavg()[0]

    def stop(self) -> dict[str, float]:
        return {"loadavg_start": self._load0, "loadavg_end": os.getloadavg()[0], "cpus": os.cpu_count() or 0,
                "cpu_pressure_s": cpu_pressure_s() - self._pressure, "steal_s": stolen_s() - self._steal,
                "seconds": time.monotonic() - self._t}


def describe_load(load: dict[str, float]) -> str:
    return (f"load average {load['loadavg_start']:.1f} -> {load['loadavg_end']:.1f} on {load['cpus']:.0f} CPUs; "
            f"tasks waited for a CPU {load['cpu_pressure_s']:.1f} s of {load['seconds']:.0f} s (PSI); "
            f"steal {load['steal_s']:.1f} s")


def run_variants(script: Path, variants: list[list[str]]) -> list[dict[str, Any]]:
    """Run ``script`` once per argument list, each in a fresh interpreter; collect their ``--json`` results."""
    results = []
    for i, extra in enumerate(variants):
        out = Path(f"/tmp/callguard-bench-{os.getpid()}-{i}.json")
        print(f"\n=== {' '.join(extra)} ===", flush=True)
        done = subprocess.run([sys.executable, str(script), *extra, "--json", str(out)])
        if done.returncode not in (0, 1) or not out.exists():
            raise SystemExit(f"variant {extra} failed (exit {done.returncode})")
        results.append(json.loads(out.read_text()))
        out.unlink()
    return results


def ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}x" if base > 0 else "n/a"
