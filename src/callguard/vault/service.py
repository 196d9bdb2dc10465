"""The vault as one object: database, keys, access control and the access log.

Every operation (ingest, listen, export, delete, hold, sweep, requests,
audit) goes through :meth:`Vault.authorize` first.  It resolves the user's
role from ``[users]``/``[roles]``, checks the permission and the reason, and
commits an access-log entry - ``granted`` or ``denied`` - *before* the
action runs.  A denied attempt raises :class:`AccessDenied` after it is
logged, so a refusal always leaves a trace.

Identity: ``--as USER`` names who acts.  With ``[vault] bind_os_user`` (the
default) it must be the operating-system account running the command (the
effective uid, not ``$USER``, which anyone can set), so a person cannot
borrow a colleague's role by typing their name.  Both the claimed user and
the OS account go into the log.
"""

from __future__ import annotations

import os
import pwd
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from callguard.config import Config
from callguard.core.commands import LedgerEntry
from callguard.ledger.db import open_for_writing, sqlite_path
from callguard.ledger.writer import Committed, Ledger
from callguard.transcripts import models as _transcript_models  # noqa: F401 - registers vault_transcripts
from callguard.vault import models  # noqa: F401 - registers the vault tables on Base
from callguard.vault.accesslog import AccessEvent, AccessLog
from callguard.vault.envelope import VaultError
from callguard.vault.keys import KeyStore, Keyring, PrivateKeys
from callguard.vault.permissions import MIN_REASON_LEN, PERMISSIONS, REASON_REQUIRED

Clock = Callable[[], float]


class AccessDenied(VaultError):
    """The user may not do this; the attempt is in the access log."""


def os_user() -> str:
    """The account running this process, from the effective uid (not $USER)."""
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return f"uid-{os.geteuid()}"


@dataclass(frozen=True)
class Actor:
    name: str
    os_user: str
    role: str | None
    permissions: frozenset[str] = field(default_factory=frozenset)


