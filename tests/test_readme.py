"""The README's quick-start commands are the ones CI runs."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).parents[1]


def _command_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip().startswith("python3 -m venv .venv")]


def test_ci_runs_the_readme_test_command():
    readme = _command_lines((ROOT / "README.md").read_text(encoding="utf-8"))
    ci = _command_lines((ROOT / ".ci" / "run").read_text(encoding="utf-8"))
    assert len(readme) == 2, "the quick start has exactly two commands"
    assert ci == [readme[1]], "the CI test command differs from the README's"
    assert "callguard demo" in readme[0] and "pytest" in readme[1]
