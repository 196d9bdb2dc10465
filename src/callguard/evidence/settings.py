"""``[evidence]``: signed checkpoints, witnesses, and how long personal data in the ledger stays readable."""

from __future__ import annotations

from dataclasses import field
from typing import Annotated

from callguard.config_schema import rule, section


def _https(url: str) -> bool:
    return url.startswith("https://") or url.startswith("http://127.") or url.startswith("http://localhost")


@section
class EvidenceConfig:
    """Checkpoints the operator cannot silently take back, and personal data that can be forgotten.

    The running listener signs a checkpoint (C2SP tlog-checkpoint) of every
    chain's Merkle tree each ``checkpoint_interval_s`` and at shutdown,
    with the Ed25519 key ``signing_key`` (make it with
    ``callguard keys generate --kind ledger-signing``; its public verifier
    key is written beside it as ``<name>.pub``).  Each checkpoint is
    published to ``witness_dir`` (one file per checkpoint, for shipping
    elsewhere) and to every ``witness_urls`` entry (a C2SP tlog-witness
    submission prefix; the witness checks consistency itself and cosigns).

    ``seal_personal_data``: numbers and names in ledger entries are stored
    sealed under a per-call, per-subject key (see ``callguard.evidence.pii``);
    ``dsar erase`` and ``retention sweep`` destroy the key.
    ``retention_days`` (purpose -> days) says how long that data stays
    readable; a purpose not listed keeps it until an erasure request (how
    long evidence must stay attributable is the site's legal decision).
    """

    signing_key: str = "callguard-ledger-signing.pem"
    #: env var with the signing key's passphrase (unset: the key file is not encrypted)
    passphrase_env: Annotated[str, rule(str.isidentifier, "{value!r} is not an environment variable name")] = \
        "CALLGUARD_LEDGER_SIGNING_PASSPHRASE"
    #: checkpoint origin is "<origin>/<chain id>"
    origin: Annotated[str, rule(lambda v: bool(v) and " " not in v and "+" not in v and "\n" not in v,
                                "{value!r}: use a non-empty name without spaces or '+', e.g. example.com/callguard")] = \
        "callguard"
    checkpoint_interval_s: Annotated[float, rule(lambda v: v >= 1, "must be at least 1 second")] = 60.0
    witness_dir: str = ""  #: a directory (ideally a mount shipped elsewhere) receiving every checkpoint
    #: C2SP tlog-witness submission prefixes (POST <prefix>/add-checkpoint)
    witness_urls: list[Annotated[str, rule(_https, "{value!r} is not an https:// URL")]] = field(default_factory=list)
    witness_ca_file: str = ""  #: CA bundle for the witnesses' certificates; empty: the system's
    witness_timeout_s: Annotated[float, rule(lambda v: v > 0, "must be positive")] = 10.0
    seal_personal_data: bool = True
    retention_days: dict[str, int] = field(default_factory=dict)


__all__ = ["EvidenceConfig"]
