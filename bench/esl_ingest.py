"""ESL ingest: events/s through callguard's ESL path vs greenswitch 0.0.19's own parser.

The stream is the captured FreeSWITCH 1.10.12 events (every ``text/event-plain``
frame of tests/adapters/freeswitch/fixtures: hangups, executes, DTMF,
RECORD_*, CUSTOM hotkeys; 2-7 KiB each), repeated to --events events.  Both
sides read the same bytes from memory, so only parsing is measured:

* greenswitch: ``ESLProtocol.receive_events`` reading a file object exactly
  as it reads its socket file (``readline`` per header line, ``read`` for the
  body, ``ESLEvent`` = URL-decode everything, split lines, build a dict);
* callguard, full: :class:`ESLParser` on 64 KiB reads, then every header of
  every event decoded into a dict (what greenswitch gives, minus its bugs);
* callguard, listener path: :class:`ESLParser` + :func:`translate_inbound`,
  i.e. what the inbound connection really does per event (look up the few
  headers it needs in place; no dict).

Run: python bench/esl_ingest.py [--events 100000]
(CALLGUARD_NO_EXTENSIONS=1 times the pure-Python parsers instead of the C extension.)
"""

from __future__ import annotations

import argparse
import gc
import io
import statistics
import time
from pathlib import Path

from callguard.adapters import speedups
from callguard.adapters.freeswitch.wire import ESLParser
from callguard.adapters.freeswitch.translate import translate_inbound

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "adapters" / "freeswitch" / "fixtures"


def event_frames() -> list[bytes]:
    """Every text/event-plain frame of the captured streams, as the bytes FreeSWITCH sent."""
    frames = []
    for path in sorted(FIXTURES.glob("*.esl")):
        data = b"".join(line for line in path.read_bytes().splitlines(keepends=True) if not line.startswith(b">>> "))
        pos = 0
        while True:
            start = data.find(b"Content-Length: ", pos)
            if start < 0:
                break
            head_end = data.find(b"\n\n", start)
            header = data[start:head_end]
            length = int(header.split(b"\n")[0].split(b": ")[1])
            end = head_end + 2 + length
            if b"Content-Type: text/event-plain" in header:
                frames.append(data[start:end])
            pos = end
    return frames


class RepeatingFile(io.RawIOBase):
    """``base`` repeated ``times`` times, readable like greenswitch's socket file (small memory)."""

    def __init__(self, base: bytes, times: int):
        self.base, self.times = base, times
        self.buf = io.BytesIO(base)
        self.left = times - 1

    def _next(self) -> bool:
        if self.left <= 0:
            return False
        self.left -= 1
        self.buf = io.BytesIO(self.base)
        return True

    def readline(self, size: int = -1) -> bytes:
        line = self.buf.readline()
        while not line and self._next():
            line = self.buf.readline()
        return line

    def read(self, size: int = -1) -> bytes:
        data = self.buf.read(size)
        while len(data) < size and self._next():
            data += self.buf.read(size - len(data))
        return data


def run_greenswitch(base: bytes, times: int) -> int:
    from greenswitch.esl import ESLProtocol

    class Counting(ESLProtocol):
        count = 0

        def handle_event(self, event):  # as greenswitch's, without the queue hand-off
            length = int(event.headers["Content-Length"])
            data = self._read_socket(self.sock_file, length)
            event.parse_data(data)
            self.count += 1

    proto = Counting()
    proto.sock_file = RepeatingFile(base, times)
    proto.sock = io.BytesIO()
    proto.connected = True
    proto.receive_events()
    return proto.count


def run_ours(base: bytes, times: int, full: bool) -> int:
    parser = ESLParser()
    count = 0
    chunk = 65536
    for _ in range(times):
        for i in range(0, len(base), chunk):
            for frame in parser.feed(base[i:i + chunk]):
                event = frame.event
                if full:
                    event.headers.decoded()
                else:
                    translate_inbound(event, 0.0)
                count += 1
    return count


def timed(fn, *args) -> tuple[int, float]:
    gc.collect()
    start = time.perf_counter()
    count = fn(*args)
    return count, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000, help="events per implementation")
    parser.add_argument("--rounds", type=int, default=100,
                        help="the implementations take turns in this many short rounds (fair on a busy machine)")
    args = parser.parse_args()
    frames = event_frames()
    base = b"".join(frames)
    print("callguard parsers:", "C extension (callguard.adapters._cwire)" if speedups.cwire is not None
          else "pure Python")
    per_round = max(1, -(-args.events // (len(frames) * args.rounds)))
    total = per_round * len(frames) * args.rounds
    print(f"stream: {len(frames)} captured events ({len(base) / len(frames) / 1024:.1f} KiB average), "
          f"{total} events per implementation in {args.rounds} interleaved rounds, "
          f"{len(base) * per_round * args.rounds / 1e6:.0f} MB")
    runs = (("greenswitch 0.0.19 ESLProtocol", run_greenswitch, ()),
            ("callguard, every header decoded", run_ours, (True,)),
            ("callguard, listener path", run_ours, (False,)))
    rates: dict[str, list[float]] = {name: [] for name, _, _ in runs}
    seconds: dict[str, float] = {name: 0.0 for name, _, _ in runs}
    for _ in range(args.rounds):
        for name, fn, extra in runs:
            count, took = timed(fn, base, per_round, *extra)
            assert count == per_round * len(frames), (name, count)
            rates[name].append(count / took)
            seconds[name] += took
    # Other processes only ever slow a round down: the fastest rounds show what
    # the code costs (as timeit's min), the median what a busy machine gives.
    best = {name: max(r) for name, r in rates.items()}
    median = {name: statistics.median(r) for name, r in rates.items()}
    for name, _, _ in runs:
        print(f"{name:34s} best {best[name]:>9,.0f} events/s   median {median[name]:>9,.0f}   "
              f"({total / seconds[name]:,.0f} overall, {seconds[name]:.1f} s)")
    baseline = runs[0][0]
    for name, _, _ in runs[1:]:
        print(f"ratio {name} / greenswitch: best {best[name] / best[baseline]:.1f}x, "
              f"median {median[name] / median[baseline]:.1f}x")


if __name__ == "__main__":
    main()
