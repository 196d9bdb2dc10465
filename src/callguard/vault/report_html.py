"""The audit as one self-contained HTML page: summary, charts, checklist, findings.

No scripts, stylesheets or fonts are fetched: the page is meant to be
archived with the month's evidence and opened anywhere, offline.
"""

from __future__ import annotations

from datetime import datetime, timezone
from html import escape

from callguard.vault.audit import CHECKS, VIOLATION, AuditReport
from callguard.vault.svg import PALETTE, bars, histogram, stacked_columns

_CSS = """
body{font:14px/1.45 -apple-system,Segoe UI,Helvetica,Arial,sans-serif;color:#1a202c;margin:24px auto;max-width:1100px;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #e2e8f0;padding-bottom:4px}
.sub{color:#718096}.tiles{display:flex;flex-wrap:wrap;gap:10px;margin:16px 0}
.tile{border:1px solid #e2e8f0;border-radius:6px;padding:10px 14px;min-width:120px}
.tile b{display:block;font-size:22px}.bad b{color:#c53030}.warn b{color:#b7791f}.ok b{color:#2f855a}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(420px,1fr));gap:18px}
table{border-collapse:collapse;width:100%;font-size:13px}td,th{border-bottom:1px solid #edf2f7;padding:4px 6px;text-align:left;vertical-align:top}
.PASS{color:#2f855a;font-weight:600}.FAIL{color:#c53030;font-weight:600}.WARN{color:#b7791f;font-weight:600}
.result{display:inline-block;padding:4px 10px;border-radius:4px;color:#fff;font-weight:600}
code{font-size:12px}@media print{.grid{display:block}}
"""


def _fmt(t: float | None, with_time: bool = True) -> str:
    if t is None:
        return "-"
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ" if with_time else "%Y-%m-%d")


def _tile(label: str, value: object, cls: str = "") -> str:
    return f'<div class="tile {cls}"><b>{escape(str(value))}</b>{escape(label)}</div>'


def render_html(report: AuditReport) -> str:
    s = report.stats
    grouped = report.by_check()
    leaks = len(grouped["dtmf-leak"])
    result_colour = PALETTE["red"] if report.violations else (PALETTE["amber"] if report.warnings else PALETTE["green"])
    result_text = (f"{report.violations} violation(s), {report.warnings} warning(s)" if report.findings
                   else "no findings")
    days = [f"{i + 1}" for i in range(len(s["per_day"]))]
    recorded = [d["recorded"] for d in s["per_day"]]
    unrecorded = [d["calls"] - d["recorded"] for d in s["per_day"]]
    findings_per_day = [d["findings"] for d in s["per_day"]]
    check_items = [(c, len(f), PALETTE["red"] if CHECKS[c][1] == VIOLATION else PALETTE["amber"])
                   for c, f in grouped.items() if f]
    users = s["access"]["by_user"]
    access_items = []
    for user, actions in users.items():
        for action, count in sorted(actions.items()):
            colour = PALETTE["red"] if action == "denied" else PALETTE["amber"] if "export" in action else PALETTE["blue"]
            access_items.append((f"{user}: {action}", count, colour))
    purposes = [(p, n, PALETTE["blue"]) for p, n in sorted(s["stored_by_purpose"].items())]
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f"<title>callguard audit {escape(report.month)}</title><style>{_CSS}</style></head><body>",
        f"<h1>Call recording compliance audit — {escape(report.month)}</h1>",
        f'<div class="sub">Period {_fmt(report.start, False)} to {_fmt(report.end - 1, False)} (UTC). '
        f"Generated {_fmt(report.generated_at)} by callguard.</div>",
        f'<p><span class="result" style="background:{result_colour}">{escape(result_text)}</span></p>',
        '<div class="tiles">',
        _tile("calls", s["calls"]),
        _tile("recorded calls", s["recorded_calls"]),
        _tile("violations", report.violations, "bad" if report.violations else "ok"),
        _tile("warnings", report.warnings, "warn" if report.warnings else "ok"),
        _tile("recordings with DTMF leaks", leaks, "bad" if leaks else "ok"),
        _tile("overdue requests", len(grouped["dsar-overdue"]), "bad" if grouped["dsar-overdue"] else "ok"),
        _tile("applied sweeps", sum(1 for w in s["sweeps"] if w["applied"]),
              "bad" if grouped["sweep-missed"] else "ok"),
        "</div>",
        "<h2>Charts</h2><div class=grid>",
        f"<div>{stacked_columns(days, [('recorded', PALETTE['blue'], recorded), ('not recorded', PALETTE['grey'], unrecorded)], 'Calls per day')}</div>",
        f"<div>{stacked_columns(days, [('findings', PALETTE['red'], findings_per_day)], 'Findings per day (by call start)')}</div>",
        f"<div>{histogram(s['notice_offsets'], 'Notice start after answer', 'seconds', report.limits.notice_start_s)}</div>",
        f"<div>{histogram([v * 1000 for v in s['mute_latencies']], 'Pause: mute confirmed by the PBX after', 'ms', report.limits.confirm_timeout_s * 1000)}</div>",
        f"<div>{bars(check_items, 'Findings by check')}</div>",
        f"<div>{bars(access_items, 'Vault access by user and action')}</div>",
        f"<div>{bars(purposes, 'Recordings stored now, by purpose')}</div>",
        "</div>",
        "<h2>Checklist</h2><table><tr><th>Result</th><th>Check</th><th>Findings</th></tr>",
    ]
    for check, findings in grouped.items():
        title, severity = CHECKS[check]
        mark = "PASS" if not findings else ("FAIL" if severity == VIOLATION else "WARN")
        parts.append(f'<tr><td class="{mark}">{mark}</td><td>{escape(title)} <code>{escape(check)}</code></td>'
                     f"<td>{len(findings)}</td></tr>")
    parts.append("</table>")
    for check, findings in grouped.items():
        if not findings:
            continue
        title, severity = CHECKS[check]
        mark = "FAIL" if severity == VIOLATION else "WARN"
        parts.append(f'<h2><span class="{mark}">{mark}</span> {escape(title)} — {len(findings)} finding(s) '
                     f"<code>{escape(check)}</code></h2><table><tr><th>Subject</th><th>When</th><th>Detail</th></tr>")
        for finding in findings[:500]:
            parts.append(f"<tr><td><code>{escape(finding.subject)}</code></td><td>{_fmt(finding.at)}</td>"
                         f"<td>{escape(finding.detail)}</td></tr>")
        if len(findings) > 500:
            parts.append(f"<tr><td colspan=3>… and {len(findings) - 500} more (see the JSON report)</td></tr>")
        parts.append("</table>")
    limits = report.limits
    parts.append(
        "<h2>Limits used</h2><p class=sub>"
        f"notice start ≤ {limits.notice_start_s:g} s, notice end ≤ {limits.notice_end_s:g} s, mute confirmed ≤ "
        f"{limits.confirm_timeout_s * 1000:.0f} ms, retention sweep every {limits.sweep_interval_h:g} h, "
        f"export alert above {limits.export_alert_per_day} a day per user.</p></body></html>")
    return "\n".join(parts)


__all__ = ["render_html"]
