"""Signed notes and transparency-log checkpoints (C2SP signed-note, tlog-checkpoint).

The same text formats as Go's ``golang.org/x/mod/sumdb/note`` and every
transparency-dev / Sigsum tool, so a checkpoint callguard signs can be
checked by any of them and submitted to standard witnesses:

* a **note** is UTF-8 text ending in a newline, a blank line, then one or
  more signature lines ``— <key name> <base64(4-byte key ID || signature)>``;
* an Ed25519 **key ID** is ``SHA-256(name || 0x0A || 0x01 || public key)[:4]``;
* a **verifier key** (``vkey``) is ``<name>+<key ID hex>+<base64(0x01 || public key)>``;
* a **checkpoint** is a note whose text is ``<origin>\\n<tree size>\\n<base64 root>\\n``
  followed by optional extension lines.  callguard's origin is
  ``<prefix>/<chain id>`` and it adds one extension line, ``time <unix seconds>``.

Pure: keys are passed in, nothing is read or written here.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

ED25519 = 0x01
COSIGNATURE_V1 = 0x04
DASH = "\u2014"
MAX_SIGNATURES = 100
_NAME = re.compile(r"[^\s+]+")
_TIME = re.compile(r"time (0|[1-9][0-9]*)")


class NoteError(ValueError):
    """A note, key or checkpoint is malformed or its signature does not verify."""


def _raw(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(name: str, public_raw: bytes, sig_type: int = ED25519) -> bytes:
    """The 4-byte key ID of a named key (signed-note: SHA-256(name || LF || type || key)[:4])."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([sig_type]) + public_raw).digest()[:4]


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise NoteError(f"key name {name!r} must be non-empty, without spaces or '+'")
    return name


@dataclass(frozen=True)
class Verifier:
    """A named Ed25519 public key that checks note signatures."""

    name: str
    public: Ed25519PublicKey

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, _raw(self.public))

    @property
    def vkey(self) -> str:
        return f"{self.name}+{self.key_id.hex()}+{base64.b64encode(bytes([ED25519]) + _raw(self.public)).decode()}"

    @classmethod
    def from_vkey(cls, vkey: str) -> Verifier:
        """Parse ``name+hex key ID+base64(0x01 || key)``, checking the key ID."""
        parts = vkey.strip().split("+", 2)  # the base64 key itself may contain "+"
        if len(parts) != 3:
            raise NoteError(f"not a verifier key (name+keyid+key): {vkey.strip()[:80]!r}")
        name, hex_id, material = parts
        check_name(name)
        try:
            raw = base64.b64decode(material, validate=True)
            wanted = bytes.fromhex(hex_id)
        except (binascii.Error, ValueError):
            raise NoteError(f"verifier key {name!r}: key ID or key is not valid hex / base64") from None
        if len(wanted) != 4 or len(raw) != 33 or raw[0] != ED25519:
            raise NoteError(f"verifier key {name!r} is not an Ed25519 note key (type 0x01, 32 bytes)")
        if key_id(name, raw[1:]) != wanted:
            raise NoteError(f"verifier key {name!r}: the key ID {hex_id} does not match the key")
        return cls(name, Ed25519PublicKey.from_public_bytes(raw[1:]))

    def verify(self, text: bytes, signature: bytes) -> bool:
        try:
            self.public.verify(signature, text)
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True)
class Signer:
    """A named Ed25519 private key that signs notes."""

    name: str
    private: Ed25519PrivateKey

    def __post_init__(self) -> None:
        check_name(self.name)

    @property
    def verifier(self) -> Verifier:
        return Verifier(self.name, self.private.public_key())

    def signature_line(self, text: str) -> str:
        blob = self.verifier.key_id + self.private.sign(text.encode())
        return f"{DASH} {self.name} {base64.b64encode(blob).decode()}\n"


def _check_text(text: str) -> None:
    if not text.endswith("\n"):
        raise NoteError("note text must end with a newline")
    if any(ord(ch) < 0x20 and ch != "\n" for ch in text):
        raise NoteError("note text must not contain control characters")


def sign(text: str, *signers: Signer) -> str:
    """``text`` as a signed note."""
    _check_text(text)
    return text + "\n" + "".join(s.signature_line(text) for s in signers)


@dataclass(frozen=True)
class Signature:
    name: str
    key_id: bytes
    signature: bytes
    line: str


