"""A vault with transcription declared, driven through the CLI, and a real spoken card number."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from callguard.cli import main
from callguard.transcripts.worker import close_shared
from tests.vault.conftest import USERS, install_key, make_config
from tests.vault.vault_audio import overlay, speech_wav

PASS = "correct horse battery staple"
#: A test card number (Visa's documented test PAN) read the way a caller reads it.
CARD_SPEECH = "my card number is four one one one, one one one one, one one one one, one one one one."
SPEECH_AT = 3.0


@pytest.fixture(scope="session", autouse=True)
def _stop_pool():
    yield
    close_shared()


@pytest.fixture
def tmp_path(request, tmp_path_factory):
    """On tmpfs when there is one (the vault fsyncs every write; see tests/vault/conftest.py)."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path_factory.mktemp(request.node.name[:30])
        return
    path = Path(tempfile.mkdtemp(prefix="callguard-transcripts-", dir=shm))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def write_toml(tmp: Path, transcripts: dict[str, Any]) -> Path:
    settings = {"dir": str(tmp / "vault"), "private_keys": str(tmp / "private"), "chunk_kib": 4,
                "bind_os_user": False}
    lines = [f'[ledger]\nurl = "sqlite:///{tmp / "callguard.sqlite"}"\n', "[vault]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in settings.items()]
    lines += ["", "[transcripts]"] + [f"{k} = {json.dumps(v)}" for k, v in transcripts.items()
                                      if not isinstance(v, dict)]
    for k, v in transcripts.items():
        if isinstance(v, dict):
            lines += ["", f"[transcripts.{k}]"] + [f"{kk} = {json.dumps(vv)}" for kk, vv in v.items()]
    lines += ["", "[users]"] + [f'"{u}" = "{r}"' for u, r in USERS.items()]
    path = tmp / "callguard.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


DECLARED = {"purposes": ["qa"], "notice_prompts": ["notice"]}


@pytest.fixture
def cli(tmp_path, monkeypatch):
    """``cli(*args, code=0)`` runs callguard with a config that declares transcription for purpose qa."""
    install_key(make_config(tmp_path))
    runner = CliRunner()
    state: dict[str, Path] = {"toml": write_toml(tmp_path, DECLARED)}

    def run(*args: str, code: int = 0):
        result = runner.invoke(main, ["--config", str(state["toml"]), *args], catch_exceptions=False)
        assert result.exit_code == code, (args, result.output)
        return result

    def reconfigure(transcripts: dict[str, Any]) -> None:
        state["toml"] = write_toml(tmp_path, transcripts)

    run.reconfigure = reconfigure  # type: ignore[attr-defined]
    run.tmp = tmp_path  # type: ignore[attr-defined]
    return run


def line_hiss(path: Path, seconds: float, rate: int = 8000) -> Path:
    """Quiet white noise from a fixed seed (sox's noise is seeded from the clock; the engine must hear the same
    audio in every run)."""
    import wave

    import numpy as np

    hiss = np.random.default_rng(17).normal(0, 100, int(seconds * rate)).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(hiss.tobytes())
    return path


@pytest.fixture(scope="session")
def card_call_wav(tmp_path_factory) -> Path:
    """20 s of a call at 8 kHz: quiet line noise, the caller reads a card number from 3 s."""
    work = tmp_path_factory.mktemp("card-call")
    base = line_hiss(work / "line.wav", 20.0)
    speech = speech_wav(work / "speech.wav", CARD_SPEECH, voice="en-us")
    return overlay(base, [(SPEECH_AT, speech)], work / "card-call.wav")
