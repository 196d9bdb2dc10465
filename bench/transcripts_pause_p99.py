"""Pause latency while transcribing: the Asterisk pause bench alone, then with the transcription pool busy.

The transcription worker pool (:mod:`callguard.transcripts.worker`) runs
its engines in separate processes at ``nice`` 10, so the listener's event
loop keeps the CPU when a call needs a pause.  This runs
``bench/asterisk_pause_latency.py`` (the real listener over TCP against a
FakeAsterisk process) twice in one run: the baseline with nothing else
running, then while a pool with one worker per core transcribes the
accuracy bench's test set in a loop, and prints the pause percentiles of
both and their ratio.

    .venv/bin/python bench/transcripts_pause_p99.py --set /tmp/callguard-transcripts-bench [--calls 200]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

from callguard.transcripts.settings import TranscriptsConfig
from callguard.transcripts.worker import TranscriptionPool

HERE = Path(__file__).parent


def pause_bench(calls: int, flood: int) -> str:
    out = subprocess.run([sys.executable, str(HERE / "asterisk_pause_latency.py"), "--calls", str(calls),
                          "--flood", str(flood), "--ledger", "memory"], capture_output=True, text=True, timeout=900)
    return out.stdout + out.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", type=Path, default=Path("/tmp/callguard-transcripts-bench"))
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--flood", type=int, default=5000)
    args = parser.parse_args()
    wavs = sorted(args.set.glob("call*.wav"))
    if not wavs:
        sys.exit(f"no test set in {args.set}: run bench/transcripts_accuracy.py --out {args.set} first")
    idle = pause_bench(args.calls, args.flood)
    pool = TranscriptionPool(TranscriptsConfig(workers=os.cpu_count() or 1))
    stop = threading.Event()
    done = [0.0]

    def load() -> None:
        while not stop.is_set():
            for wav in wavs:
                if stop.is_set():
                    break
                done[0] += pool.transcribe(wav)[2]

    pool.transcribe(wavs[0])  # workers started and engines loaded before timing
    # Two submitters per worker: a worker never waits for its next file.
    threads = [threading.Thread(target=load, daemon=True) for _ in range(2 * (os.cpu_count() or 1))]
    for t in threads:
        t.start()
    began = time.monotonic()
    before = done[0]
    busy = pause_bench(args.calls, args.flood)
    wall = time.monotonic() - began
    transcribed = done[0] - before
    stop.set()
    for t in threads:
        t.join()
    pool.close()
    pick = re.compile(r".*(p50|p99|p95|max).*", re.IGNORECASE)
    for name, text in (("idle", idle), ("while transcribing", busy)):
        print(f"== pause bench, {name}")
        print("\n".join(line for line in text.splitlines() if pick.match(line))[:3000])
    print(f"audio transcribed during the busy run: {transcribed:.0f} s in {wall:.0f} s "
          f"({transcribed / wall:.1f} s of audio per second, {os.cpu_count()} niced worker(s))")


if __name__ == "__main__":
    main()
