"""One "leaks" report: card data that reached a recording, by keypad or by voice.

Two detectors, one question ("what payment data did we capture?"):

* keypad tones audible outside muted spans (the DTMF scan at ingest,
  ``vault_recordings.dtmf_report``);
* spoken card numbers, expiry dates, security codes and configured
  patterns found by the transcription stage (``speech-redacted`` ledger
  entries; those spans are already silenced in the stored audio).

Rows name the call and the span, never the digits.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from callguard.ledger.models import LedgerEntryRecord
from callguard.vault.models import Recording


@dataclass(frozen=True)
class Leak:
    call_id: str
    recording_id: str
    recorded_at: float
    source: str  #: "keypad" | "speech"
    kind: str
    start_s: float | None
    end_s: float | None
    redacted: bool

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def leaks(vault: Any, user: str | None, start: float, end: float) -> list[Leak]:
    """Every leak in recordings made in [start, end) (needs the audit permission; logged)."""
    actor = vault.authorize(user, "leaks", "*", "leaks report", permission="audit", detail={"from": start, "to": end})
    out: list[Leak] = []
    with vault.session() as session:
        recordings = list(session.execute(select(Recording.id, Recording.call_id, Recording.recorded_at,
                                                 Recording.dtmf_report)
                                          .where(Recording.recorded_at >= start, Recording.recorded_at < end)))
        by_id = {rid: (call_id, at) for rid, call_id, at, _ in recordings}
        for rid, call_id, at, report in recordings:
            for tone in (json.loads(report).get("tones", []) if report else []):
                if tone.get("where") in ("unmuted", "muted-span"):
                    out.append(Leak(call_id, rid, at, "keypad", "dtmf-" + tone["where"], tone.get("start"),
                                    tone.get("end"), False))
        spoken = session.scalars(select(LedgerEntryRecord).where(
            LedgerEntryRecord.kind == "speech-redacted",
            LedgerEntryRecord.call_id.in_({c for c, _ in by_id.values()})))
        for entry in spoken:
            data = json.loads(entry.data)
            rid = data.get("recording_id", "")
            if rid in by_id:
                out.append(Leak(entry.call_id, rid, by_id[rid][1], "speech", str(data.get("kind")),
                                data.get("start_s"), data.get("end_s"), True))
    out.sort(key=lambda leak: (leak.recorded_at, leak.call_id, leak.start_s or 0.0))
    vault.record(actor, "leaks", "*", "leaks report", "done", {"leaks": len(out)})
    return out


__all__ = ["Leak", "leaks"]
