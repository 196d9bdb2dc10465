"""CPython settings for a listener process: who gets the GIL, and what the cyclic GC scans.

Both listeners run the pause path on one asyncio loop, in one interpreter,
next to a few helper threads (AMI/ESL supervisors, the ledger process's
acknowledgement reader, FreeSWITCH's outbound-socket thread).  Two
interpreter defaults cost that loop milliseconds at the wrong moment:

* the GIL switch interval (5 ms): a loop coming back from a syscall while
  another thread runs Python waits up to that long;
* full (generation 2) collections scan every tracked object, including the
  hundreds of thousands that imports, the configuration and the numbering
  metadata create at start-up and that live as long as the process.  With
  those frozen (:func:`gc.freeze`) a full collection scans only what the
  calls themselves allocated.

Measured on bench/asterisk_pause_latency.py; figures in the notes of issue 15.
"""

from __future__ import annotations

import gc
import sys

#: GIL hand-over interval for the listener process (CPython's default is 5 ms).
SWITCH_INTERVAL_S = 0.0005


def tune_interpreter() -> None:
    """Bound how long the event loop can wait for the GIL (called once, before the listener starts)."""
    sys.setswitchinterval(SWITCH_INTERVAL_S)


_collected = False


def freeze_startup_heap() -> None:
    """After start-up and warm-up: move every live object out of the GC's reach.

    Objects frozen here are never scanned again (nor collected: anything
    start-up allocated lives as long as the process anyway).  The first call
    in a process collects first, so no start-up garbage is frozen with them;
    later calls (a process that starts listeners again, like the test
    suite) only freeze, which costs next to nothing.
    """
    global _collected
    if not _collected:
        gc.collect()
        _collected = True
    gc.freeze()


__all__ = ["SWITCH_INTERVAL_S", "freeze_startup_heap", "tune_interpreter"]
