"""pydub's "Couldn't find ffmpeg" warning: only commands that run ffmpeg mention it, once, with what to install."""

from __future__ import annotations

import os
import subprocess
import sys
import wave
from pathlib import Path


def callguard(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    empty = cwd / "no-tools"  # a PATH with no ffmpeg (nor anything else)
    empty.mkdir(exist_ok=True)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("CALLGUARD_")}, "PATH": str(empty)}
    return subprocess.run([sys.executable, "-m", "callguard", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def test_only_commands_that_need_ffmpeg_mention_it(tmp_path):
    for args in (["prompts", "list"], ["policy", "explain", "+14155550123"], ["config", "check"]):
        result = callguard(tmp_path, *args)
        assert result.returncode == 0, result.stderr
        assert "ffmpeg" not in result.stdout + result.stderr, args
    assert callguard(tmp_path, "prompts", "init", "cat").returncode == 0
    source = tmp_path / "cat" / "source" / "en"
    source.mkdir(parents=True, exist_ok=True)
    with wave.open(str(source / "notice.wav"), "wb") as w:  # a designer's recording to build
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x10\x00" * 8000)
    result = callguard(tmp_path, "prompts", "build", "--catalog", "cat/prompts.toml", "--prompt", "notice",
                       "--language", "en")
    assert result.returncode == 1
    output = result.stdout + result.stderr
    assert output.count("ffmpeg") == 2 and "Couldn't find ffmpeg" not in output
    assert "ffmpeg is not installed or not on PATH; install it (Debian/Ubuntu: apt install ffmpeg)" in output
