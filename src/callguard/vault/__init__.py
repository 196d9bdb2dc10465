"""The recording vault: what happens to a recording after the call.

* :mod:`~callguard.vault.envelope` - the encrypted file format (chunked AES-256-GCM).
* :mod:`~callguard.vault.keys` - X25519 key pairs, data-key wrapping, key store, crypto-shredding.
* :mod:`~callguard.vault.ingest` - encrypt, verify, catalogue, ledger, remove plaintext;
  :class:`VaultIngestor` / :func:`on_recording_stopped` for the adapters.
* :mod:`~callguard.vault.service` - :class:`Vault`: database, keys, roles, access log.
* :mod:`~callguard.vault.recordings` - list, listen, export, delete, verify, DTMF rescan.
* :mod:`~callguard.vault.retention`, :mod:`~callguard.vault.holds`, :mod:`~callguard.vault.deletion`.
* :mod:`~callguard.vault.dsar` - data-subject requests.
* :mod:`~callguard.vault.dtmf`, :mod:`~callguard.vault.leaks` - keypad tones in recordings.
* :mod:`~callguard.vault.audit`, :mod:`~callguard.vault.report_html` - the monthly audit.

Importing this package is cheap (``config`` imports the permission table
from here); the names below load their modules on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "Vault": "callguard.vault.service",
    "AccessDenied": "callguard.vault.service",
    "VaultError": "callguard.vault.envelope",
    "ingest_file": "callguard.vault.ingest",
    "VaultIngestor": "callguard.vault.ingest",
    "on_recording_stopped": "callguard.vault.ingest",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'callguard.vault' has no attribute {name!r}")


__all__ = sorted(_LAZY)
