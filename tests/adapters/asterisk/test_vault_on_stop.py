"""`callguard run asterisk` puts each finished recording into the vault ([vault] ingest_on_stop).

The real listener against FakeAsterisk over TCP, a real SQLite ledger, keys
made with `callguard keys generate`, and a real WAV that the fake's
MixMonitor writes at the path the listener asked for.  After the hangup the
plaintext must be gone, the vault must hold a ciphertext that decrypts (with
the private key) to exactly the bytes the PBX wrote, and the call's ledger
timeline must say so.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import os
import shutil
import tempfile
import wave
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from callguard.adapters.asterisk.runner import start_listener
from callguard.cli import main
from callguard.config import Config, load_config
from callguard.core.prompts import StaticPrompts
from callguard.ledger import Ledger
from callguard.ledger.queries import timeline
from callguard.testing.fake_asterisk import FakeAsterisk
from callguard.vault.models import Recording
from callguard.vault.recordings import export
from callguard.vault.service import Vault, os_user

from .conftest import PROMPT_S, SECRET

ME = os_user()


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
def base() -> Iterator[Path]:
    """On tmpfs when there is one: the vault fsyncs every step, which costs ~70 ms each on a VM disk."""
    shm = Path("/dev/shm")
    root = str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None
    path = Path(tempfile.mkdtemp(prefix="callguard-autoingest-", dir=root))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def write_config(base: Path, port: int, *, vault: str = "") -> Path:
    """The callguard.toml a site would write: AMI, the spool directory, the vault, who may ingest."""
    path = base / "callguard.toml"
    path.write_text(f"""
[asterisk]
port = {port}
secret = "{SECRET}"
heartbeat_interval_s = 0.1
ping_interval_s = 0.5
reconnect_min_s = 0.02
reconnect_max_s = 0.1
recording_dir = "{base / 'spool'}"

[consent]
timeout_ms = 2500

[recording]
confirm_timeout_ms = 2000
start_timeout_ms = 3000

[policy]
home = "US-NY"

[ledger]
url = "sqlite:///{base / 'callguard.sqlite'}"

[vault]
dir = "{base / 'vault'}"
private_keys = "{base / 'private'}"
{vault}

[users]
"{ME}" = "service"
alice = "privacy-officer"
""")
    return path


class CommitTee:
    """The real ledger plus an in-memory copy of each entry (to wait on), forwarding commit hooks."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.seen: list[tuple[str, str]] = []

    def append(self, entry, received_at: float, on_commit=None) -> None:
        self.seen.append((entry.call_id, entry.kind))
        self.ledger.append(entry, received_at, on_commit=on_commit)

    def flush(self, timeout: float | None = None) -> bool:
        return self.ledger.flush(timeout)


