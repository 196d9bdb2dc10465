"""Shared helpers for the ledger tests: realistic calls and direct tampering."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Engine, text

from callguard.core.commands import LedgerEntry

T0 = 1_714_567_890.123456  # a PBX timestamp with microseconds, as AMI/ESL give them


def sample_call(call_id: str = "1714567890.42", t0: float = T0, *, caller: str = "+14155550123",
                name: str = "José Cust") -> list[LedgerEntry]:
    """The entries a consented call with a payment pause writes (data as in engine_api.md)."""
    answered = t0 + 0.5
    caller_party = {"channel": "PJSIP/alice-00000001", "number": caller, "name": name, "role": "caller",
                    "jurisdiction": "US-CA", "where": "California", "regime": "all-party",
                    "reason": "California requires all-party consent"}
    agent_party = {"channel": "PJSIP/agent-00000002", "number": "2001", "name": "Agent", "role": "agent",
                   "jurisdiction": "internal", "where": "internal extension", "regime": "one-party",
                   "reason": "internal"}
    steps: list[tuple[float, str, dict[str, Any]]] = [
        (t0, "call-offered", {"channel": caller_party["channel"], "language": "en",
                              "parties": [caller_party, agent_party]}),
        (t0, "rule-applied", {"regime": "all-party", "recording_allowed": True, "notice_required": True,
                              "explicit_consent": True, "lawful_basis_required": False,
                              "reasons": ["+14155550123: California requires all-party consent"],
                              "parties": [{"number": caller, "jurisdiction": "US-CA", "regime": "all-party"}]}),
        (answered + 0.4, "notice-started", {"channel": caller_party["channel"], "prompt_id": "notice",
                                            "language": "en", "sha256": "ab" * 32, "offset_s": 0.4,
                                            "attempt": 1, "confirmed_by": "pbx", "within_limit": True}),
        (answered + 6.1, "notice-ended", {"channel": caller_party["channel"], "offset_s": 6.1,
                                          "digits": "1", "attempt": 1}),
        (answered + 6.1, "consent", {"decision": "granted", "digits": "1", "attempt": 1, "final": True}),
        (answered + 6.1, "recording-requested", {"file": f"callguard-{call_id}.wav"}),
        (answered + 6.25, "recording-started", {"file": f"callguard-{call_id}.wav", "confirmed_by": "pbx",
                                                "latency_s": 0.15}),
        (answered + 30.0, "payment-started", {"source": "ivr", "state": "recording"}),
        (answered + 30.012, "recording-muted", {"reasons": ["payment"], "confirmed_by": "pbx",
                                                "latency_s": 0.012}),
        (answered + 75.5, "payment-ended", {"source": "ivr", "state": "paused"}),
        (answered + 75.509, "recording-unmuted", {"confirmed_by": "pbx", "latency_s": 0.009}),
        (answered + 90.0, "party-joined", {"announceable": True,
                                           "party": {"channel": "PJSIP/sup-00000003", "number": "+442079460000",
                                                     "name": "Supervisor", "role": "joiner",
                                                     "jurisdiction": "GB", "regime": "gdpr"}}),
        (answered + 120.0, "recording-stopped", {"reason": "hangup", "confirmed_by": "pbx"}),
        (answered + 120.0, "hangup", {"cause": "16", "state": "recording", "offset_s": 120.0}),
    ]
    return [LedgerEntry(call_id, kind, at, data) for at, kind, data in steps]


def execute(bind: Engine | Connection, sql: str, **params: Any) -> None:
    """Tamper with the database behind the ledger's back, as an attacker would.

    On an engine this commits; on a connection it runs inside the caller's
    transaction (the verify tests roll it back afterwards).
    """
    if isinstance(bind, Connection):
        bind.execute(text(sql), params)
        return
    with bind.begin() as connection:
        connection.execute(text(sql), params)


def drop_append_only(bind: Engine | Connection, table: str = "ledger_entries") -> None:
    """Drop ``table``'s append-only triggers, as an attacker with schema (DDL) rights would first.

    A plain UPDATE or DELETE is refused by the database itself (see
    test_ledger_append_only.py); what ``verify`` still has to catch is
    tampering by someone able to drop the triggers, so the tamper tests
    start here.  The attacker finds the triggers in the catalog; on SQLite
    the DROP commits at once, even inside a transaction.
    """
    if isinstance(bind, Engine):
        with bind.begin() as connection:
            drop_append_only(connection, table)
        return
    if bind.dialect.name == "sqlite":
        names = bind.execute(text("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = :t"),
                             {"t": table}).scalars().all()
        drops = [f'DROP TRIGGER "{name}"' for name in names]
    else:
        names = bind.execute(text("SELECT tgname FROM pg_trigger WHERE tgrelid = CAST(:t AS regclass) "
                                  "AND NOT tgisinternal"), {"t": table}).scalars().all()
        drops = [f'DROP TRIGGER "{name}" ON {table}' for name in names]
    assert drops, f"{table} has no triggers to drop"
    for statement in drops:
        bind.execute(text(statement))


def scalar(bind: Engine | Connection, sql: str, **params: Any) -> Any:
    if isinstance(bind, Connection):
        return bind.execute(text(sql), params).scalar()
    with bind.connect() as connection:
        return connection.execute(text(sql), params).scalar()
