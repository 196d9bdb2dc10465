"""The monthly audit: the seeds' checklist, run over the ledger and the vault.

For every call that started in the month the call's timeline is checked
(pure functions over the entries, so each rule is testable on its own):

* the notice came before any recording and started within
  ``[consent] notice_start_limit_s`` of the answer (and ended within
  ``notice_end_limit_s``);
* where the rule required explicit consent, a grant precedes the recording;
* nothing was recorded after a decline, and a declined call was continued
  (opt-out must not drop the caller);
* nothing was recorded when the rule did not allow recording;
* every pause / payment segment was confirmed muted by the PBX (or the
  recording stopped) within ``[recording] confirm_timeout_ms``, and payment
  segments were closed;
* violations the engine itself logged.

And for the vault and its people: DTMF leaks in the month's recordings,
retention sweeps on schedule and nothing kept past its date, unusual
exports and denied access attempts, the access-log and ledger hash chains,
and data-subject requests past their 30 days.

Each check has a stable id, a severity (a *violation* breaks a rule; a
*warning* needs a look) and findings that name the call, recording or user
concerned, so the report can be acted on line by line.
"""

from __future__ import annotations

import calendar
import json
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from itertools import groupby
from typing import Any, Iterable, Sequence

from sqlalchemy import func, select

from callguard.config import Config
from callguard.ledger.models import Call, LedgerEntryRecord
from callguard.ledger.queries import StoredEntry
from callguard.ledger.verify import verify as verify_ledger
from callguard.transcripts.audit import CHECKS as _TRANSCRIPT_CHECKS
from callguard.vault.accesslog import verify_log
from callguard.vault.envelope import VaultError
from callguard.vault.models import STORED, DsarRequest, Recording, SweepRun
from callguard.vault.retention import select_expired
from callguard.vault.service import Vault

VIOLATION = "violation"
WARNING = "warning"

#: check id -> (title, severity).  Order is the report's order.
CHECKS: dict[str, tuple[str, str]] = {
    "notice-missing": ("Notice played before any recording", VIOLATION),
    "notice-late": ("Notice started within the limit after answer", VIOLATION),
    "notice-long": ("Notice ended within the limit", WARNING),
    "consent-missing": ("Explicit consent given wherever the rule requires it", VIOLATION),
    "recorded-after-decline": ("Nothing recorded after a decline", VIOLATION),
    "recording-not-allowed": ("Recorded only where the rule allows recording", VIOLATION),
    "opt-out-dropped": ("Declined calls continued (opt-out never blocks service)", VIOLATION),
    "pause-unconfirmed": ("Every pause and payment segment confirmed muted", VIOLATION),
    "pause-slow": ("Mutes confirmed within the confirm timeout", WARNING),
    "pause-left-open": ("Payment segments closed before hangup", WARNING),
    "recording-unlogged": ("Every recording in the vault was started on the ledger", VIOLATION),
    "engine-violation": ("No violations logged by the engine", VIOLATION),
    "dtmf-leak": ("No keypad tones audible outside muted spans", VIOLATION),
    "dtmf-not-scanned": ("Every recording scanned for keypad tones", WARNING),
    "sweep-missed": ("Retention sweep ran on schedule", VIOLATION),
    "retention-overdue": ("Nothing kept past its retention date (unless on legal hold)", VIOLATION),
    "exports-unusual": ("No unusual export volume", WARNING),
    "access-denied": ("No denied access attempts", WARNING),
    "access-log-broken": ("Access log hash chain intact", VIOLATION),
    "ledger-broken": ("Ledger hash chains intact", VIOLATION),
    "dsar-overdue": ("Data-subject requests answered within their due date", VIOLATION),
    **_TRANSCRIPT_CHECKS,
}

#: A recording running when the caller declines must stop within this many seconds.
DECLINE_STOP_S = 2.0


def failsafe_stop_s(limits: "Limits") -> float:
    """A stop this soon after an unconfirmed pause is the engine's fail-safe, not a failure."""
    return 2 * limits.confirm_timeout_s + 0.5


#: Findings listed per check in the text report (the rest are counted).
SHOW_PER_CHECK = 25