class Vault:
    """Open with :meth:`open`; close when done (it owns a ledger writer thread)."""

    def __init__(self, config: Config, engine: Engine, *, clock: Clock = time.time,
                 os_account: str | None = None, vouched_by: str | None = None) -> None:
        self.config = config
        #: who authenticated the users acting through this vault when it is not
        #: the operating system (the web console: "web"); the access log says so
        self.vouched_by = vouched_by
        self.settings = config.vault
        self.engine = engine
        self.clock = clock
        self.os_account = os_account or os_user()
        base = Path(self.settings.dir)
        self.dir = base
        self.keyring = Keyring(Path(self.settings.keyring) if self.settings.keyring else base / "keyring")
        self.keystore = KeyStore(Path(self.settings.keystore) if self.settings.keystore else base / "keystore")
        passphrase = os.environ.get(self.settings.passphrase_env)
        self.private_keys = PrivateKeys(Path(self.settings.private_keys) if self.settings.private_keys else None,
                                        passphrase.encode() if passphrase else None)
        self.access_log = AccessLog(engine, clock)
        self.chain_id = self.settings.chain_id or f"vault@{os.uname().nodename}"
        self._ledger: Ledger | None = None

    @classmethod
    def open(cls, config: Config, *, clock: Clock = time.time, os_account: str | None = None,
             create: bool = False, vouched_by: str | None = None) -> "Vault":
        """Connect to the ledger database (adding the vault tables if missing).

        The vault lives in the ledger's database, so a SQLite file that does
        not exist yet is a wrong ``[ledger] url``, not a reason to create an
        empty one - unless ``create`` says so (first-time setup, tests).
        """
        url = make_url(config.ledger.url)
        path = sqlite_path(url) if url.get_backend_name() == "sqlite" else None
        if path is not None and not create and not path.exists():
            raise VaultError(f"ledger database {str(path)!r} does not exist; the vault keeps its records "
                             f"there. Check [ledger] url (or start the listener once to create it)")
        return cls(config, open_for_writing(url), clock=clock, os_account=os_account, vouched_by=vouched_by)

    def close(self) -> None:
        if self._ledger is not None:
            self._ledger.close(timeout=30)
            self._ledger = None
        self.engine.dispose()

    def __enter__(self) -> "Vault":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    # -- who may do what ---------------------------------------------------------

    def actor(self, name: str | None) -> Actor:
        name = name or self.os_account
        role = self.config.users.get(name)
        permissions = frozenset(self.config.roles.get(role, ())) if role else frozenset()
        return Actor(name, self.os_account, role, permissions)

    def authorize(self, user: str | None, action: str, target: str, reason: str,
                  *, permission: str | None = None, detail: Mapping[str, Any] | None = None) -> Actor:
        """Check and log one attempt; raises :class:`AccessDenied` (after logging) if refused."""
        permission = permission or action
        if permission not in PERMISSIONS:
            raise VaultError(f"internal: unknown permission {permission!r}")
        actor = self.actor(user)
        reason = (reason or "").strip()
        refusal = None
        if self.vouched_by is not None:
            detail = {**(detail or {}), "authenticated_by": self.vouched_by}
        if self.settings.bind_os_user and self.vouched_by is None and actor.name != self.os_account:
            refusal = (f"{actor.name!r} is not the account running this command ({self.os_account!r}); "
                       f"[vault] bind_os_user requires acting as yourself")
        elif actor.role is None:
            refusal = f"{actor.name!r} is not a vault user; add them to [users] with a role"
        elif permission not in actor.permissions:
            holders = sorted(r for r, perms in self.config.roles.items() if permission in perms)
            refusal = (f"{actor.name!r} (role {actor.role}) may not {permission}; roles that may: "
                       f"{', '.join(holders) or 'none'}")
        elif action in REASON_REQUIRED and len(reason) < MIN_REASON_LEN:
            refusal = (f"{action} needs a reason of at least {MIN_REASON_LEN} characters saying why "
                       f"(e.g. --reason 'complaint #4411 review')")
        self.access_log.append(actor=actor.name, os_user=actor.os_user, role=actor.role, action=action,
                               target=target, reason=reason, outcome="denied" if refusal else "granted",
                               detail={**(detail or {}), **({"refusal": refusal} if refusal else {})})
        if refusal:
            raise AccessDenied(f"access denied: {refusal} (logged)")
        return actor

    def record(self, actor: Actor, action: str, target: str, reason: str, outcome: str,
               detail: Mapping[str, Any] | None = None) -> AccessEvent:
        """Log how an authorized action ended (``done`` / ``failed``)."""
        return self.access_log.append(actor=actor.name, os_user=actor.os_user, role=actor.role,
                                      action=action, target=target, reason=reason, outcome=outcome,
                                      detail=detail)

    def log_system(self, action: str, target: str, reason: str, detail: Mapping[str, Any] | None = None) -> None:
        """Log an act that needs no role (key generation/import), as the OS account."""
        actor = self.actor(self.os_account)
        self.access_log.append(actor=actor.name, os_user=actor.os_user, role=actor.role, action=action,
                               target=target, reason=reason, outcome="done", detail=detail)

    # -- ledger ----------------------------------------------------------------

    def _writer(self) -> Ledger:
        if self._ledger is None:
            self._ledger = Ledger(self.engine, self.chain_id, batch_wait_ms=0)
        return self._ledger

    def ledger_queue(self, call_id: str, kind: str, data: Mapping[str, Any],
                     on_commit: Callable[[Committed], None] | None = None) -> None:
        """Queue one vault entry on the call's timeline (committed in batches; see :meth:`ledger_flush`)."""
        now = self.clock()
        self._writer().append(LedgerEntry(call_id, kind, now, dict(data)), now, on_commit=on_commit)

    def ledger_flush(self, timeout: float = 60.0) -> None:
        if self._ledger is not None and not self._ledger.flush(timeout):
            raise VaultError(f"the ledger did not confirm the vault's entries within {timeout:.0f} s "
                             f"({self._ledger.last_error or 'no error reported'}); they stay queued")

    def ledger_append(self, call_id: str, kind: str, data: Mapping[str, Any], timeout: float = 30.0) -> Committed:
        """Write one vault entry on the call's timeline and wait until it is committed."""
        done: list[Committed] = []
        self.ledger_queue(call_id, kind, data, on_commit=done.append)
        self.ledger_flush(timeout)
        if not done:
            raise VaultError(f"the ledger did not confirm the {kind} entry for call {call_id}")
        return done[0]

    # -- paths -------------------------------------------------------------------

    def ciphertext_path(self, relative: str) -> Path:
        return self.dir / relative

    def retention_days(self, purpose: str) -> int:
        try:
            return self.config.retention[purpose]
        except KeyError:
            raise VaultError(f"purpose {purpose!r} has no retention period; use one of "
                             f"{', '.join(sorted(self.config.retention))} or add it to [retention]") from None


__all__ = ["AccessDenied", "Actor", "Clock", "Vault", "os_user"]
