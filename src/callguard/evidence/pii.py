"""Personal data in ledger entries: committed by salted hash, readable only while its key exists.

A sealed value replaces a number or name inside an entry's data::

    {"sealed": "pii/1", "kid": "<32 hex>", "commit": "<64 hex>", "box": "<base64>"}

* ``commit`` = SHA-256(``"callguard-pii/1\\n"`` || salt || UTF-8 value), hex, with
  a random 16-byte salt: it binds the entry to the value without revealing
  it (the salt defeats guessing a phone number by brute force);
* ``box`` = base64(nonce || AES-256-GCM(key, nonce, JSON {"salt", "value"},
  AAD = kid || commit)) under the per-call, per-subject key ``kid``.

The entry's hash, the chain and the Merkle tree cover the sealed form, so
destroying the key (a DELETE of one ``pii_keys`` row: crypto-shredding)
makes the value unreadable while every chain, tree and bundle still
verifies.  An *opening* ``{"salt", "value"}`` (what a bundle may carry)
proves the value against the commitment without any key.

Pure: keys are passed in; the ledger stores them (``ledger.models.PiiKey``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
from collections.abc import Iterator, Mapping
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

TAG = "pii/1"
ERASED = "[erased]"
_COMMIT_PREFIX = b"callguard-pii/1\n"
_SUBJECT_PREFIX = "callguard-subject/1\n"
#: A number this long (digits) is also looked for inside other text of the call (reasons, channel names).
MIN_SCRUB_DIGITS = 6


def digits(number: object) -> str:
    return "".join(ch for ch in number if ch.isascii() and ch.isdigit()) if isinstance(number, str) else ""


def subject_of(number: object) -> str | None:
    """The lookup hash of a phone number's digits (None without digits): how a request finds its keys."""
    key = digits(number)
    return hashlib.sha256((_SUBJECT_PREFIX + key).encode()).hexdigest() if key else None


def commitment(salt: bytes, value: str) -> str:
    return hashlib.sha256(_COMMIT_PREFIX + salt + value.encode("utf-8", "surrogatepass")).hexdigest()


def new_key() -> tuple[str, bytes]:
    return secrets.token_hex(16), AESGCM.generate_key(bit_length=256)


def seal(value: str, kid: str, key: bytes) -> dict[str, str]:
    salt = os.urandom(16)
    commit = commitment(salt, value)
    nonce = os.urandom(12)
    plain = json.dumps({"salt": base64.b64encode(salt).decode(), "value": value}, ensure_ascii=True).encode()
    box = nonce + AESGCM(key).encrypt(nonce, plain, (kid + commit).encode())
    return {"sealed": TAG, "kid": kid, "commit": commit, "box": base64.b64encode(box).decode()}


def is_sealed(value: object) -> bool:
    return isinstance(value, Mapping) and value.get("sealed") == TAG and "commit" in value


def opening(sealed: Mapping[str, str], key: bytes) -> dict[str, str] | None:
    """The {"salt", "value"} inside a sealed value, or None if the key does not open it."""
    try:
        box = base64.b64decode(sealed["box"])
        plain = AESGCM(key).decrypt(box[:12], box[12:], (sealed["kid"] + sealed["commit"]).encode())
        result = json.loads(plain)
    except (InvalidTag, ValueError, KeyError, TypeError):
        return None
    return result if check_opening(sealed["commit"], result) else None


def check_opening(commit: str, opened: Mapping[str, Any]) -> bool:
    """True if ``opened`` (salt, value) is what ``commit`` commits to."""
    try:
        salt = base64.b64decode(opened["salt"], validate=True)
        return isinstance(opened["value"], str) and commitment(salt, opened["value"]) == commit
    except (KeyError, TypeError, ValueError):
        return False


def sealed_values(data: object) -> Iterator[Mapping[str, str]]:
    """Every sealed value anywhere inside ``data``."""
    if is_sealed(data):
        yield data  # type: ignore[misc]
    elif isinstance(data, Mapping):
        for value in data.values():
            yield from sealed_values(value)
    elif isinstance(data, list):
        for value in data:
            yield from sealed_values(value)