@dataclass(frozen=True, slots=True)
class Finding:
    check: str
    subject: str
    at: float | None
    detail: str

    @property
    def severity(self) -> str:
        return CHECKS[self.check][1]

    def as_dict(self) -> dict[str, Any]:
        return {"check": self.check, "severity": self.severity, "subject": self.subject, "at": self.at,
                "detail": self.detail}


@dataclass(frozen=True)
class Limits:
    notice_start_s: float
    notice_end_s: float
    confirm_timeout_s: float
    sweep_interval_h: float
    export_alert_per_day: int

    @classmethod
    def of(cls, config: Config) -> "Limits":
        return cls(config.consent.notice_start_limit_s, config.consent.notice_end_limit_s,
                   config.recording.confirm_timeout_ms / 1000, config.vault.sweep_interval_h,
                   config.vault.export_alert_per_day)


@dataclass
class CallStats:
    recorded: bool = False
    consent: str | None = None
    notice_offset: float | None = None
    mute_latencies: list[float] = field(default_factory=list)
    pauses: int = 0


def _data(entry: StoredEntry) -> dict[str, Any]:
    return entry.data if isinstance(entry.data, dict) else {}


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def check_call(call_id: str, entries: Sequence[StoredEntry], limits: Limits) -> tuple[list[Finding], CallStats]:
    """Every per-call rule over one call's timeline (entries in time order)."""
    out: list[Finding] = []
    stats = CallStats()

    def add(check: str, entry: StoredEntry | None, detail: str) -> None:
        out.append(Finding(check, call_id, entry.pbx_time if entry else None, detail))

    rule: dict[str, Any] = {}
    notice: StoredEntry | None = None
    notice_end: StoredEntry | None = None
    granted = False
    recording = False
    declined_at: StoredEntry | None = None
    continued = False
    open_pauses: list[StoredEntry] = []
    payment_open: StoredEntry | None = None
    running_at_decline: StoredEntry | None = None
    first_recording: StoredEntry | None = None
    for entry in entries:
        kind, data = entry.kind, _data(entry)
        if kind == "rule-applied":
            rule = data
        elif kind == "notice-started" and notice is None:
            notice = entry
            stats.notice_offset = _num(data.get("offset_s"))
        elif kind == "notice-ended" and notice_end is None:
            notice_end = entry
        elif kind == "consent":
            decision = str(data.get("decision"))
            if data.get("party") != "joiner":  # the call's decision is the caller's; a joiner's is their own
                stats.consent = decision
            if decision in ("granted", "implied"):
                granted = True
            elif decision in ("declined", "no-input", "invalid"):
                if decision == "declined" or rule.get("explicit_consent"):
                    declined_at = entry
                    granted = False
                    if recording:
                        running_at_decline = entry
        elif kind == "continued":
            continued = True
        elif kind == "recording-started":
            stats.recorded = True
            recording = True
            if first_recording is None:
                first_recording = entry
                if notice is None:
                    add("notice-missing", entry, "recording started before any notice was played")
                if rule.get("recording_allowed") is False:
                    add("recording-not-allowed", entry, f"the rule ({rule.get('regime')}) did not allow "
                                                        f"recording: {', '.join(map(str, rule.get('reasons') or []))}")
                if rule.get("explicit_consent") and not granted and declined_at is None:
                    add("consent-missing", entry, f"regime {rule.get('regime')} requires explicit consent; "
                                                  f"no grant before the recording started")
            if declined_at is not None and not granted:
                add("recorded-after-decline", entry, f"recording started after the caller declined "
                                                     f"({entry.pbx_time - declined_at.pbx_time:.1f} s later)")
        elif kind in ("recording-stopped", "hangup"):
            if running_at_decline is not None:
                late = entry.pbx_time - running_at_decline.pbx_time
                if kind == "hangup" and recording:
                    add("recorded-after-decline", running_at_decline,
                        "the recording kept running after the caller declined, until hangup")
                    running_at_decline = None
                elif kind == "recording-stopped":
                    if late > DECLINE_STOP_S:
                        add("recorded-after-decline", running_at_decline,
                            f"the recording ran {late:.1f} s after the caller declined (limit {DECLINE_STOP_S:g} s)")
                    running_at_decline = None
            if kind == "recording-stopped":
                recording = False
            for pause in open_pauses:
                waited = entry.pbx_time - pause.pbx_time
                if kind == "recording-stopped" and waited <= failsafe_stop_s(limits):
                    continue  # stopping is the fail-safe answer to an unconfirmed pause
                add("pause-unconfirmed", pause, f"{pause.kind} ({_data(pause).get('source')}) was never confirmed "
                                               f"muted; the recording ran {waited:.1f} s more until {kind}")
            open_pauses = []
            if kind == "hangup" and payment_open is not None:
                add("pause-left-open", payment_open, "payment segment started but never ended before hangup")
                payment_open = None
        elif kind in ("pause-requested", "payment-started"):
            stats.pauses += 1
            if kind == "payment-started":
                payment_open = entry
            if recording:
                open_pauses.append(entry)
        elif kind in ("payment-ended", "resume-requested"):
            if kind == "payment-ended":
                payment_open = None
            for pause in open_pauses:
                add("pause-unconfirmed", pause, f"{pause.kind} ({_data(pause).get('source')}) ended "
                                               f"{entry.pbx_time - pause.pbx_time:.1f} s later without the "
                                               f"recording ever being muted")
            open_pauses = []
        elif kind == "recording-muted":
            latency = _num(data.get("latency_s"))
            for pause in open_pauses:
                waited = entry.pbx_time - pause.pbx_time
                stats.mute_latencies.append(waited)
                if waited > limits.confirm_timeout_s:
                    add("pause-slow", pause, f"mute confirmed {waited * 1000:.0f} ms after the {pause.kind} "
                                             f"(limit {limits.confirm_timeout_s * 1000:.0f} ms)")
            if not open_pauses and latency is not None:
                stats.mute_latencies.append(latency)
            open_pauses = []
        elif kind == "violation":
            add("engine-violation", entry, f"{data.get('what')}: {data.get('detail')}")
    for pause in open_pauses:
        add("pause-unconfirmed", pause, f"{pause.kind} ({_data(pause).get('source')}) was never confirmed muted")
    if declined_at is not None and not continued:
        add("opt-out-dropped", declined_at, "the caller declined and the call was not continued")
    if (first_recording is not None and notice is not None and stats.notice_offset is not None
            and stats.notice_offset > limits.notice_start_s):
        add("notice-late", notice, f"notice started {stats.notice_offset:.1f} s after answer "
                                   f"(limit {limits.notice_start_s:.1f} s)")
    end = _notice_audio_end(notice, notice_end)
    if end is not None and end > limits.notice_end_s:
        add("notice-long", notice_end or notice, f"notice ended {end:.1f} s after answer "
                                                 f"(limit {limits.notice_end_s:.1f} s)")
    return out, stats


