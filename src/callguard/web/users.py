"""Console credentials: argon2 password hashes, the user's endpoints, hashed API tokens.

One JSON file (``[web] credentials``), written atomically with mode 0600 by
``callguard console user|token`` and re-read by the running listener when it
changes, so adding a user needs no restart.  Roles are *not* here: they come
from ``[users]``/``[roles]`` in callguard.toml, the same table the vault
enforces, so a person has one role for the CLI and the console.

Why a file and not a table: the listener may run with the ledger database
read-mostly, an admin can inspect and back it up like an htpasswd file, and
nothing in it is evidence.  Passwords are hashed with argon2id
(``argon2-cffi``'s defaults, RFC 9106's second recommended profile); tokens
are 32 random bytes shown once, stored as SHA-256 (they carry full entropy,
so a slow hash adds nothing and a fast check keeps the hot path fast).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
MIN_PASSWORD_LEN = 10
TOKEN_PREFIX = "cgt"
_hasher = PasswordHasher()
#: verified against when the user does not exist, so a wrong name costs as long as a wrong password
_DUMMY_HASH = _hasher.hash("callguard-no-such-user")


class CredentialsError(ValueError):
    """A bad name, a weak password, an unreadable credentials file; the message says what to do."""


@dataclass
class TokenRecord:
    id: str
    sha256: str
    label: str
    created_at: float


@dataclass
class ConsoleUser:
    name: str
    password_hash: str = ""
    endpoints: list[str] = field(default_factory=list)
    tokens: list[TokenRecord] = field(default_factory=list)

    @property
    def password_version(self) -> str:
        """Changes whenever the password does: browser sessions carry it and die with it."""
        return hashlib.sha256(self.password_hash.encode()).hexdigest()[:16]


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise CredentialsError(f"user name {name!r} must be 1-64 letters, digits, '.', '_', '@' or '-'")
    return name


class Credentials:
    """The credentials file; thread-safe, re-read when its modification time changes."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._users: dict[str, ConsoleUser] = {}
        self._stamp: tuple[int, int] | None = None

    # -- reading ----------------------------------------------------------------

    def _fresh(self) -> dict[str, ConsoleUser]:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._users, self._stamp = {}, None
            return self._users
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            try:
                raw = json.loads(self.path.read_text(encoding="utf-8"))
                self._users = {name: _user(name, data) for name, data in raw.get("users", {}).items()}
            except (OSError, ValueError, TypeError, KeyError) as exc:
                raise CredentialsError(f"cannot read the console credentials {str(self.path)!r}: {exc}; "
                                       f"restore it from a backup or recreate users with "
                                       f"`callguard console user add`") from None
            self._stamp = stamp
        return self._users

    def users(self) -> list[ConsoleUser]:
        with self._lock:
            return sorted(self._fresh().values(), key=lambda u: u.name)

    def get(self, name: str) -> ConsoleUser | None:
        with self._lock:
            return self._fresh().get(name)

    def verify_password(self, name: str, password: str) -> ConsoleUser | None:
        """The user if ``password`` is theirs (slow on purpose: call it off the event loop)."""
        user = self.get(name)
        try:
            _hasher.verify(user.password_hash if user and user.password_hash else _DUMMY_HASH, password)
        except (VerificationError, InvalidHashError):
            return None
        return user if user and user.password_hash else None

    def user_for_token(self, token: str) -> ConsoleUser | None:
        """The user an API token belongs to, or None (constant-time on the secret)."""
        parts = token.strip().split("_")
        if len(parts) != 3 or parts[0] != TOKEN_PREFIX:
            return None
        digest = hashlib.sha256(token.strip().encode()).hexdigest()
        with self._lock:
            for user in self._fresh().values():
                for record in user.tokens:
                    if record.id == parts[1] and hmac.compare_digest(record.sha256, digest):
                        return user
        return None

    # -- writing (the CLI) --------------------------------------------------------

    def set_user(self, name: str, password: str | None = None, endpoints: list[str] | None = None) -> ConsoleUser:
        """Create or update a user; ``None`` leaves that field as it is."""
        check_name(name)
        if password is not None and len(password) < MIN_PASSWORD_LEN:
            raise CredentialsError(f"the password must have at least {MIN_PASSWORD_LEN} characters")
        with self._lock:
            users = dict(self._fresh())
            user = users.get(name) or ConsoleUser(name)
            if password is not None:
                user.password_hash = _hasher.hash(password)
            if endpoints is not None:
                user.endpoints = sorted(set(endpoints))
            users[name] = user
            self._save(users)
            return user

    def remove_user(self, name: str) -> bool:
        with self._lock:
            users = dict(self._fresh())
            if users.pop(name, None) is None:
                return False
            self._save(users)
            return True

    def add_token(self, name: str, label: str = "") -> str:
        """A new API token for ``name``; returned once, only its hash is kept."""
        with self._lock:
            users = dict(self._fresh())
            user = users.get(name)
            if user is None:
                raise CredentialsError(f"no console user {name!r}; create it first with `callguard console user add`")
            token_id = secrets.token_hex(4)
            token = f"{TOKEN_PREFIX}_{token_id}_{secrets.token_urlsafe(32).replace('_', '-')}"
            user.tokens.append(TokenRecord(token_id, hashlib.sha256(token.encode()).hexdigest(), label, time.time()))
            self._save(users)
            return token

    def revoke_token(self, token_id: str) -> str | None:
        """Remove a token by its id; returns its user's name, or None if there was no such token."""
        with self._lock:
            users = dict(self._fresh())
            for user in users.values():
                kept = [t for t in user.tokens if t.id != token_id]
                if len(kept) != len(user.tokens):
                    user.tokens = kept
                    self._save(users)
                    return user.name
            return None

    def _save(self, users: dict[str, ConsoleUser]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = {"users": {n: {k: v for k, v in asdict(u).items() if k != "name"} for n, u in sorted(users.items())}}
        fd, tmp = tempfile.mkstemp(prefix=".console-users-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                os.fchmod(f.fileno(), 0o600)
                json.dump(data, f, indent=1)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            os.unlink(tmp)
            raise
        self._users, self._stamp = users, None


def _user(name: str, data: dict[str, Any]) -> ConsoleUser:
    return ConsoleUser(name, str(data.get("password_hash", "")), [str(e) for e in data.get("endpoints", [])],
                       [TokenRecord(**t) for t in data.get("tokens", [])])


__all__ = ["MIN_PASSWORD_LEN", "ConsoleUser", "Credentials", "CredentialsError", "TokenRecord", "check_name"]
