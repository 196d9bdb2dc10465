"""The running listener's checkpointer: sign each chain's tree head on a timer and at shutdown.

A background thread (never the event loop, never the ledger writer): every
``interval_s`` it reads each chain's tree head as committed, and for each
chain that grew since its last checkpoint it

1. checks that the stored tree still has the last checkpoint's root at that
   size (a log must never sign a head inconsistent with one it signed: if
   the database was rewritten underneath, it refuses and says so loudly),
2. signs a C2SP checkpoint, stores it in ``checkpoints``,
3. publishes it to every witness and records each outcome.

``stop()`` (hooked to the ledger's close, after its last commit) signs one
final checkpoint, so a clean shutdown always leaves every entry covered.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import Engine

from callguard.evidence.note import Checkpoint, Signer, sign_checkpoint
from callguard.evidence.witness import Outcome, Witness
from callguard.ledger import checkpoints as store
from callguard.ledger.tree import catch_up, consistency, root_at

log = logging.getLogger("callguard.evidence")


def origin_of(prefix: str, chain_id: str) -> str:
    """The checkpoint origin line of a chain."""
    return f"{prefix}/{chain_id}"


@dataclass(frozen=True)
class Signed:
    chain_id: str
    checkpoint: Checkpoint
    note: str
    record_id: int
    outcomes: tuple[Outcome, ...] = ()


class Checkpointer:
    """Signs and publishes checkpoints of every chain in one ledger database."""

    def __init__(self, engine: Engine, signer: Signer, origin_prefix: str, witnesses: Sequence[Witness] = (),
                 interval_s: float = 60.0, clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.signer = signer
        self.origin_prefix = origin_prefix
        self.witnesses = list(witnesses)
        self.interval_s = interval_s
        self.clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def proof_for(self, chain_id: str, old_size: int, new_size: int) -> list[bytes]:
        with self.engine.connect() as connection:
            return consistency(connection, chain_id, old_size, new_size)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="callguard-checkpointer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the timer and sign a final checkpoint of whatever was committed."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
        self._safely()
        self.close()

    def close(self) -> None:
        """Release the witnesses' connections (without signing)."""
        for witness in self.witnesses:
            close = getattr(witness, "close", None)
            if close is not None:
                close()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._safely()

    def _safely(self) -> list[Signed]:
        try:
            return self.checkpoint_now()
        except Exception:
            log.exception("checkpoint failed; the next attempt is in %.0f s", self.interval_s)
            return []

    def checkpoint_now(self) -> list[Signed]:
        """Sign and publish a checkpoint for every chain that grew; returns what was signed."""
        with self._lock:
            signed = self._sign_all()
            return [self._publish(s) for s in signed]

    def _sign_all(self) -> list[Signed]:
        signed: list[Signed] = []
        with self.engine.begin() as connection:
            for chain_id, size, root_hex in store.tree_heads(connection):
                if size is None:
                    tree = catch_up(connection, chain_id)
                    size, root_hex = tree.size, tree.root().hex()
                if not size or root_hex is None:
                    continue
                last = store.latest(connection, chain_id)
                if last is not None:
                    if last.tree_size == size and last.root_hash == root_hex:
                        continue
                    if last.tree_size > size or root_at(connection, chain_id, last.tree_size).hex() != last.root_hash:
                        log.error("chain %s: NOT signing: the ledger no longer has the root of checkpoint #%d "
                                  "(size %d); its history was rewritten or truncated. Run `callguard ledger "
                                  "verify` and compare with the published checkpoints", chain_id, last.id,
                                  last.tree_size)
                        continue
                checkpoint = Checkpoint(origin_of(self.origin_prefix, chain_id), size, bytes.fromhex(root_hex),
                                        int(self.clock()))
                note = sign_checkpoint(checkpoint, self.signer)
                record = store.store(connection, chain_id, size, checkpoint.root_hash, self.clock(),
                                     self.signer.name, note)
                signed.append(Signed(chain_id, checkpoint, note, record.id))
        return signed

    def _publish(self, signed: Signed) -> Signed:
        outcomes = []
        for witness in self.witnesses:
            try:
                outcome = witness.publish(signed.chain_id, signed.checkpoint, signed.note)
            except Exception as exc:  # noqa: BLE001 - one witness must not stop the others
                outcome = Outcome(witness.name, "failed", f"{type(exc).__name__}: {exc}")
            if outcome.outcome in ("failed", "refused"):
                log.error("checkpoint of %s (size %d) %s by %s: %s", signed.chain_id, signed.checkpoint.size,
                          outcome.outcome, outcome.witness, outcome.detail)
            outcomes.append(outcome)
        if outcomes:
            with self.engine.begin() as connection:
                for outcome in outcomes:
                    store.record_publication(connection, signed.record_id, outcome.witness, self.clock(),
                                             outcome.outcome, outcome.detail)
        return Signed(signed.chain_id, signed.checkpoint, signed.note, signed.record_id, tuple(outcomes))


__all__ = ["Checkpointer", "Signed", "origin_of"]
