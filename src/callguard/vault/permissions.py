"""Vault permissions and the default roles (no imports beyond the stdlib: config uses them).

A permission is one kind of act on the vault; a role is a named set of
permissions; ``[users]`` maps a person (or service account) to one role.
Exporting is its own permission, separate from listening, because a copy
that leaves the vault escapes every control here.
"""

from __future__ import annotations

#: Every permission, with what it allows (shown by `callguard recordings roles`).
PERMISSIONS: dict[str, str] = {
    "list": "see the catalogue: which recordings exist, for which calls, and their metadata",
    "listen": "decrypt a recording for playback (streamed, not saved)",
    "export": "decrypt a recording into a file that leaves the vault",
    "delete": "crypto-shred a recording before its retention ends",
    "hold": "place and release legal holds",
    "retention": "run the retention sweep (delete what has expired)",
    "dsar": "open, export, erase and close data-subject requests",
    "audit": "run the monthly audit and integrity checks",
    "ingest": "encrypt recordings into the vault (the PBX host's service account)",
    "keys": "re-wrap recordings for a new key (needs the old private key)",
    "transcript:read": "decrypt call transcripts to read or search them (already redacted of card data)",
    # the console and API (callguard.web) over the running listener
    "live": "see every live call: parties, rule, consent outcome, recording and pause state",
    "control": "pause, resume and start/end a payment on any live call",
    "control-own": "pause, resume and start/end a payment on live calls one of the user's endpoints is on",
    "evidence": "read call timelines in the ledger and check its hash chains",
}

#: Used when callguard.toml has no [roles] table.  Separation of duties: the
#: admin runs the machinery but cannot listen; the privacy officer answers
#: requests; legal places holds; nobody but a privacy officer exports.
#: Agents act only on their own calls; compliance is the console's name for
#: the privacy officer's desk (timelines, listening, requests, the audit).
DEFAULT_ROLES: dict[str, list[str]] = {
    "agent": ["control-own"],
    "supervisor": ["list", "listen", "transcript:read", "live", "control", "evidence"],
    "qa": ["list", "listen", "transcript:read"],
    "legal": ["list", "hold"],
    "compliance": ["list", "listen", "export", "hold", "dsar", "audit", "transcript:read", "live", "evidence"],
    "privacy-officer": ["list", "listen", "export", "delete", "hold", "dsar", "audit", "transcript:read", "evidence"],
    "admin": ["list", "retention", "audit", "keys", "live", "evidence"],
    "service": ["ingest", "retention"],
}

#: Actions whose reason must say why (content access and irreversible acts).
REASON_REQUIRED = frozenset({"listen", "export", "delete", "hold-place", "hold-release", "dsar-open",
                             "dsar-export", "dsar-erase", "dsar-close", "keys-rewrap", "transcript-read",
                             "transcript-search"})
MIN_REASON_LEN = 8

__all__ = ["DEFAULT_ROLES", "MIN_REASON_LEN", "PERMISSIONS", "REASON_REQUIRED"]
