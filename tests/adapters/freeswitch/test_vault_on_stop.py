"""`callguard run freeswitch` puts each finished recording into the vault ([vault] ingest_on_stop).

The real listener against FakeFreeSWITCH (both ESL directions over TCP), a
real SQLite ledger, a key pair made through the vault's key API, and a real
WAV that the fake's record_session writes at the path the listener gave it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from callguard.adapters.freeswitch.listener import FreeSwitchListener
from callguard.adapters.freeswitch.commands import directory_prompts
from callguard.ledger import Ledger
from callguard.ledger.queries import timeline
from callguard.testing.fake_freeswitch import FakeFreeSWITCH
from callguard.vault.keys import Keyring, generate_pair, private_pem
from callguard.vault.models import Recording
from callguard.vault.recordings import export
from callguard.vault.service import Vault, os_user

from .conftest import PASSWORD, SOUNDS, Rig, make_config, scenario


@pytest.fixture(scope="module", autouse=True)
def _warm_process() -> None:
    """Once per process, outside the timed tests: phonenumbers' metadata and numpy (the DTMF scan).

    The listener loads the first on start-up and the ingest thread imports the second on its
    first recording; both take seconds on a loaded machine and are not what these tests measure.
    """
    from callguard.config import Config
    from callguard.vault import dtmf  # noqa: F401
    from callguard.wiring import build_policy

    build_policy(Config()).warm_up()


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    """A FreeSWITCH rig whose ledger, spool directory and vault share one tmpfs directory."""
    shm = Path("/dev/shm")
    base = Path(tempfile.mkdtemp(prefix="callguard-fs-ingest-",
                                 dir=str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None))
    fake = FakeFreeSWITCH(password=PASSWORD)
    fake.write_recordings = True
    await fake.start()
    url = f"sqlite:///{base / 'callguard.sqlite'}"
    ledger = Ledger.open(url, "freeswitch@test", batch_wait_ms=0.5)
    config = make_config(fake.port, freeswitch={"recording_dir": str(base / "spool")}, ledger={"url": url},
                         vault={"dir": str(base / "vault"), "private_keys": str(base / "private")},
                         users={os_user(): "service", "alice": "privacy-officer"})
    r = Rig(fake, config, ledger)
    r.base = base  # type: ignore[attr-defined]
    try:
        yield r
    finally:
        if r.listener is not None:
            await asyncio.wait_for(r.listener.stop(), 30)
        await asyncio.wait_for(fake.stop(), 30)
        ledger.close(5)
        shutil.rmtree(base, ignore_errors=True)


def install_key(base: Path) -> str:
    """What `callguard keys generate --no-passphrase` does, through the vault's key API."""
    private = generate_pair()
    kid = Keyring(base / "vault" / "keyring").add(private.public_key(), activate=True)
    (base / "private").mkdir()
    (base / "private" / f"{kid}.pem").write_bytes(private_pem(private, None))
    return kid


async def start(rig: Rig) -> FreeSwitchListener:
    listener = rig.listener = FreeSwitchListener(rig.config, rig.ledger, prompts=rig.prompts,
                                                 prompt_path=directory_prompts(SOUNDS))
    await listener.start()
    rig.fake.watch(listener.busy)
    rig.fake.socket_address = ("127.0.0.1", listener.outbound_port or 0)
    await asyncio.wait_for(listener.connected.wait(), 10)
    return listener


async def until(predicate: Any, what: str, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


CONSENTED = [{"at": 2.5, "press": "1"}, {"at": 5, "hotkey": "pause"}, {"at": 7, "hotkey": "resume"},
             {"at": 9, "hangup": "caller"}]


async def test_without_a_key_the_listener_warns_and_leaves_the_file(rig, caplog):
    caplog.set_level(logging.INFO, logger="callguard.vault")
    listener = await start(rig)
    assert listener.ingest is None
    record = await rig.play(scenario([{"at": 2.5, "press": "1"}, {"at": 5, "hangup": "caller"}]))
    await listener.stop()
    rig.listener = None
    warnings = [r.getMessage() for r in caplog.records if r.name == "callguard.vault" and r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "no active vault key" in warnings[0] and "callguard keys generate" in warnings[0]
    plaintext = Path(record.recordings[0].path)
    assert hashlib.sha256(plaintext.read_bytes()).hexdigest() == record.recordings[0].audio.sha256


async def test_recording_is_encrypted_verified_and_removed_when_the_call_ends(rig, caplog):
    base: Path = rig.base
    kid = install_key(base)
    caplog.set_level(logging.INFO, logger="callguard.vault")
    listener = await start(rig)
    assert listener.ingest is not None
    record = await rig.play(scenario(CONSENTED))
    cid = record.call_id
    (recording,) = record.recordings
    plaintext = Path(recording.path)
    assert plaintext.parent == base / "spool" and recording.audio is not None and recording.audio.closed
    assert recording.audible_spans(9) == [(2.5, 5.0), (7.0, 9.0)]  # the pause was masked: silence
    ingest = listener.ingest
    await until(lambda: ingest.stats["stored"] + ingest.stats["failed"] + ingest.stats["missing"] >= 1,
                "the ingest to finish")
    assert ingest.stats == {"submitted": 1, "stored": 1, "missing": 0, "failed": 0}, caplog.text
    assert not plaintext.exists()
    reader = dataclasses.replace(rig.config, vault=dataclasses.replace(rig.config.vault, bind_os_user=False))
    with Vault.open(reader) as vault:
        with vault.session() as s:
            (row,) = s.query(Recording).filter(Recording.call_id == cid).all()
            entries = timeline(s, cid)
        assert row.key_id == kid and row.sha256 == recording.audio.sha256
        assert row.duration_s == pytest.approx(6.5, abs=0.01)  # 2.5 s to 9 s on the PBX clock
        out = export(vault, "alice", row.id, "check the automatic ingest", base / "decrypted.wav")
    assert hashlib.sha256(out.read_bytes()).hexdigest() == recording.audio.sha256
    # the call's end reached the ledger first, then the vault's entry (PBX times here are virtual)
    received = {e.kind: e.received_at_us for e in entries}
    assert received["recording-stopped"] <= received["hangup"] < received["recording-stored"]
    stored = next(e for e in entries if e.kind == "recording-stored").data
    assert stored["recording_id"] == row.id and stored["file"] == plaintext.name
    # the masked pause is where the ledger says: no keypad tones, nothing leaked
    assert stored["dtmf_leaks"] == 0
