"""Vault keys: the recipient key pairs, wrapping data keys, and the key store.

Three kinds of key, three places:

* **Recipient key pairs** (X25519).  The *public* half lives in the keyring
  directory on every host that ingests recordings (the PBX host); it can
  wrap data keys but never unwrap them.  The *private* half lives only on
  hosts allowed to decrypt (a vault/reader host, the privacy officer's
  machine), PEM-encoded and normally passphrase-protected.  A key id
  (``kid``) is the first 16 hex digits of SHA-256 over the raw public key.
* **Data keys** (AES-256), one per recording, generated at ingest and never
  written anywhere in the clear.
* **Wrapped data keys**: the data key sealed for one recipient with
  X25519 (ephemeral-static) + HKDF-SHA256 + AES-256-GCM, bound to the
  recording id and key id.  They live in the *key store*, a directory
  separate from the ciphertext.  Destroying one (:meth:`KeyStore.shred`)
  is crypto-shredding: every copy of that recording's ciphertext, in the
  vault or in any backup of it, becomes permanently unreadable.  For that
  to hold, the key store itself must not be kept in long-lived backups:
  replicate it for availability, and let its backups expire sooner than the
  shortest retention period.

Rotation: ``activate`` a new public key; new recordings are wrapped for it,
old ones keep naming the key they were wrapped for and stay readable with
that private key.  ``rewrap`` moves old recordings to the new key (only the
small wrapped key changes, not the ciphertext) so an old private key can
eventually be destroyed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from callguard.vault.envelope import KEY_LEN, VaultError, WrongKeyError

WRAP_ALGORITHM = "X25519-HKDF-SHA256-A256GCM"
_WRAP_INFO = b"callguard-vault-v1 data key wrap"
_KID = re.compile(r"[0-9a-f]{16}")
_RID = re.compile(r"[0-9a-f]{32}")
KEYRING_INDEX = "keyring.json"


class KeyFileError(VaultError):
    """A key file is missing, unreadable or of the wrong kind."""


def key_id(public: X25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` via a temp file + fsync + rename (never half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _kek(shared: bytes, epk: bytes, recipient: bytes, recording_id: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=KEY_LEN, salt=epk + recipient,
                info=_WRAP_INFO + b"|" + recording_id.encode()).derive(shared)


def _aad(recording_id: str, kid: str) -> bytes:
    return f"callguard-vault-v1|{recording_id}|{kid}".encode()


@dataclass(frozen=True)
class WrappedKey:
    """A data key sealed for one recipient public key (the key store's record)."""

    recording_id: str
    key_id: str
    epk: bytes
    nonce: bytes
    sealed: bytes

    def to_bytes(self) -> bytes:
        return json.dumps({"v": 1, "alg": WRAP_ALGORITHM, "rid": self.recording_id, "kid": self.key_id,
                           "epk": _b64(self.epk), "nonce": _b64(self.nonce), "sealed": _b64(self.sealed)},
                          sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes, where: str) -> "WrappedKey":
        try:
            doc = json.loads(data)
            if doc.get("alg") != WRAP_ALGORITHM:
                raise ValueError(f"unsupported algorithm {doc.get('alg')!r}")
            return cls(str(doc["rid"]), str(doc["kid"]), _unb64(doc["epk"]), _unb64(doc["nonce"]),
                       _unb64(doc["sealed"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise KeyFileError(f"{where}: not a valid wrapped key ({exc}); the key store entry is damaged") from None


def wrap(data_key: bytes, recipient: X25519PublicKey, recording_id: str) -> tuple[WrappedKey, X25519PrivateKey]:
    """Seal ``data_key`` for ``recipient``.

    Also returns the ephemeral private key so the caller can check the stored
    wrapped key (:func:`check_wrapped`) before forgetting both; nobody can
    unwrap afterwards without the recipient's private key.
    """
    ephemeral = X25519PrivateKey.generate()
    epk = ephemeral.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    rpk = recipient.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    kid = key_id(recipient)
    kek = _kek(ephemeral.exchange(recipient), epk, rpk, recording_id)
    nonce = os.urandom(12)
    sealed = AESGCM(kek).encrypt(nonce, data_key, _aad(recording_id, kid))
    return WrappedKey(recording_id, kid, epk, nonce, sealed), ephemeral


def check_wrapped(wrapped: WrappedKey, ephemeral: X25519PrivateKey, recipient: X25519PublicKey,
                  data_key: bytes) -> bool:
    """True if ``wrapped`` (as read back from disk) opens to ``data_key``.

    Uses the ephemeral private key, which only the writer ever held, so the
    PBX host can prove the key store entry is good without the recipient's
    private key.
    """
    rpk = recipient.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    kek = _kek(ephemeral.exchange(recipient), wrapped.epk, rpk, wrapped.recording_id)
    try:
        opened = AESGCM(kek).decrypt(wrapped.nonce, wrapped.sealed, _aad(wrapped.recording_id, wrapped.key_id))
    except InvalidTag:
        return False
    return secrets.compare_digest(opened, data_key)


def unwrap(wrapped: WrappedKey, private: X25519PrivateKey, recording_id: str) -> bytes:
    """Open a wrapped data key with the recipient's private key."""
    kid = key_id(private.public_key())
    if wrapped.recording_id != recording_id:
        raise WrongKeyError(f"the key store entry belongs to recording {wrapped.recording_id}, not "
                            f"{recording_id}; the key store was tampered with")
    if wrapped.key_id != kid:
        raise WrongKeyError(f"recording {recording_id} is wrapped for key {wrapped.key_id}, "
                            f"but the private key given is {kid}")
    rpk = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    epk = X25519PublicKey.from_public_bytes(wrapped.epk)
    kek = _kek(private.exchange(epk), wrapped.epk, rpk, recording_id)
    try:
        return AESGCM(kek).decrypt(wrapped.nonce, wrapped.sealed, _aad(recording_id, kid))
    except InvalidTag:
        raise WrongKeyError(f"recording {recording_id}: private key {kid} cannot open the wrapped data "
                            f"key; the key store entry was modified or belongs to another key") from None


# -- key pairs -------------------------------------------------------------------


def generate_pair() -> X25519PrivateKey:
    return X25519PrivateKey.generate()


def private_pem(private: X25519PrivateKey, passphrase: bytes | None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption())
    return private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)


def public_pem(public: X25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_public(path: Path) -> X25519PublicKey:
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except FileNotFoundError:
        raise KeyFileError(f"{path}: public key file not found") from None
    except (ValueError, OSError) as exc:
        raise KeyFileError(f"{path}: not a PEM public key ({exc})") from None
    if not isinstance(key, X25519PublicKey):
        raise KeyFileError(f"{path}: is a {type(key).__name__}, callguard vault keys are X25519; "
                        f"create one with `callguard keys generate`")
    return key


def load_private(path: Path, passphrase: bytes | None) -> X25519PrivateKey:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise KeyFileError(f"{path}: private key file not found") from None
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read private key: {exc.strerror}") from None
    try:
        key = serialization.load_pem_private_key(data, password=passphrase or None)
    except TypeError:
        if passphrase:
            raise KeyFileError(f"{path}: this private key is not passphrase-protected; unset the passphrase") from None
        raise KeyFileError(f"{path}: the private key is passphrase-protected; set the passphrase "
                        f"environment variable named by [vault] passphrase_env") from None
    except ValueError:
        raise KeyFileError(f"{path}: cannot load the private key (wrong passphrase or not a PEM key)") from None
    if not isinstance(key, X25519PrivateKey):
        raise KeyFileError(f"{path}: is a {type(key).__name__}, callguard vault keys are X25519")
    return key


@dataclass(frozen=True)
class KeyInfo:
    kid: str
    created_at: float
    activated_at: float | None
    retired_at: float | None
    comment: str

    @property
    def active(self) -> bool:
        return self.activated_at is not None and self.retired_at is None


class Keyring:
    """Public keys by key id, and which one new recordings are wrapped for.

    Layout: ``<dir>/<kid>.pub.pem`` plus ``keyring.json`` holding each key's
    dates and the active key id.  Holds no secrets; safe on the PBX host.
    """

    def __init__(self, directory: Path) -> None:
        self.dir = directory

    def _index(self) -> dict:
        path = self.dir / KEYRING_INDEX
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            return {"active": None, "keys": {}}
        except (ValueError, OSError) as exc:
            raise KeyFileError(f"{path}: keyring index is unreadable ({exc})") from None

    def _save(self, index: dict) -> None:
        write_atomic(self.dir / KEYRING_INDEX, json.dumps(index, indent=2, sort_keys=True).encode(), 0o644)

    def keys(self) -> list[KeyInfo]:
        index = self._index()
        return [KeyInfo(kid, m["created_at"], m.get("activated_at"), m.get("retired_at"), m.get("comment", ""))
                for kid, m in sorted(index["keys"].items(), key=lambda kv: kv[1]["created_at"])]

    def active_id(self) -> str | None:
        return self._index().get("active")

    def public(self, kid: str) -> X25519PublicKey:
        if not _KID.fullmatch(kid):
            raise KeyFileError(f"{kid!r} is not a key id (16 hex digits)")
        return load_public(self.dir / f"{kid}.pub.pem")

    def active(self) -> tuple[str, X25519PublicKey]:
        kid = self.active_id()
        if not kid:
            raise KeyFileError(f"no active vault key in {self.dir}; run `callguard keys generate` (or "
                            f"`callguard keys import PUBLIC.pem --activate` on a PBX host)")
        return kid, self.public(kid)

    def add(self, public: X25519PublicKey, *, activate: bool, comment: str = "",
            now: float | None = None) -> str:
        """Add ``public`` (idempotent) and optionally make it the active key."""
        now = time.time() if now is None else now
        kid = key_id(public)
        self.dir.mkdir(parents=True, exist_ok=True)
        write_atomic(self.dir / f"{kid}.pub.pem", public_pem(public), 0o644)
        index = self._index()
        index["keys"].setdefault(kid, {"created_at": now, "comment": comment})
        if activate:
            previous = index.get("active")
            if previous and previous != kid:
                index["keys"][previous]["retired_at"] = now
            index["keys"][kid]["activated_at"] = now
            index["keys"][kid].pop("retired_at", None)
            index["active"] = kid
        self._save(index)
        return kid


class PrivateKeys:
    """Private keys by key id in one directory (``<kid>.pem``), loaded on demand."""

    def __init__(self, directory: Path | None, passphrase: bytes | None) -> None:
        self.dir = directory
        self._passphrase = passphrase
        self._cache: dict[str, X25519PrivateKey] = {}

    def get(self, kid: str) -> X25519PrivateKey:
        if kid in self._cache:
            return self._cache[kid]
        if self.dir is None:
            raise KeyFileError(f"no private key directory configured; this host cannot decrypt (key {kid}). "
                            f"Set [vault] private_keys on a host allowed to decrypt")
        path = self.dir / f"{kid}.pem"
        if not path.exists():
            raise KeyFileError(f"private key {kid} is not in {self.dir}; recordings wrapped for it can only "
                            f"be read where that key is kept")
        key = load_private(path, self._passphrase)
        if key_id(key.public_key()) != kid:
            raise KeyFileError(f"{path}: holds key {key_id(key.public_key())}, not {kid}; the file was renamed")
        self._cache[kid] = key
        return key

    def available(self, kid: str) -> bool:
        return self.dir is not None and (self.dir / f"{kid}.pem").exists()


class KeyStore:
    """Wrapped data keys, one small file per recording: ``<dir>/<rid[:2]>/<rid>.key``."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory

    def path(self, recording_id: str) -> Path:
        if not _RID.fullmatch(recording_id):
            raise VaultError(f"{recording_id!r} is not a recording id (32 hex digits)")
        return self.dir / recording_id[:2] / f"{recording_id}.key"

    def put(self, wrapped: WrappedKey) -> Path:
        path = self.path(wrapped.recording_id)
        write_atomic(path, wrapped.to_bytes())
        return path

    def get(self, recording_id: str) -> WrappedKey:
        path = self.path(recording_id)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise KeyFileError(f"recording {recording_id}: no wrapped key in the key store ({path}); it was "
                            f"crypto-shredded or the key store is not mounted") from None
        return WrappedKey.from_bytes(data, str(path))

    def exists(self, recording_id: str) -> bool:
        return self.path(recording_id).exists()

    def shred(self, recording_id: str) -> bool:
        """Destroy a recording's wrapped key: overwrite, fsync, unlink, fsync the directory.

        The overwrite defeats casual undelete on ordinary filesystems; on
        copy-on-write or flash storage it may not reach the old blocks, which
        is why the key store must stay out of long-lived backups (see the
        module docstring).  Returns False if there was nothing to destroy.
        """
        path = self.path(recording_id)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return False
        with open(path, "r+b") as handle:
            handle.write(os.urandom(size))
            handle.flush()
            os.fsync(handle.fileno())
        path.unlink()
        _fsync_dir(path.parent)
        return True


__all__ = [
    "KeyFileError",
    "KeyInfo",
    "KeyStore",
    "Keyring",
    "PrivateKeys",
    "WRAP_ALGORITHM",
    "WrappedKey",
    "check_wrapped",
    "generate_pair",
    "key_id",
    "load_private",
    "load_public",
    "private_pem",
    "public_pem",
    "unwrap",
    "wrap",
    "write_atomic",
]