def split(note: str) -> tuple[str, list[Signature]]:
    """(text, signatures) of a note, without checking any signature."""
    if not note.endswith("\n"):
        raise NoteError("a signed note must end with a newline")
    cut = note.rfind("\n\n")
    if cut < 0:
        raise NoteError("not a signed note: no blank line before the signatures")
    text, lines = note[:cut + 1], note[cut + 2:].splitlines()
    _check_text(text)
    if not lines:
        raise NoteError("the note has no signature lines")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError(f"the note has {len(lines)} signatures (at most {MAX_SIGNATURES} are read)")
    signatures = []
    for line in lines:
        parts = line.split(" ")
        if len(parts) != 3 or parts[0] != DASH:
            raise NoteError(f"malformed signature line {line[:80]!r}")
        try:
            blob = base64.b64decode(parts[2], validate=True)
        except binascii.Error:
            raise NoteError(f"signature of {parts[1]!r} is not base64") from None
        if len(blob) < 5:
            raise NoteError(f"signature of {parts[1]!r} is too short")
        signatures.append(Signature(parts[1], blob[:4], blob[4:], line + "\n"))
    return text, signatures


def open_note(note: str, *verifiers: Verifier) -> str:
    """The note's text, once a signature from one of ``verifiers`` verifies.

    As the spec says: signatures of unknown keys are ignored, a known key
    whose signature fails rejects the note, and a note with no known
    signature is rejected.
    """
    text, signatures = split(note)
    known = {(v.name, v.key_id): v for v in verifiers}
    verified = False
    for sig in signatures:
        verifier = known.get((sig.name, sig.key_id))
        if verifier is None:
            continue
        if not verifier.verify(text.encode(), sig.signature):
            raise NoteError(f"the signature of {sig.name} (key {sig.key_id.hex()}) does not verify: the note "
                            "was altered after signing")
        verified = True
    if not verified:
        names = ", ".join(f"{s.name}+{s.key_id.hex()}" for s in signatures)
        wanted = ", ".join(f"{v.name}+{v.key_id.hex()}" for v in verifiers)
        raise NoteError(f"no signature from the trusted key ({wanted}); the note is signed by {names}")
    return text


@dataclass(frozen=True)
class Checkpoint:
    """A tree head: which log, how many leaves, their root hash, and when (tlog-checkpoint)."""

    origin: str
    size: int
    root_hash: bytes
    timestamp: int | None = None  #: our "time <unix seconds>" extension line
    extensions: tuple[str, ...] = ()  #: any other extension lines, kept verbatim

    def text(self) -> str:
        lines = [self.origin, str(self.size), base64.b64encode(self.root_hash).decode()]
        if self.timestamp is not None:
            lines.append(f"time {self.timestamp}")
        lines.extend(self.extensions)
        return "\n".join(lines) + "\n"

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        lines = text.split("\n")
        if len(lines) < 4 or lines[-1] != "" or any(not line for line in lines[:-1]):
            raise NoteError("a checkpoint needs origin, tree size and root hash lines, none of them empty")
        origin, size_text, root_text, *rest = lines[:-1]
        if not re.fullmatch(r"0|[1-9][0-9]*", size_text):
            raise NoteError(f"checkpoint tree size {size_text[:40]!r} is not a decimal number")
        try:
            root_hash = base64.b64decode(root_text, validate=True)
        except binascii.Error:
            raise NoteError("checkpoint root hash is not base64") from None
        if len(root_hash) != 32:
            raise NoteError(f"checkpoint root hash is {len(root_hash)} bytes, not 32")
        timestamp, extensions = None, []
        for line in rest:
            match = _TIME.fullmatch(line)
            if match and timestamp is None:
                timestamp = int(match.group(1))
            else:
                extensions.append(line)
        return cls(origin, int(size_text), root_hash, timestamp, tuple(extensions))


def sign_checkpoint(checkpoint: Checkpoint, signer: Signer) -> str:
    return sign(checkpoint.text(), signer)


def open_checkpoint(note: str, *verifiers: Verifier) -> Checkpoint:
    """Verify a signed checkpoint and parse it."""
    return Checkpoint.parse(open_note(note, *verifiers))


def cosignature_line(checkpoint_text: str, name: str, private: Ed25519PrivateKey, timestamp: int) -> str:
    """A tlog-cosignature/v1 Ed25519 cosignature line over a checkpoint (what a witness returns)."""
    message = f"cosignature/v1\ntime {timestamp}\n{checkpoint_text}".encode()
    kid = key_id(name, _raw(private.public_key()), COSIGNATURE_V1)
    blob = kid + timestamp.to_bytes(8, "big") + private.sign(message)
    return f"{DASH} {name} {base64.b64encode(blob).decode()}\n"


__all__ = [
    "Checkpoint",
    "NoteError",
    "Signature",
    "Signer",
    "Verifier",
    "check_name",
    "cosignature_line",
    "key_id",
    "open_checkpoint",
    "open_note",
    "sign",
    "sign_checkpoint",
    "split",
]
