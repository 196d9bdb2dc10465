"""The shipped catalogue works from a built wheel, and missing tools are reported, not crashed on."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from callguard.cli import main

from .conftest import write_catalog

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_wheel_ships_the_default_catalogue_and_it_loads(tmp_path: Path) -> None:
    """src/callguard/data/prompts is a symlink to ivr_prompts/ in the tree; the wheel must hold real files."""
    probe = subprocess.run([sys.executable, "-c", "import setuptools.command.bdist_wheel"], capture_output=True)
    legacy = subprocess.run([sys.executable, "-c", "import wheel"], capture_output=True)
    if probe.returncode and legacy.returncode:
        pytest.skip("neither setuptools>=70.1 nor the wheel package is installed: cannot build a wheel offline")
    tree = tmp_path / "tree"  # build from a copy: setuptools writes build/ and egg-info in the tree
    tree.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (REPO / name).is_file():
            shutil.copy2(REPO / name, tree / name)
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info")
    shutil.copytree(REPO / "src", tree / "src", symlinks=True, ignore=skip)
    shutil.copytree(REPO / "ivr_prompts", tree / "ivr_prompts", ignore=skip)
    (tree / "ivr_prompts/placeholders/en").mkdir(parents=True, exist_ok=True)
    (tree / "ivr_prompts/placeholders/en/notice.wav").write_bytes(b"RIFF")  # must stay out of the wheel
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                           "-w", str(tmp_path / "dist"), str(tree)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("callguard-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    assert "callguard/data/prompts/prompts.toml" in names
    assert "callguard/data/prompts/build/manifest.json" in names
    assert "callguard/data/prompts/build/asterisk/fr/callguard/notice.ulaw" in names
    assert not any("/placeholders/" in n for n in names)
    assert wheel.stat().st_size < 10_000_000  # "a few MB at most" (20 prompts in 3 languages, narrowband)

    target = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(target)
    code = ("import callguard.prompts.catalog as c, sys; cat = c.PromptCatalog.load(); "
            "assert str(c.default_catalog_path()).startswith(sys.argv[1]), c.default_catalog_path(); "
            "ref = cat.resolve('notice', 'fr'); print(sorted(cat.languages()), cat.path_for(ref, 'freeswitch'))")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("CALLGUARD_")}, "PYTHONPATH": str(target)}
    run = subprocess.run([sys.executable, "-c", code, str(target)], capture_output=True, text=True, env=env,
                         timeout=60, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("['en', 'es', 'fr'] " + str(target / "callguard/data/prompts/build/freeswitch"))


def test_missing_ffmpeg_and_espeak_are_explained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    catalog = write_catalog(tmp_path / "cat", {"hello": {"text": {"en": "Hello."}}})
    (tmp_path / "cat/source/en").mkdir(parents=True)
    (tmp_path / "cat/source/en/hello.wav").write_bytes(b"RIFF")
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    runner = CliRunner()
    result = runner.invoke(main, ["prompts", "build", "--catalog", str(catalog)], catch_exceptions=False)
    assert result.exit_code == 1
    assert "ffmpeg is not installed or not on PATH; install it (Debian/Ubuntu: apt install ffmpeg)" in result.output
    result = runner.invoke(main, ["prompts", "synth", "--catalog", str(catalog)], catch_exceptions=False)
    assert result.exit_code == 1 and "espeak-ng is not installed" in result.output
