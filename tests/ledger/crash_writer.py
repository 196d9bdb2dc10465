"""Child process for the crash test: append forever, print each acknowledged seq.

Usage: python crash_writer.py URL CHAIN_ID.  A line ``<seq>`` on stdout
means that entry's transaction has committed; the parent SIGKILLs us at a
random moment and then checks that every printed seq is in the database.
"""

from __future__ import annotations

import sys
import time

from callguard.core.commands import LedgerEntry
from callguard.ledger import Committed, Ledger


def main() -> None:
    url, chain_id = sys.argv[1], sys.argv[2]
    ledger = Ledger.open(url, chain_id, batch_max=32, batch_wait_ms=1.0)

    def acknowledged(done: Committed) -> None:
        sys.stdout.write(f"{done.seq}\n")
        sys.stdout.flush()

    print(f"ready {ledger.committed_seq}", flush=True)
    i = 0
    while True:
        now = time.time()
        ledger.append(LedgerEntry(f"call-{i // 10}", "consent", now, {"i": i, "decision": "granted"}),
                      now, acknowledged)
        i += 1
        if i % 10 == 0:
            time.sleep(0.0005)


if __name__ == "__main__":
    main()
