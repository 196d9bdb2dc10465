"""The ledger-signing key on disk: an Ed25519 private key (PEM) and its verifier key beside it.

``<path>`` holds the private key (PKCS#8 PEM, passphrase-protected when a
passphrase is given); ``<path minus .pem>.pub`` holds its signed-note
verifier key (``name+keyid+base64``), the one line a regulator, court or
customer needs to check every checkpoint and bundle.  The key name lives in
the ``.pub`` file, so it travels with the key.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from callguard.evidence.note import NoteError, Signer, Verifier, check_name


class SigningKeyError(Exception):
    """The signing key is missing, unreadable or does not match its .pub file."""


def public_path(private_path: Path) -> Path:
    return private_path.with_suffix(".pub")


def _write_new(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())


def generate(private_path: Path, name: str, passphrase: bytes | None) -> Signer:
    """Make a new key pair; refuses to overwrite either file."""
    try:
        check_name(name)
    except NoteError as exc:
        raise SigningKeyError(str(exc)) from None
    pub = public_path(private_path)
    for path in (private_path, pub):
        if path.exists():
            raise SigningKeyError(f"{path} already exists; not overwriting a signing key (checkpoints signed "
                                  "with it could no longer be checked)")
    private = Ed25519PrivateKey.generate()
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption())
    _write_new(private_path, private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                   encryption), 0o600)
    signer = Signer(name, private)
    _write_new(pub, (signer.verifier.vkey + "\n").encode(), 0o644)
    return signer


def load_verifier(path: Path) -> Verifier:
    """A verifier key file (``.pub``: one ``name+keyid+base64`` line)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SigningKeyError(f"{path}: verifier key file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SigningKeyError(f"{path}: cannot read the verifier key ({exc})") from None
    try:
        return Verifier.from_vkey(text.strip())
    except NoteError as exc:
        raise SigningKeyError(f"{path}: {exc}") from None


def load_signer(private_path: Path, passphrase: bytes | None) -> Signer:
    """The signer: the private key checked against the verifier key written beside it."""
    try:
        data = private_path.read_bytes()
    except FileNotFoundError:
        raise SigningKeyError(f"{private_path}: ledger signing key not found; create it with "
                              "`callguard keys generate --kind ledger-signing`") from None
    except OSError as exc:
        raise SigningKeyError(f"{private_path}: cannot read the signing key: {exc.strerror}") from None
    try:
        private = serialization.load_pem_private_key(data, password=passphrase or None)
    except TypeError:
        raise SigningKeyError(f"{private_path}: the key is passphrase-protected; set the environment variable "
                              "named by [evidence] passphrase_env") from None
    except ValueError:
        raise SigningKeyError(f"{private_path}: cannot load the key (wrong passphrase or not a PEM key)") from None
    if not isinstance(private, Ed25519PrivateKey):
        raise SigningKeyError(f"{private_path}: is a {type(private).__name__}, the ledger signs with Ed25519")
    verifier = load_verifier(public_path(private_path))
    signer = Signer(verifier.name, private)
    if signer.verifier.vkey != verifier.vkey:
        raise SigningKeyError(f"{public_path(private_path)} is not the public half of {private_path}")
    return signer


__all__ = ["SigningKeyError", "generate", "load_signer", "load_verifier", "public_path"]
