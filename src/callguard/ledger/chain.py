"""The hash chain: how an entry's hash is computed, in one place.

An entry's hash is the SHA-256 (hex) of this canonical JSON document::

    {"call_id": ..., "chain_id": ..., "data": {...}, "kind": ...,
     "pbx_time_us": <int>, "prev_hash": "<hex>", "received_at_us": <int>,
     "seq": <int>}

serialised with sorted keys, no whitespace (``separators=(",", ":")``),
``ensure_ascii=True`` and no NaN/Infinity, encoded as UTF-8 (pure ASCII).
``data`` is the JSON object stored in the entry's ``data`` column, parsed;
floats inside it use Python's shortest round-trip repr, so parse-and-dump
gives the same text back.  Times are integer microseconds so they survive
any database exactly.  The first entry of a chain has ``prev_hash`` =
:data:`GENESIS_HASH`.

Anyone can re-check an exported ledger with this paragraph and ``hashlib``;
nothing here depends on the database.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from typing import Any

#: ``prev_hash`` of the first entry of every chain.
GENESIS_HASH = "0" * 64


def to_us(seconds: float) -> int:
    """Epoch seconds -> integer microseconds (PBX clocks give microseconds)."""
    return round(seconds * 1_000_000)


def _json_safe(value: Any) -> Any:
    """Replace what strict JSON cannot hold (NaN, inf, odd objects) by text.

    The engine only writes plain data, but evidence must never be dropped
    because one value is odd, so we keep a readable stand-in instead.
    """
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_json_safe(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def encode_data(data: Mapping[str, Any]) -> str:
    """Serialise an entry's data for the ``data`` column.

    Readable UTF-8 when possible; strings that cannot be UTF-8 encoded (lone
    surrogates from a mangled caller name) fall back to ASCII escapes.
    Either way ``json.loads`` gives back exactly the object that is hashed.
    """
    try:
        text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False)
    except (TypeError, ValueError):
        text = json.dumps(_json_safe(data), sort_keys=True, separators=(",", ":"),
                          ensure_ascii=False, allow_nan=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return text


def canonical_bytes(*, chain_id: str, seq: int, call_id: str, kind: str, pbx_time_us: int,
                    received_at_us: int, data: Any, prev_hash: str) -> bytes:
    """The exact bytes that are hashed (see the module docstring)."""
    document = {
        "chain_id": chain_id,
        "seq": seq,
        "call_id": call_id,
        "kind": kind,
        "pbx_time_us": pbx_time_us,
        "received_at_us": received_at_us,
        "data": data,
        "prev_hash": prev_hash,
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False).encode("ascii")


def entry_hash(*, chain_id: str, seq: int, call_id: str, kind: str, pbx_time_us: int,
               received_at_us: int, data: Any, prev_hash: str) -> str:
    """SHA-256 hex digest of :func:`canonical_bytes`."""
    return hashlib.sha256(canonical_bytes(
        chain_id=chain_id, seq=seq, call_id=call_id, kind=kind, pbx_time_us=pbx_time_us,
        received_at_us=received_at_us, data=data, prev_hash=prev_hash,
    )).hexdigest()


def stored_entry_hash(*, chain_id: str, seq: int, call_id: str, kind: str, pbx_time_us: int,
                      received_at_us: int, data_text: str, prev_hash: str) -> str | None:
    """The hash straight from the stored ``data`` text, when that text is canonical ASCII JSON.

    The writer stores data sorted and compact (:func:`encode_data`), so for
    ASCII text the canonical document is a concatenation and ``ledger verify``
    skips parsing and re-serialising it.  None when the text is not ASCII
    or holds DEL (``\x7f``: the one ASCII character the stored form keeps
    raw and the canonical form escapes as ``\u007f``);
    a result that differs from the stored hash must be re-checked with
    :func:`entry_hash` on the parsed data (the text may be valid but not canonical).
    """
    if not data_text.isascii() or "\x7f" in data_text:
        return None
    dumps = json.dumps
    document = (f'{{"call_id":{dumps(call_id)},"chain_id":{dumps(chain_id)},"data":{data_text},'
                f'"kind":{dumps(kind)},"pbx_time_us":{int(pbx_time_us)},"prev_hash":{dumps(prev_hash)},'
                f'"received_at_us":{int(received_at_us)},"seq":{int(seq)}}}')
    return hashlib.sha256(document.encode("ascii")).hexdigest()


__all__ = ["GENESIS_HASH", "canonical_bytes", "encode_data", "entry_hash", "stored_entry_hash", "to_us"]
