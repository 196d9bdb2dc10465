"""The audit's view of transcripts: coverage of each stored transcript, and missed pauses.

* ``transcript-not-covered`` (violation): a stored transcript of a call whose
  notice (or purpose) did not declare transcription, by today's settings
  and the notices in the call's ledger - named by call.
* ``missed-pause`` (violation): card data was spoken while the recording
  was running (a ``speech-redacted`` ledger entry of kind card-number: the
  redaction caught it, but the agent should have paused).  Read from the
  ledger, so the finding outlives the transcript's deletion.
* ``transcription-failed`` (warning): a declared call whose recording was
  stored unredacted because the engine failed.

:func:`missed_pauses_by_agent_week` groups the missed pauses per agent
(the staff party in the call's ledger) and ISO week: the signal a
compliance officer acts on (coaching, hotkey training).
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime, timezone
from typing import Any, Iterable, Sequence

from sqlalchemy import select

from callguard.ledger.models import LedgerEntryRecord
from callguard.ledger.queries import timeline
from callguard.transcripts.coverage import coverage
from callguard.transcripts.models import Transcript
from callguard.transcripts.spoken import CARD
from callguard.vault.models import STORED, Recording

CHECKS = {
    "transcript-not-covered": ("Transcripts only where the notice and purpose declare transcription", "violation"),
    "missed-pause": ("No card data spoken while the recording ran (missed pauses)", "violation"),
    "transcription-failed": ("Every declared recording transcribed and redacted", "warning"),
}


def agents(entries: Iterable[Any]) -> list[str]:
    """The staff on a call, by extension (or channel), from its party-joined entries."""
    out: list[str] = []
    for entry in entries:
        data = entry.data if isinstance(entry.data, dict) else {}
        party = data.get("party") if isinstance(data.get("party"), dict) else {}
        if entry.kind == "party-joined" and (data.get("staff") or party.get("role") == "agent"):
            name = str(party.get("number") or party.get("channel") or "?")
            if name not in out:
                out.append(name)
    return out


def iso_week(t: float) -> str:
    year, week, _ = datetime.fromtimestamp(t, timezone.utc).isocalendar()
    return f"{year}-W{week:02d}"


def missed_pauses_by_agent_week(missed: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    grouped: dict[tuple[str, str], list[str]] = defaultdict(list)
    for item in missed:
        for agent in item["agents"] or ["(no staff leg in the ledger)"]:
            calls = grouped[(item["week"], agent)]
            if item["call_id"] not in calls:
                calls.append(item["call_id"])
    return [{"week": week, "agent": agent, "calls": len(calls), "call_ids": calls}
            for (week, agent), calls in sorted(grouped.items())]


def spoken_checks(vault: Any, start: float, end: float) -> tuple[list[tuple[str, str, float, str]], list[dict[str, Any]]]:
    """((check, call, at, detail) findings, missed pauses) for calls in [start, end)."""
    findings: list[tuple[str, str, float, str]] = []
    settings = vault.config.transcripts
    with vault.session() as session:
        transcripts = list(session.scalars(select(Transcript).where(
            Transcript.state == STORED, Transcript.recorded_at >= start, Transcript.recorded_at < end)))
        # Vault entries carry the time of ingest; the call's month is its recording's.
        recorded = dict(session.execute(select(Recording.call_id, Recording.recorded_at).where(
            Recording.recorded_at >= start, Recording.recorded_at < end)).all())
        flagged = list(session.scalars(select(LedgerEntryRecord).where(
            LedgerEntryRecord.kind.in_(("speech-redacted", "transcript-failed", "recording-stored")),
            LedgerEntryRecord.call_id.in_(list(recorded))).order_by(LedgerEntryRecord.pbx_time_us)))
        for t in transcripts:
            cover = coverage(timeline(session, t.call_id), t.purpose, settings)
            if not cover.covered:
                findings.append(("transcript-not-covered", t.call_id, t.recorded_at,
                                 f"transcript {t.id} exists but {cover.why}"))
        missed: list[dict[str, Any]] = []
        for entry in flagged:
            data = json.loads(entry.data)
            at = recorded[entry.call_id]
            spoken = data.get("transcription") if isinstance(data.get("transcription"), dict) else {}
            if entry.kind == "transcript-failed" or spoken.get("error"):
                findings.append(("transcription-failed", entry.call_id, at,
                                 f"stored without redaction: {data.get('error') or spoken.get('error')}"))
            elif entry.kind == "speech-redacted" and data.get("kind") == CARD:
                staff = agents(timeline(session, entry.call_id))
                missed.append({"call_id": entry.call_id, "at": at, "week": iso_week(at),
                               "agents": staff, "span": [data.get("start_s"), data.get("end_s")]})
                findings.append(("missed-pause", entry.call_id, at,
                                 f"card number spoken while recording at {data.get('start_s')}-{data.get('end_s')} s "
                                 f"(agent {', '.join(staff) or 'unknown'}); redacted, but nobody paused"))
    return findings, missed


__all__ = ["CHECKS", "agents", "iso_week", "missed_pauses_by_agent_week", "spoken_checks"]
