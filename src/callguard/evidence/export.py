"""Collect one call's evidence from the ledger database into bundle :class:`~callguard.evidence.bundle.Contents`."""

from __future__ import annotations

import time
from sqlalchemy import Connection

from callguard.evidence.bundle import Contents
from callguard.ledger import checkpoints
from callguard.ledger.queries import timeline
from callguard.ledger.sealed import Revealer, openings_of
from callguard.ledger.tree import inclusion


class ExportError(Exception):
    """The call cannot be exported (unknown call, entries not yet covered by a checkpoint)."""


class NotCheckpointed(ExportError):
    def __init__(self, chains: list[str]) -> None:
        self.chains = chains
        super().__init__(f"the newest entries of chain(s) {', '.join(chains)} are not covered by a signed checkpoint "
                         "yet; run `callguard ledger checkpoint` (needs the signing key) or wait for the listener's "
                         "next one")


def collect(connection: Connection, call_id: str, *, reveal: bool = False) -> Contents:
    entries = timeline(connection, call_id, reveal=False)  # the bundle carries what was hashed
    if not entries:
        raise ExportError(f"no ledger entries for call {call_id!r}; `callguard ledger calls` lists recent calls")
    last: dict[str, int] = {}
    for entry in entries:
        last[entry.chain_id] = max(last.get(entry.chain_id, 0), entry.seq)
    covering = {chain: checkpoints.covering(connection, chain, seq) for chain, seq in last.items()}
    missing = sorted(chain for chain, cp in covering.items() if cp is None)
    if missing:
        raise NotCheckpointed(missing)
    records = []
    for entry in entries:
        cp = covering[entry.chain_id]
        assert cp is not None
        records.append({
            "chain_id": entry.chain_id, "seq": entry.seq, "call_id": entry.call_id, "kind": entry.kind,
            "pbx_time_us": entry.pbx_time_us, "received_at_us": entry.received_at_us, "data": entry.data,
            "prev_hash": entry.prev_hash, "hash": entry.hash, "leaf_index": entry.seq - 1,
            "inclusion_proof": inclusion(connection, entry.chain_id, entry.seq, cp.tree_size),
        })
    openings: dict[str, dict[str, str]] = {}
    if reveal:
        openings = {c: o for c, o in openings_of(connection, (e.data for e in entries)).items() if o is not None}
    return Contents(call_id, time.time(), records, {chain: cp.note for chain, cp in covering.items() if cp},
                    openings=openings)


__all__ = ["ExportError", "NotCheckpointed", "Revealer", "collect"]