def _notice_audio_end(started: StoredEntry | None, ended: StoredEntry | None) -> float | None:
    """When the notice's audio ended, as an offset from answer.

    ``notice-ended`` is logged when the gather returns: after a keypress
    (which cuts the prompt short) or after the digit timeout that follows
    the prompt.  The notice itself ended when its audio did: the start
    offset plus the prompt's duration, unless a key stopped it earlier.
    The timeout a caller spends deciding is not notice.
    """
    gathered = _num(_data(ended).get("offset_s")) if ended else None
    start = _num(_data(started).get("offset_s")) if started else None
    duration = _num(_data(started).get("duration_s")) if started else None
    if start is None or duration is None:
        return gathered
    audio_end = start + duration
    return audio_end if gathered is None else min(gathered, audio_end)


def unlawful_recording(entries: Sequence[Any]) -> tuple[str, str] | None:
    """(check id, why) when the call's ledger says it must have no recording; None when one may exist.

    Used twice: ingest quarantines a recording this returns something for,
    and the audit fails every call whose recording is in the vault anyway.
    A recording whose start *is* in the ledger is judged by
    :func:`check_call` (notice, consent, decline timing); this covers the
    file that arrives for a call the ledger never recorded: the caller
    declined, nobody gave the explicit consent the rule needs, the rule
    forbids recording, or nothing was started at all.
    """
    rule: dict[str, Any] = {}
    decision: tuple[str, float] | None = None
    for entry in entries:
        kind, data = entry.kind, entry.data if isinstance(entry.data, dict) else {}
        if kind == "recording-started":
            return None
        if kind == "rule-applied":
            rule = data
        elif kind == "consent" and data.get("decision") is not None:
            decision = (str(data["decision"]), entry.pbx_time)
    said, at = decision or ("", 0.0)
    when = datetime.fromtimestamp(at, timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ") if decision else ""
    if said == "declined":
        return "recorded-after-decline", f"the caller declined recording ({when}); the ledger shows no recording"
    if said in ("no-input", "invalid") and rule.get("explicit_consent"):
        return ("recorded-after-decline", f"no consent ({said}, {when}) where the rule ({rule.get('regime')}) "
                                          f"requires explicit consent; the ledger shows no recording")
    if rule.get("recording_allowed") is False:
        return "recording-not-allowed", f"the rule ({rule.get('regime')}) does not allow recording"
    return "recording-unlogged", "the ledger shows no recording started on this call"


def month_bounds(month: str) -> tuple[float, float]:
    try:
        start = datetime.strptime(month, "%Y-%m").replace(tzinfo=timezone.utc)
    except ValueError:
        raise VaultError(f"month must look like 2026-11, got {month!r}") from None
    days = calendar.monthrange(start.year, start.month)[1]
    return start.timestamp(), start.timestamp() + days * 86400


@dataclass
class AuditReport:
    month: str
    start: float
    end: float
    generated_at: float
    limits: Limits
    findings: list[Finding] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)

    def by_check(self) -> dict[str, list[Finding]]:
        grouped: dict[str, list[Finding]] = {check: [] for check in CHECKS}
        for finding in self.findings:
            grouped[finding.check].append(finding)
        return grouped

    @property
    def violations(self) -> int:
        return sum(f.severity == VIOLATION for f in self.findings)

    @property
    def warnings(self) -> int:
        return sum(f.severity == WARNING for f in self.findings)

    def as_dict(self) -> dict[str, Any]:
        return {"month": self.month, "start": self.start, "end": self.end, "generated_at": self.generated_at,
                "limits": self.limits.__dict__, "violations": self.violations, "warnings": self.warnings,
                "checks": {check: {"title": title, "severity": severity, "findings": len(self.by_check()[check])}
                           for check, (title, severity) in CHECKS.items()},
                "findings": [f.as_dict() for f in self.findings], "stats": self.stats}


