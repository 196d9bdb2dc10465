"""Reading sealed personal data back: keys by id, openings, and revealing data for display.

See :mod:`callguard.evidence.pii` for the format; the keys live in
``pii_keys`` until crypto-shredded (:mod:`callguard.ledger.erasure`), after
which a value reads as ``[erased]``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from sqlalchemy import Connection, select

from callguard.evidence import pii
from callguard.ledger.models import PiiKey


def keys_for(connection: Connection, kids: Iterable[str]) -> dict[str, bytes]:
    wanted = sorted(set(kids))
    found: dict[str, bytes] = {}
    for start in range(0, len(wanted), 500):
        for kid, key in connection.execute(select(PiiKey.kid, PiiKey.key).where(PiiKey.kid.in_(wanted[start:start + 500]))):
            found[kid] = bytes(key)
    return found


def openings_of(connection: Connection, data: Iterable[object]) -> dict[str, dict[str, str] | None]:
    """commit -> opening (None when the key is gone) for every sealed value in ``data``."""
    sealed = [s for d in data for s in pii.sealed_values(d)]
    keys = keys_for(connection, (s["kid"] for s in sealed))
    return {s["commit"]: (pii.opening(s, keys[s["kid"]]) if s["kid"] in keys else None) for s in sealed}


class Revealer:
    """Opens sealed personal data for display (``ledger show``, ``calls``, DSAR timelines): plain or ``[erased]``."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def data(self, values: list[object]) -> list[object]:
        """Each of ``values`` (entry data, index texts) with its sealed parts opened."""
        parsed = [self._parse(v) for v in values]
        openings = openings_of(self.connection, parsed)
        return [pii.reveal(v, openings) for v in parsed]

    @staticmethod
    def _parse(value: object) -> object:
        if isinstance(value, str) and value.startswith('{"box"'):
            try:
                loaded = json.loads(value)
            except ValueError:
                return value
            return loaded if pii.is_sealed(loaded) else value
        return value



__all__ = ["Revealer", "keys_for", "openings_of"]
