"""Collect one call's evidence from the ledger database into bundle :class:`~callguard.evidence.bundle.Contents`."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable

from sqlalchemy import Connection, select

from callguard.evidence import pii
from callguard.evidence.bundle import Contents
from callguard.ledger import checkpoints
from callguard.ledger.models import PiiKey
from callguard.ledger.queries import timeline
from callguard.ledger.tree import inclusion


class ExportError(Exception):
    """The call cannot be exported (unknown call, entries not yet covered by a checkpoint)."""


class NotCheckpointed(ExportError):
    def __init__(self, chains: list[str]) -> None:
        self.chains = chains
        super().__init__(f"the newest entries of chain(s) {', '.join(chains)} are not covered by a signed checkpoint "
                         "yet; run `callguard ledger checkpoint` (needs the signing key) or wait for the listener's "
                         "next one")


def keys_for(connection: Connection, kids: Iterable[str]) -> dict[str, bytes]:
    wanted = sorted(set(kids))
    found: dict[str, bytes] = {}
    for start in range(0, len(wanted), 500):
        for kid, key in connection.execute(select(PiiKey.kid, PiiKey.key).where(PiiKey.kid.in_(wanted[start:start + 500]))):
            found[kid] = bytes(key)
    return found


def openings_of(connection: Connection, data: Iterable[object]) -> dict[str, dict[str, str] | None]:
    """commit -> opening (None when the key is gone) for every sealed value in ``data``."""
    sealed = [s for d in data for s in pii.sealed_values(d)]
    keys = keys_for(connection, (s["kid"] for s in sealed))
    return {s["commit"]: (pii.opening(s, keys[s["kid"]]) if s["kid"] in keys else None) for s in sealed}


def collect(connection: Connection, call_id: str, *, reveal: bool = False) -> Contents:
    entries = timeline(connection, call_id)
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




class Revealer:
    """Opens sealed personal data for display (``ledger show``, ``calls``, DSAR timelines): plain or ``[erased]``."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def data(self, values: list[object]) -> list[object]:
        """Each of ``values`` (entry data, index texts) with its sealed parts opened."""
        parsed = [self._parse(v) for v in values]
        openings = openings_of(self.connection, parsed)
        return [pii.reveal(v, openings) for v in parsed]

    @staticmethod
    def _parse(value: object) -> object:
        if isinstance(value, str) and value.startswith('{"box"'):
            try:
                loaded = json.loads(value)
            except ValueError:
                return value
            return loaded if pii.is_sealed(loaded) else value
        return value


__all__ = ["ExportError", "NotCheckpointed", "Revealer", "collect", "keys_for", "openings_of"]