def _call_entries(vault: Vault, start: float, end: float) -> Iterable[tuple[str, list[StoredEntry]]]:
    """(call id, entries in PBX-time order) for calls that started in [start, end)."""
    ids = select(Call.call_id).where(Call.first_seen >= start, Call.first_seen < end)
    stmt = (select(LedgerEntryRecord).where(LedgerEntryRecord.call_id.in_(ids))
            .order_by(LedgerEntryRecord.call_id, LedgerEntryRecord.pbx_time_us, LedgerEntryRecord.chain_id,
                      LedgerEntryRecord.seq))
    with vault.session() as session:
        rows = session.scalars(stmt.execution_options(yield_per=5000))
        for call_id, group in groupby(rows, key=lambda r: r.call_id):
            entries = []
            seen: set[tuple[str, int, str]] = set()
            for r in group:
                fact = (r.kind, r.pbx_time_us, r.data)
                if fact in seen:  # the same fact written twice (a listener retry): report it once
                    continue
                seen.add(fact)
                try:
                    data = json.loads(r.data)
                except ValueError:
                    data = {}
                entries.append(StoredEntry(r.chain_id, r.seq, r.call_id, r.kind, r.pbx_time_us, r.received_at_us,
                                           data, r.prev_hash, r.hash))
            yield call_id, entries


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run_audit(vault: Vault, user: str | None, month: str, *, verify_chains: bool = True) -> AuditReport:
    start, end = month_bounds(month)
    actor = vault.authorize(user, "audit", month, "monthly audit", permission="audit")
    now = vault.clock()
    limits = Limits.of(vault.config)
    report = AuditReport(month, start, end, now, limits)
    day_count = int((end - start) // 86400)
    per_day = [{"calls": 0, "recorded": 0, "declined": 0, "findings": 0} for _ in range(day_count)]
    notice_offsets: list[float] = []
    mute_latencies: list[float] = []
    consent = Counter()
    calls = recorded = 0
    month_call_ids: list[str] = []
    for call_id, entries in _call_entries(vault, start, end):
        findings, stats = check_call(call_id, entries, limits)
        report.findings.extend(findings)
        calls += 1
        month_call_ids.append(call_id)
        index = min(day_count - 1, max(0, int((entries[0].pbx_time - start) // 86400)))
        per_day[index]["calls"] += 1
        per_day[index]["findings"] += len(findings)
        if stats.recorded:
            recorded += 1
            per_day[index]["recorded"] += 1
        if stats.consent:
            consent[stats.consent] += 1
            if stats.consent in ("declined", "no-input"):
                per_day[index]["declined"] += 1
        if stats.notice_offset is not None:
            notice_offsets.append(stats.notice_offset)
        mute_latencies.extend(stats.mute_latencies)
    _vault_checks(vault, report, start, end, now)
    from callguard.transcripts.audit import missed_pauses_by_agent_week, spoken_checks

    spoken, missed = spoken_checks(vault, start, end)
    report.findings.extend(Finding(check, call_id, at, detail) for check, call_id, at, detail in spoken)
    access = _access_checks(vault, report, start, end, limits)
    if verify_chains:
        log = verify_log(vault.engine)
        for problem in log.problems:
            report.findings.append(Finding("access-log-broken", "access log", None, problem))
        ledger = verify_ledger(vault.engine)
        for problem in ledger.problems:
            report.findings.append(Finding("ledger-broken", f"chain {problem.chain_id}", None, str(problem)))
    with vault.session() as session:
        recordings = list(session.execute(select(Recording.purpose, Recording.state, Recording.expires_at,
                                                 Recording.recorded_at, Recording.dtmf_leaks)
                                          .where(Recording.recorded_at >= start, Recording.recorded_at < end)))
        stored_purposes = Counter(p for p, in session.execute(select(Recording.purpose).where(Recording.state == STORED)))
        sweeps = list(session.execute(select(SweepRun.started_at, SweepRun.applied, SweepRun.deleted)
                                      .where(SweepRun.started_at >= start, SweepRun.started_at < end)
                                      .order_by(SweepRun.started_at)))
    report.stats = {
        "calls": calls, "recorded_calls": recorded, "consent": dict(consent), "per_day": per_day,
        "notice_offsets": notice_offsets, "mute_latencies": mute_latencies,
        "notice_offset_p50": _percentile(notice_offsets, 0.5), "notice_offset_p95": _percentile(notice_offsets, 0.95),
        "mute_latency_p50": _percentile(mute_latencies, 0.5), "mute_latency_p95": _percentile(mute_latencies, 0.95),
        "mute_latency_max": max(mute_latencies, default=None),
        "recordings_in_month": len(recordings),
        "stored_by_purpose": dict(stored_purposes),
        "sweeps": [{"at": at, "applied": applied, "deleted": deleted} for at, applied, deleted in sweeps],
        "access": access,
        "missed_pauses": missed_pauses_by_agent_week(missed),
        "mean_notice_offset": statistics.fmean(notice_offsets) if notice_offsets else None,
    }
    vault.record(actor, "audit", month, "monthly audit", "done",
                 {"violations": report.violations, "warnings": report.warnings, "calls": calls})
    return report


def _vault_checks(vault: Vault, report: AuditReport, start: float, end: float, now: float) -> None:
    limits = report.limits
    with vault.session() as session:
        month_recordings = session.execute(
            select(Recording.id, Recording.call_id, Recording.recorded_at, Recording.dtmf_leaks,
                   Recording.dtmf_scanned_at, Recording.dtmf_report, Recording.state)
            .where(Recording.recorded_at >= start, Recording.recorded_at < end)).all()
        overdue = select_expired(session, min(now, end))
        sweeps = [at for at, in session.execute(
            select(SweepRun.started_at).where(SweepRun.applied.is_(True), SweepRun.started_at >= start,
                                              SweepRun.started_at < end).order_by(SweepRun.started_at))]
        dsars = session.scalars(select(DsarRequest).where(DsarRequest.closed_at.is_(None),
                                                          DsarRequest.due_at < now)).all()
        first_ingest = session.scalar(select(func.min(Recording.ingested_at)))
    for rid, call_id, recorded_at, leaks, scanned, raw, state in month_recordings:
        if leaks:
            try:
                info = json.loads(raw or "{}")
            except ValueError:
                info = {}
            digits = info.get("leaked_digits") or ""
            failed = info.get("mute_failures") or 0
            detail = (f"{leaks} keypad tone(s) audible in recording {rid}"
                      + (f": digits {digits!r} outside muted spans" if digits else "")
                      + (f"; {failed} inside a muted span (the PBX confirmed the mute but audio was not silent)"
                         if failed else ""))
            report.findings.append(Finding("dtmf-leak", call_id, recorded_at, detail))
        elif scanned is None and state == STORED:
            report.findings.append(Finding("dtmf-not-scanned", call_id, recorded_at,
                                           f"recording {rid} has no DTMF scan (`callguard vault scan {rid}`)"))
    for rid, call_id, purpose, expires_at in overdue:
        report.findings.append(Finding("retention-overdue", call_id, expires_at,
                                       f"recording {rid} ({purpose}) expired {_fmt_day(expires_at)} and is still stored"))
    interval = limits.sweep_interval_h * 3600
    tolerance = interval * 1.5
    window_end = min(end, now)
    # A sweep is due only once the vault holds something it could delete: from the first ingest on.
    since = max(start, first_ingest) if first_ingest is not None else window_end
    if window_end - since > tolerance:
        if not sweeps:
            report.findings.append(Finding("sweep-missed", "retention", None,
                                           f"no applied retention sweep between {_fmt_day(since)} and "
                                           f"{_fmt_day(window_end)} (schedule: every {limits.sweep_interval_h:g} h)"))
        else:
            edges = [since] + [at for at in sweeps if at >= since] + [window_end]
            for before, after in zip(edges, edges[1:]):
                if after - before > tolerance:
                    report.findings.append(Finding("sweep-missed", "retention", before,
                                                   f"{(after - before) / 3600:.0f} h without an applied sweep from "
                                                   f"{_fmt_time(before)} to {_fmt_time(after)} "
                                                   f"(schedule: every {limits.sweep_interval_h:g} h)"))
    _unlawful_recordings(vault, report, start, end)
    for request in dsars:
        report.findings.append(Finding("dsar-overdue", request.label, request.due_at,
                                       f"{request.kind} request opened {_fmt_day(request.opened_at)} was due "
                                       f"{_fmt_day(request.due_at)} and is still open"))


def _unlawful_recordings(vault: Vault, report: AuditReport, start: float, end: float) -> None:
    """Recordings in the vault for the month's calls whose ledger never started one (declined, not allowed, unlogged).

    Selected by the call's month, not the file's: such a file has no ledger
    start, so its recording time is only the file's modification time.
    """
    from callguard.ledger.queries import timeline

    started = select(LedgerEntryRecord.call_id).where(LedgerEntryRecord.kind == "recording-started")
    with vault.session() as session:
        month_calls = select(Call.call_id).where(Call.first_seen >= start, Call.first_seen < end)
        rows = session.execute(select(Recording.id, Recording.call_id, Recording.source_name, Recording.state,
                                      Recording.recorded_at)
                               .where(Recording.call_id.in_(month_calls), Recording.call_id.not_in(started))).all()
        for rid, call_id, name, state, recorded_at in rows:
            found = unlawful_recording(timeline(session, call_id))
            if found is not None:
                check, why = found
                report.findings.append(Finding(check, call_id, recorded_at,
                                               f"recording {rid} ({name}, {state}) is in the vault: {why}"))


def _access_checks(vault: Vault, report: AuditReport, start: float, end: float, limits: Limits) -> dict[str, Any]:
    exports: Counter[tuple[str, int]] = Counter()
    by_action: Counter[str] = Counter()
    by_user: dict[str, Counter[str]] = defaultdict(Counter)
    denied: dict[str, list[Any]] = defaultdict(list)
    for event in vault.access_log.events(since=start, until=end):
        if event.outcome == "denied":
            denied[event.actor].append(event)
            by_user[event.actor]["denied"] += 1
            continue
        if event.outcome != "done":
            continue
        by_action[event.action] += 1
        by_user[event.actor][event.action] += 1
        if event.action in ("export", "dsar-export"):
            exports[(event.actor, int((event.at - start) // 86400))] += 1
    for (actor, day_index), count in sorted(exports.items()):
        if count > limits.export_alert_per_day:
            report.findings.append(Finding("exports-unusual", actor, start + day_index * 86400,
                                           f"{actor} exported {count} recordings on {_fmt_day(start + day_index * 86400)} "
                                           f"(alert above {limits.export_alert_per_day} a day)"))
    for actor, events in sorted(denied.items()):
        actions = Counter(e.action for e in events)
        report.findings.append(Finding("access-denied", actor, events[0].at,
                                       f"{len(events)} denied attempt(s) by {actor}: "
                                       + ", ".join(f"{a} x{n}" for a, n in sorted(actions.items()))
                                       + f"; e.g. {events[0].detail.get('refusal', '')}"))
    return {"by_action": dict(by_action), "by_user": {u: dict(c) for u, c in sorted(by_user.items())}}


def _fmt_day(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d")


def _fmt_time(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%MZ")


def render_text(report: AuditReport) -> str:
    """The plain-text summary a compliance officer reads first."""
    s = report.stats
    lines = [
        f"callguard monthly audit {report.month} ({_fmt_day(report.start)} .. {_fmt_day(report.end - 1)}), "
        f"generated {_fmt_time(report.generated_at)}",
        "",
        f"calls: {s['calls']}   recorded: {s['recorded_calls']}   consent decisions: "
        + (", ".join(f"{k} {v}" for k, v in sorted(s["consent"].items())) or "none"),
        f"notice start after answer: median {_secs(s['notice_offset_p50'])}, p95 {_secs(s['notice_offset_p95'])} "
        f"(limit {report.limits.notice_start_s:g} s)",
        f"mute confirmation: median {_ms(s['mute_latency_p50'])}, p95 {_ms(s['mute_latency_p95'])}, "
        f"max {_ms(s['mute_latency_max'])} (limit {report.limits.confirm_timeout_s * 1000:.0f} ms)",
        f"recordings made this month: {s['recordings_in_month']}; stored now by purpose: "
        + (", ".join(f"{k} {v}" for k, v in sorted(s["stored_by_purpose"].items())) or "none"),
        f"retention sweeps this month: {sum(1 for w in s['sweeps'] if w['applied'])} applied, "
        f"{sum(1 for w in s['sweeps'] if not w['applied'])} dry runs",
        "access: " + (", ".join(f"{k} {v}" for k, v in sorted(s["access"]["by_action"].items())) or "none"),
        "",
        f"RESULT: {report.violations} violation(s), {report.warnings} warning(s)",
        "",
    ]
    for check, findings in report.by_check().items():
        title, severity = CHECKS[check]
        mark = "PASS" if not findings else ("FAIL" if severity == VIOLATION else "WARN")
        lines.append(f"[{mark}] {title} ({check}){f': {len(findings)}' if findings else ''}")
        for finding in findings[:SHOW_PER_CHECK]:
            when = f" {_fmt_time(finding.at)}" if finding.at else ""
            lines.append(f"       - {finding.subject}{when}: {finding.detail}")
        if len(findings) > SHOW_PER_CHECK:
            lines.append(f"       ... and {len(findings) - SHOW_PER_CHECK} more (use --json for all)")
    missed = s.get("missed_pauses") or []
    lines += ["", "Missed pauses (card data spoken while recording), per agent and week:"]
    lines += [f"  {m['week']}  agent {m['agent']}: {m['calls']} call(s): {', '.join(m['call_ids'])}" for m in missed] \
        or ["  none"]
    return "\n".join(lines) + "\n"


def _secs(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f} s"


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v * 1000:.0f} ms"


__all__ = ["AuditReport", "CHECKS", "Finding", "Limits", "VIOLATION", "WARNING", "check_call", "month_bounds",
           "render_text", "run_audit"]
