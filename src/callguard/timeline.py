"""Human-readable call timelines, shared by ``ledger show`` and ``simulate``.

A compliance officer reads these lines, so each ledger entry kind gets one
sentence with its key facts (prompt and language heard, digit pressed,
decision, who paused, how fast the PBX confirmed) instead of raw JSON.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Iterable, Mapping, Protocol


class TimelineRow(Protocol):
    """An in-memory ``LedgerEntry`` (``at``) or a stored entry (``pbx_time``)."""

    kind: str
    data: Mapping[str, Any]


def _time(row: Any) -> float:
    return float(row.at if hasattr(row, "at") else row.pbx_time)


def _ms(value: Any) -> str:
    return f"{float(value) * 1000:.1f} ms" if isinstance(value, (int, float)) else "?"


def _party(p: Mapping[str, Any]) -> str:
    name = f" {p['name']!r}" if p.get("name") else ""
    return f"{p.get('number')!s}{name} [{p.get('role', '?')}] {p.get('jurisdiction')} -> {p.get('regime')}"


def describe(kind: str, data: Mapping[str, Any]) -> str:
    """One line of facts for an entry."""
    d = data
    who = " (joiner " + str(d.get("channel")) + ")" if d.get("party") == "joiner" else ""
    if kind == "call-offered":
        return "call offered: " + "; ".join(_party(p) for p in d.get("parties", [])) + \
            f"; language {d.get('language', '?')}"
    if kind == "rule-applied":
        change = f" (was {d['changed_from']})" if d.get("changed_from") else ""
        return (f"rule {d.get('regime')}{change}: recording {'allowed' if d.get('recording_allowed') else 'NOT allowed'}"
                f", explicit consent {'required' if d.get('explicit_consent') else 'not required'}"
                + (", lawful basis recorded" if d.get("lawful_basis_required") else ""))
    if kind == "notice-started":
        limit = "" if d.get("within_limit", True) else " LATE"
        return (f"notice started{who}: {d.get('prompt_id')} [{d.get('language')}] sha256 "
                f"{str(d.get('sha256', ''))[:12]} ({d.get('confirmed_by', 'pbx')}){limit}")
    if kind == "notice-ended":
        return f"notice ended{who}: digits {d.get('digits') or '(none)'}, attempt {d.get('attempt')}"
    if kind == "consent":
        basis = f", lawful basis: {d['lawful_basis']}" if d.get("lawful_basis") else ""
        over = f", overridden: {d['overridden_by']}" if d.get("overridden_by") else ""
        retry = "" if d.get("final", True) else " (will ask again)"
        return f"consent{who}: {d.get('decision')}{retry}{basis}{over}"
    if kind == "recording-requested":
        return f"recording requested: {d.get('file')}"
    if kind == "recording-started":
        return f"recording started, confirmed by PBX after {_ms(d.get('latency_s'))}"
    if kind == "recording-muted":
        return f"recording muted ({', '.join(d.get('reasons', []))}), confirmed after {_ms(d.get('latency_s'))}"
    if kind == "recording-unmuted":
        return f"recording unmuted, confirmed after {_ms(d.get('latency_s'))}"
    if kind == "recording-stopped":
        return f"recording stopped: {d.get('reason')}" + (" (muted at the end)" if d.get("muted_at_end") else "")
    if kind == "recording-stop-confirmed":
        return f"recording stop confirmed by PBX ({d.get('reason')})"
    if kind in ("pause-requested", "resume-requested", "payment-started", "payment-ended"):
        still = d.get("still_muted_for")
        extra = f"; still muted for {', '.join(still)}" if still else ""
        reason = f" ({d['reason']})" if d.get("reason") else ""
        return f"{kind.replace('-', ' ')} by {d.get('source')}{reason}{extra}"
    if kind == "party-joined":
        how = "staff" if d.get("staff") else "announced" if d.get("announceable") else "UNANNOUNCED"
        return f"party joined ({how}): {_party(d.get('party', {}))}"
    if kind == "party-left":
        return f"party left: {d.get('channel')}"
    if kind == "violation":
        return f"VIOLATION: {d.get('what')}: {d.get('detail')}"
    if kind == "error":
        return f"error: {d.get('what')}: {d.get('detail')}"
    if kind == "continued":
        dest = f" to {d['destination']}" if d.get("destination") else ""
        return f"call continues unrecorded{dest} (outcome {d.get('outcome')})"
    if kind == "hangup":
        return f"hangup ({d.get('cause')}) in state {d.get('state')}"
    return f"{kind}: " + ", ".join(f"{k}={v}" for k, v in d.items())


def render(rows: Iterable[TimelineRow]) -> list[str]:
    """Lines ``time  +offset  kind  facts`` with offsets from the answer."""
    rows = list(rows)
    if not rows:
        return []
    origin = _time(rows[0])
    lines = []
    for row in rows:
        at = _time(row)
        stamp = datetime.fromtimestamp(at, tz=timezone.utc).strftime("%H:%M:%S.%f")[:-3]
        lines.append(f"{stamp}  +{at - origin:8.3f}s  {row.kind:<24} {describe(row.kind, row.data)}")
    return lines


def summarize(rows: Iterable[TimelineRow]) -> dict[str, Any]:
    """The facts a reviewer (and a scenario's ``[expect]``) asks first about a call."""
    rows = list(rows)
    decision = next((r.data.get("decision") for r in rows
                     if r.kind == "consent" and r.data.get("final") and r.data.get("party") != "joiner"), None)
    regime = next((r.data.get("regime") for r in reversed(rows) if r.kind == "rule-applied"), None)
    final_state = next((r.data.get("state") for r in reversed(rows) if r.kind == "hangup"), None)
    return {
        "decision": decision,
        "recorded": any(r.kind == "recording-started" for r in rows),
        "final_state": final_state,
        "violations": sum(1 for r in rows if r.kind == "violation"),
        "regime": regime,
        "mutes_confirmed": sum(1 for r in rows if r.kind == "recording-muted"),
        "payment_segments": sum(1 for r in rows if r.kind == "payment-started"),
        "joiners": sum(1 for r in rows if r.kind == "party-joined" and not r.data.get("staff")),
    }