def reveal(data: Any, openings: Mapping[str, Mapping[str, str] | None]) -> Any:
    """``data`` with each sealed value replaced by its plain value (commit -> opening), or :data:`ERASED`."""
    if is_sealed(data):
        opened = openings.get(data["commit"])
        return opened["value"] if opened else ERASED
    if isinstance(data, Mapping):
        return {k: reveal(v, openings) for k, v in data.items()}
    if isinstance(data, list):
        return [reveal(v, openings) for v in data]
    return data


def _is_party(value: Mapping[str, Any]) -> bool:
    return "number" in value and any(k in value for k in ("channel", "role", "jurisdiction", "regime"))


class Sealer:
    """Seals the personal data of entries as the writer encodes them (one per ledger writer).

    Remembers, per call, one key per subject (phone number) and the numbers
    seen, so later entries of the call that mention a number in free text
    (a rule's reasons, a FreeSWITCH channel name) are sealed too.
    """

    def __init__(self, max_calls: int = 20000) -> None:
        self.max_calls = max_calls
        self._calls: dict[str, dict[str | None, tuple[str, bytes]]] = {}
        #: call -> raw number -> (its digits, subject)
        self._numbers: dict[str, dict[str, tuple[str, str | None]]] = {}

    def _key(self, call_id: str, subject: str | None, new: list[dict[str, Any]]) -> tuple[str, bytes]:
        keys = self._calls.setdefault(call_id, {})
        found = keys.get(subject)
        if found is None:
            kid, key = new_key()
            found = keys[subject] = (kid, key)
            new.append({"kid": kid, "call_id": call_id, "subject": subject, "key": key})
        return found

    def forget(self, kids: set[str]) -> None:
        """Drop keys that were never committed (a failed transaction) so they are made again."""
        for keys in self._calls.values():
            for subject in [s for s, (kid, _) in keys.items() if kid in kids]:
                del keys[subject]

    def seal(self, call_id: str, data: Mapping[str, Any]) -> tuple[Any, list[dict[str, Any]], dict[str, str | None]]:
        """(sealed data, new key rows, kid -> subject) for one entry of ``call_id``."""
        if len(self._calls) > self.max_calls:
            for old in list(self._calls)[: self.max_calls // 2]:
                self._calls.pop(old, None)
                self._numbers.pop(old, None)
        new: list[dict[str, Any]] = []
        numbers = self._numbers.setdefault(call_id, {})
        subjects: dict[str, str | None] = {}

        def walk(value: Any) -> Any:
            if is_sealed(value):
                return value
            if isinstance(value, Mapping):
                if _is_party(value) and not is_sealed(value.get("number")):
                    number = value.get("number")
                    subject = subject_of(number)
                    kid, key = self._key(call_id, subject, new)
                    subjects[kid] = subject
                    if isinstance(number, str) and len(digits(number)) >= MIN_SCRUB_DIGITS:
                        numbers[number] = (digits(number), subject)
                    out = {k: walk(v) for k, v in value.items() if k not in ("number", "name")}
                    for field in ("number", "name"):
                        if isinstance(value.get(field), str) and value[field]:
                            out[field] = seal(value[field], kid, key)
                        elif field in value:
                            out[field] = value[field]
                    return out
                return {k: walk(v) for k, v in value.items()}
            if isinstance(value, list):
                return [walk(v) for v in value]
            if isinstance(value, str) and numbers:
                value_digits = digits(value)  # "+44 20 7946 0123" mentions +442079460123 too
                for number, (plain_digits, subject) in numbers.items():
                    if number in value or plain_digits in value_digits:
                        kid, key = self._key(call_id, subject, new)
                        subjects[kid] = subject
                        return seal(value, kid, key)
            return value

        # Parties first (they teach us the numbers); a second pass only when this entry taught us new ones.
        known = len(numbers)
        sealed = walk(data)
        if len(numbers) > known:
            sealed = walk(sealed)
        return sealed, new, subjects


__all__ = ["ERASED", "TAG", "Sealer", "check_opening", "commitment", "digits", "is_sealed", "new_key", "opening",
           "reveal", "seal", "sealed_values", "subject_of"]
