"""Fixtures: a real SQLite ledger seeded the way the engine writes it, keys, a vault."""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest

from callguard.config import Config, parse_config
from callguard.core.commands import LedgerEntry
from callguard.ledger.writer import Ledger
from callguard.vault.keys import Keyring, generate_pair, private_pem
from callguard.vault.service import Vault, os_user

ME = os_user()
T0 = 1_793_000_000.0  # 2026-10-26, a fixed PBX clock for seeded calls

USERS = {
    ME: "service",
    "alice": "privacy-officer",
    "bob": "qa",
    "carol": "agent",
    "dave": "admin",
    "erin": "legal",
}


class FakeClock:
    """A clock the test moves by hand (retention across months in microseconds)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, days: float = 0, seconds: float = 0) -> None:
        self.now += days * 86400 + seconds


def make_config(tmp: Path, **vault: Any) -> Config:
    return parse_config({
        "ledger": {"url": f"sqlite:///{tmp / 'callguard.sqlite'}"},
        "vault": {"dir": str(tmp / "vault"), "private_keys": str(tmp / "private"), "chunk_kib": 4,
                  "bind_os_user": False, **vault},
        "users": USERS,
        "retention": {"qa": 90, "dispute": 365, "compliance": 2555},
    }, "test.toml", environ={})


def install_key(config: Config, passphrase: bytes | None = None) -> str:
    private = generate_pair()
    ring = Keyring(Path(config.vault.dir) / "keyring")
    kid = ring.add(private.public_key(), activate=True)
    priv_dir = Path(config.vault.private_keys)
    priv_dir.mkdir(parents=True, exist_ok=True)
    (priv_dir / f"{kid}.pem").write_bytes(private_pem(private, passphrase))
    return kid


def call_entries(call_id: str, number: str, t0: float, *, regime: str = "all-party", explicit: bool = True,
                 consent: str | None = "granted", notice_offset: float = 0.8, record: bool = True,
                 payment: tuple[float, float] | None = None, mute_latency: float = 0.05,
                 mute_confirmed: bool = True, duration: float = 30.0, continued: bool = True,
                 extra: list[tuple[str, float, dict]] | None = None, file: str | None = None,
                 recording_allowed: bool = True, notice_len: float = 6.0) -> list[LedgerEntry]:
    """A call's timeline as the engine writes it (see the engine API notes)."""
    chan = f"PJSIP/{call_id}"
    party = {"channel": chan, "number": number, "name": "Test Caller", "role": "caller",
             "jurisdiction": "GB", "where": "GB", "regime": regime, "reason": "test"}
    file = file or f"callguard-{call_id}.wav"
    out = [
        LedgerEntry(call_id, "call-offered", t0, {"channel": chan, "parties": [party]}),
        LedgerEntry(call_id, "rule-applied", t0 + 0.01, {
            "regime": regime, "recording_allowed": recording_allowed, "notice_required": True,
            "explicit_consent": explicit, "lawful_basis_required": regime == "gdpr", "reasons": ["test"],
            "parties": [party]}),
        LedgerEntry(call_id, "notice-started", t0 + notice_offset, {
            "channel": chan, "prompt_id": "notice", "language": "en", "sha256": "ab" * 32,
            "offset_s": notice_offset}),
        LedgerEntry(call_id, "notice-ended", t0 + notice_offset + notice_len, {
            "channel": chan, "offset_s": notice_offset + notice_len, "digits": "1" if consent == "granted" else "2"}),
    ]
    t = t0 + notice_offset + notice_len + 0.2
    if consent is not None:
        out.append(LedgerEntry(call_id, "consent", t, {"decision": consent, "digits": "1", "attempt": 1}))
    if consent in ("declined", "no-input") and continued:
        out.append(LedgerEntry(call_id, "continued", t + 0.1, {"outcome": consent, "destination": None}))
    start = t + 0.3
    if record:
        out.append(LedgerEntry(call_id, "recording-requested", start - 0.1, {"file": file}))
        out.append(LedgerEntry(call_id, "recording-started", start, {"file": file, "confirmed_by": "pbx",
                                                                     "latency_s": 0.1}))
        if payment:
            p0, p1 = payment
            out.append(LedgerEntry(call_id, "payment-started", start + p0, {"source": "ivr"}))
            if mute_confirmed:
                out.append(LedgerEntry(call_id, "recording-muted", start + p0 + mute_latency, {
                    "source": "ivr", "confirmed_by": "pbx", "latency_s": mute_latency}))
            out.append(LedgerEntry(call_id, "payment-ended", start + p1, {"source": "ivr"}))
            if mute_confirmed:
                out.append(LedgerEntry(call_id, "recording-unmuted", start + p1 + 0.04, {
                    "source": "ivr", "confirmed_by": "pbx", "latency_s": 0.04}))
    for kind, offset, data in extra or []:
        out.append(LedgerEntry(call_id, kind, start + offset, data))
    out.sort(key=lambda e: e.at)
    end = t0 + duration
    if record:
        out.append(LedgerEntry(call_id, "recording-stopped", end, {"reason": "hangup"}))
    out.append(LedgerEntry(call_id, "hangup", end + 0.01, {"cause": "16", "state": "done"}))
    return out


def recording_start(entries: list[LedgerEntry]) -> float:
    return next(e.at for e in entries if e.kind == "recording-started")


def write_ledger(config: Config, entries: list[LedgerEntry], chain: str = "asterisk@test") -> None:
    ledger = Ledger.open(config.ledger.url, chain)
    try:
        for entry in entries:
            ledger.append(entry, entry.at + 0.001)
        assert ledger.flush(30)
    finally:
        ledger.close()


@pytest.fixture
def tmp_path(request, tmp_path_factory):
    """Like pytest's tmp_path, but on tmpfs when the host has one.

    The vault fsyncs every key, ciphertext and commit (as it must); on this
    kind of VM disk an fsync costs ~70 ms, which would make the suite crawl
    without testing anything more.
    """
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path_factory.mktemp(request.node.name[:30])
        return
    path = Path(tempfile.mkdtemp(prefix="callguard-vault-", dir=shm))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def config(tmp_path) -> Config:
    cfg = make_config(tmp_path)
    install_key(cfg)
    return cfg


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0 + 3600)


@pytest.fixture
def vault(config, clock):
    # the ledger's schema (and ours) is created by opening for writing
    v = Vault.open(config, clock=clock, create=True)
    yield v
    v.close()


def with_vault(config: Config, **changes: Any) -> Config:
    return dataclasses.replace(config, vault=dataclasses.replace(config.vault, **changes))


__all__ = ["FakeClock", "ME", "T0", "USERS", "call_entries", "install_key", "make_config", "recording_start",
           "with_vault", "write_ledger"]

os.environ.pop("CALLGUARD_VAULT_PASSPHRASE", None)


@pytest.fixture(scope="session")
def small_wav(tmp_path_factory) -> Path:
    """Half a second of real pink noise (sox), generated once; copy it per test."""
    from tests.vault.vault_audio import noise_wav

    return noise_wav(tmp_path_factory.mktemp("small") / "small.wav", 0.5)


def spool_copy(src: Path, directory: Path, name: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(src, directory / name))