async def until(predicate, what: str, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


@pytest.fixture
async def pbx() -> AsyncIterator[FakeAsterisk]:
    async with FakeAsterisk(secret=SECRET, default_prompt_s=PROMPT_S) as fake:
        fake.write_recordings = True
        yield fake


async def run_call(config: Config, pbx: FakeAsterisk, *, hang_up_at: float = 0.6) -> tuple[Any, Any, CommitTee]:
    """One consented, recorded call through the real listener; returns (running, call, tee) after the hangup."""
    ledger = Ledger.open(config.ledger.url, "asterisk@test", batch_wait_ms=0.5)
    tee = CommitTee(ledger)
    prompts = StaticPrompts(("en", "es", "fr"), durations={"notice": PROMPT_S})
    running = await start_listener(config, tee, prompts=prompts)
    try:
        await pbx.wait_for_client()
        # Place the call after the post-login resynchronisation: one arriving during it has its
        # consent gather replayed (the caller would hear the notice twice; not what is tested here).
        listener = running.listener
        await until(lambda: listener._resyncing is not None and listener._resyncing.done(), "the resync")
        call = pbx.place_call("+14155550123", "José Cust")
        await call.answer_prompt("1")
        await until(lambda: (call.linkedid, "recording-started") in tee.seen, "recording-started")
        await call.wait_agi_left()
        await pbx.sleep(hang_up_at)
        await call.hangup()
        await until(lambda: (call.linkedid, "hangup") in tee.seen, "the hangup entry")
    except BaseException:
        await running.stop()
        ledger.close(5)
        raise
    return running, call, tee


def vault_problems(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "callguard.vault" and r.levelno >= logging.WARNING]


def generate_keys(config_path: Path) -> str:
    result = CliRunner().invoke(main, ["--config", str(config_path), "keys", "generate", "--no-passphrase"])
    assert result.exit_code == 0, result.output
    return result.output.split()[1]  # "key <kid> (active: ...)"


async def test_without_a_key_the_listener_warns_once_and_leaves_the_file(pbx, base, caplog):
    config = load_config(write_config(base, pbx.port), environ={})
    caplog.set_level(logging.INFO, logger="callguard.vault")
    running, call, _ = await run_call(config, pbx, hang_up_at=0.1)
    try:
        assert running.ingest is None
        (recording,) = call.recordings
        assert recording.audio is not None and recording.audio.closed
    finally:
        await running.stop()
        running.ledger.ledger.close(5)
    warnings = vault_problems(caplog)
    assert len(warnings) == 1
    assert "no active vault key" in warnings[0] and "callguard keys generate" in warnings[0]
    assert str(base / "spool") in warnings[0]
    plaintext = Path(recording.file)
    assert plaintext.exists() and hashlib.sha256(plaintext.read_bytes()).hexdigest() == recording.audio.sha256
    assert not (base / "vault" / "keystore").exists()


async def test_switched_off_it_leaves_the_file_without_a_warning(pbx, base, caplog):
    config_path = write_config(base, pbx.port, vault="ingest_on_stop = false")
    generate_keys(config_path)
    config = load_config(config_path, environ={})
    caplog.set_level(logging.INFO, logger="callguard.vault")
    running, call, _ = await run_call(config, pbx, hang_up_at=0.1)
    await running.stop()
    running.ledger.ledger.close(5)
    assert running.ingest is None
    assert not vault_problems(caplog)
    assert "ingest_on_stop = false" in caplog.text
    assert Path(call.recordings[0].file).exists()


async def test_a_recording_on_another_host_is_one_clear_warning(pbx, base, caplog):
    """The PBX wrote the file somewhere this host cannot see: warn, do not retry, leave the ledger alone."""
    config_path = write_config(base, pbx.port)
    generate_keys(config_path)
    config = load_config(config_path, environ={})
    pbx.write_recordings = False
    caplog.set_level(logging.INFO, logger="callguard.vault")
    running, _, _ = await run_call(config, pbx, hang_up_at=0.1)
    try:
        await until(lambda: running.ingest.stats["missing"] == 1, "the missing file to be reported")
    finally:
        await running.stop()
        running.ledger.ledger.close(5)
    assert running.ingest.stats == {"submitted": 1, "stored": 0, "missing": 1, "failed": 0}
    problems = vault_problems(caplog)
    assert len(problems) == 1 and "no such file on this host" in problems[0]
    assert "[asterisk] recording_dir" in problems[0] and "ingest_on_stop = false" in problems[0]


async def test_recording_is_encrypted_verified_and_removed_when_the_call_ends(pbx, base, caplog):
    config_path = write_config(base, pbx.port)
    kid = generate_keys(config_path)
    config = load_config(config_path, environ={})
    caplog.set_level(logging.INFO, logger="callguard.vault")
    running, call, _ = await run_call(config, pbx)
    try:
        assert running.ingest is not None
        cid = call.linkedid
        (recording,) = call.recordings
        plaintext = Path(recording.file)
        assert plaintext.parent == base / "spool" and recording.audio is not None and recording.audio.closed
        written = recording.audio.sha256
        await until(lambda: running.ingest.stats["submitted"] == 1 and not plaintext.exists()
                    or running.ingest.stats["failed"], "the ingest to finish")
        assert running.ingest.stats["failed"] == 0, caplog.text
        await until(lambda: running.ingest.stats["stored"] == 1, "the ingest to report")
    finally:
        await running.stop()
        running.ledger.ledger.close(5)
    assert not plaintext.exists()
    # The vault: a ciphertext for the call, under the active key, that decrypts to the PBX's bytes.
    reader_config = dataclasses.replace(config, vault=dataclasses.replace(config.vault, bind_os_user=False))
    with Vault.open(reader_config) as vault:
        with vault.session() as s:
            (row,) = s.query(Recording).filter(Recording.call_id == cid).all()
            entries = timeline(s, cid)
        ciphertext = vault.ciphertext_path(row.file).read_bytes()
        assert row.key_id == kid and row.source_name == plaintext.name and row.sha256 == written
        assert b"RIFF" not in ciphertext[:64]
        out = export(vault, "alice", row.id, "check the automatic ingest", base / "decrypted.wav")
    decrypted = out.read_bytes()
    assert hashlib.sha256(decrypted).hexdigest() == written
    with wave.open(str(out)) as wav:  # the whole recording, from MixMonitor start to the hangup
        seconds = wav.getnframes() / wav.getframerate()
    assert seconds == pytest.approx(recording.stopped_at - recording.started_at, abs=0.01) and seconds >= 0.5
    # The evidence: the call's end was committed first, then the vault's entry.
    received = {e.kind: e.received_at_us for e in entries}
    assert received["recording-stopped"] <= received["hangup"] < received["recording-stored"]
    stored = next(e for e in entries if e.kind == "recording-stored").data
    assert (stored["recording_id"], stored["file"], stored["sha256"]) == (row.id, plaintext.name, written)
    assert stored["ciphertext_sha256"] == hashlib.sha256(ciphertext).hexdigest()
    assert f"stored as {row.id}" in caplog.text


async def test_callguard_run_ingests_in_the_ledger_writer_process(pbx, base):
    """The service as installed: `callguard run asterisk`; the writer process encrypts, the listener never does."""
    import signal
    import subprocess
    import sys

    config_path = write_config(base, pbx.port)
    kid = generate_keys(config_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLGUARD_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "callguard", "run", "asterisk", "--config", str(config_path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env)
    try:
        await pbx.wait_for_client(timeout=90)
        await until(pbx.heartbeat_fresh, "the listener's heartbeat", timeout=60)
        call = pbx.place_call("+14155550123", "José Cust")
        await call.answer_prompt("1", timeout=60)
        await until(lambda: call.recording is not None, "the recording", timeout=60)
        await call.wait_agi_left()
        await pbx.sleep(0.6)
        await call.hangup()
        plaintext = Path(call.recordings[0].file)
        await until(lambda: not plaintext.exists(), "the writer process to ingest the recording", timeout=60)
        maps = Path(f"/proc/{proc.pid}/maps").read_text()
        writers = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
        assert writers, "the listener runs its ledger writer as a child process"
        assert "cryptography" not in maps, "the listener process itself loaded the vault's crypto"
        assert any("cryptography" in Path(f"/proc/{pid}/maps").read_text() for pid in writers)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, stderr.decode()
    assert b"recordings are encrypted into" in stderr and b"Traceback" not in stderr
    config = load_config(config_path, environ={})
    reader_config = dataclasses.replace(config, vault=dataclasses.replace(config.vault, bind_os_user=False))
    with Vault.open(reader_config) as vault:
        with vault.session() as s:
            (row,) = s.query(Recording).filter(Recording.call_id == call.linkedid).all()
        assert row.key_id == kid and row.sha256 == call.recordings[0].audio.sha256
