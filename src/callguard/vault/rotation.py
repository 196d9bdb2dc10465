"""Key rotation beyond "new recordings use the new key": re-wrapping old recordings.

After ``callguard keys rotate`` new recordings are wrapped for the new key
and old ones stay readable with the old private key.  To retire the old
private key for good, :func:`rewrap` opens each old recording's data key
with it and wraps it again for the active key.  Only the small key store
entry changes (atomically); the ciphertext is untouched, so this is fast
and a crash leaves every recording readable with one key or the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from sqlalchemy import select

from callguard.vault.keys import unwrap, wrap
from callguard.vault.models import Recording
from callguard.vault.retention import KEPT
from callguard.vault.service import Vault


@dataclass
class RewrapReport:
    from_kid: str
    to_kid: str
    rewrapped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def rewrap(vault: Vault, user: str | None, from_kid: str, reason: str,
           progress: Callable[[int, int], None] | None = None) -> RewrapReport:
    to_kid, public = vault.keyring.active()
    actor = vault.authorize(user, "keys-rewrap", from_kid, reason, permission="keys", detail={"to": to_kid})
    report = RewrapReport(from_kid, to_kid)
    if from_kid == to_kid:
        vault.record(actor, "keys-rewrap", from_kid, reason, "done", {"rewrapped": 0, "note": "already active"})
        return report
    private = vault.private_keys.get(from_kid)
    with vault.session() as session:
        ids = list(session.scalars(select(Recording.id).where(Recording.key_id == from_kid,
                                                                    Recording.state.in_(KEPT))))
    for done, rid in enumerate(ids, 1):
        try:
            key = unwrap(vault.keystore.get(rid), private, rid)
            wrapped, _ = wrap(key, public, rid)
            vault.keystore.put(wrapped)
            with vault.session() as session, session.begin():
                row = session.get(Recording, rid)
                assert row is not None
                row.key_id = to_kid
            vault.ledger_queue(row.call_id, "recording-rewrapped", {"recording_id": rid, "from_key": from_kid,
                                                                    "to_key": to_kid, "by": actor.name})
            report.rewrapped.append(rid)
        except Exception as exc:  # noqa: BLE001 - report each recording, continue with the rest
            report.failed[rid] = str(exc)
        if progress:
            progress(done, len(ids))
    vault.ledger_flush()
    vault.record(actor, "keys-rewrap", from_kid, reason, "failed" if report.failed else "done",
                 {"to": to_kid, "rewrapped": len(report.rewrapped), "failed": report.failed})
    return report


__all__ = ["RewrapReport", "rewrap"]
