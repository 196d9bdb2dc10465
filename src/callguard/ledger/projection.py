"""Keep the ``calls`` / ``parties`` index in step with the entries.

The writer calls :func:`project` inside the same transaction that inserts a
batch of entries, so the index never disagrees with the evidence after a
crash.  Entry data comes from the engine but holds caller-controlled text
(numbers, names), so every value is type-checked and clipped here: a bad
value may leave a blank in the index, it must never fail the transaction
that carries the evidence.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from callguard.evidence.pii import is_sealed
from callguard.ledger.models import ID_LEN, Call, CallParty

log = logging.getLogger("callguard.ledger")


@dataclass(frozen=True, slots=True)
class ProjectedEntry:
    """What the index needs from one entry."""

    chain_id: str
    call_id: str
    kind: str
    pbx_time: float
    data: Mapping[str, Any]
    #: kid -> subject lookup hash of the sealed values in ``data`` (see callguard.evidence.pii)
    subjects: Mapping[str, str | None] = field(default_factory=dict)


def number_key(number: object) -> str | None:
    """Digits of a phone number as given, for format-tolerant lookups.

    "+1 (415) 555-0123" and "+14155550123" share the key "14155550123".
    """
    if not isinstance(number, str):
        return None
    digits = "".join(ch for ch in number if ch.isascii() and ch.isdigit())
    return digits[:ID_LEN] or None


def _text(value: object, limit: int = ID_LEN) -> str | None:
    if value is None or isinstance(value, (dict, list)):
        return None
    return str(value)[:limit]


def _personal(value: object) -> str | None:
    """A party's number or name for the index: the sealed form as JSON text, or the plain text."""
    if is_sealed(value):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return _text(value)


def party_key(number: object, subjects: Mapping[str, str | None]) -> str | None:
    """The index's lookup key of a number: its subject hash when sealed, its digits when plain (older ledgers)."""
    if is_sealed(number):
        return subjects.get(number["kid"])  # type: ignore[index]
    return number_key(number)


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _add_party(call: Call, raw: object, at: float, subjects: Mapping[str, str | None]) -> None:
    if not isinstance(raw, Mapping):
        return
    fields = {
        "channel": _text(raw.get("channel")),  # a channel name sealed for holding a number is left out
        "number": _personal(raw.get("number")),
        "number_key": party_key(raw.get("number"), subjects),
        "name": _personal(raw.get("name")),
        "role": _text(raw.get("role"), 32),
        "jurisdiction": _text(raw.get("jurisdiction"), 32),
        "regime": _text(raw.get("regime"), 32),
    }
    existing = next((p for p in call.parties if fields["channel"] and p.channel == fields["channel"]), None)
    if existing is None:
        call.parties.append(CallParty(joined_at=at, **fields))
        return
    for key, value in fields.items():
        if value is not None:
            setattr(existing, key, value)


def _apply_rule(call: Call, data: Mapping[str, Any], subjects: Mapping[str, str | None]) -> None:
    call.regime = _text(data.get("regime"), 32) or call.regime
    allowed = data.get("recording_allowed")
    if isinstance(allowed, bool):
        call.recording_allowed = allowed
    parties = data.get("parties")
    if not isinstance(parties, list):
        return
    for rule_party in parties:
        if not isinstance(rule_party, Mapping):
            continue
        key = party_key(rule_party.get("number"), subjects)
        for party in call.parties:
            if key and party.number_key == key:
                party.jurisdiction = _text(rule_party.get("jurisdiction"), 32) or party.jurisdiction
                party.regime = _text(rule_party.get("regime"), 32) or party.regime


def _apply(call: Call, entry: ProjectedEntry) -> None:
    data, at = entry.data, entry.pbx_time
    call.first_seen = min(call.first_seen, at)
    call.last_seen = max(call.last_seen, at)
    call.entry_count = (call.entry_count or 0) + 1
    answered = _number(data.get("answered_at"))
    offset = _number(data.get("offset_s"))
    if answered is not None:
        call.answered_at = answered
    elif call.answered_at is None and offset is not None:
        # Entries after the answer carry their offset from it (notice, hangup).
        call.answered_at = at - offset
    kind = entry.kind
    if kind in ("call-offered", "call-adopted"):
        call.channel = _text(data.get("channel")) or call.channel
    if kind == "call-offered":
        parties = data.get("parties")
        for raw in parties if isinstance(parties, list) else ():
            _add_party(call, raw, at, entry.subjects)
    elif kind == "party-joined":
        _add_party(call, data.get("party"), at, entry.subjects)
    elif kind == "rule-applied":
        _apply_rule(call, data, entry.subjects)
    elif kind in ("recording-requested", "recording-started"):
        if kind == "recording-requested" or call.recording_file is None:
            call.recording_file = _text(data.get("file")) or call.recording_file
    elif kind == "hangup":
        call.final_state = _text(data.get("state"), 64)
        call.hangup_cause = _text(data.get("cause"), 128)
        call.ended_at = at
    elif kind == "listener-lost":
        # Reconciled by the next listener process: not "in progress" forever, not a hangup either.
        call.final_state = "unknown"
        call.hangup_cause = _text(data.get("detail"), 128) or "listener lost, outcome unknown"
        call.ended_at = at


def project(session: Session, entries: Iterable[ProjectedEntry]) -> None:
    """Create or update the calls and parties rows for a batch of entries."""
    entries = list(entries)
    ids = {e.call_id for e in entries}
    calls = {
        c.call_id: c
        for c in session.scalars(
            select(Call).where(Call.call_id.in_(ids)).options(selectinload(Call.parties))
        )
    }
    for entry in entries:
        call = calls.get(entry.call_id)
        if call is None:
            call = Call(call_id=entry.call_id, chain_id=entry.chain_id, first_seen=entry.pbx_time,
                        last_seen=entry.pbx_time, entry_count=0, parties=[])
            session.add(call)
            calls[entry.call_id] = call
        try:
            _apply(call, entry)
        except Exception:
            log.exception("ledger: could not index %s entry of call %r; the entry itself is kept",
                          entry.kind, entry.call_id)


__all__ = ["ProjectedEntry", "number_key", "project"]
