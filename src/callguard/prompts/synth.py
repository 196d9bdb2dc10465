"""``callguard prompts synth``: espeak-ng placeholders, so a fresh install can speak.

Placeholders go to their own directory (``placeholder_dir``), never over a
designer's recording: the build prefers a recording whenever one exists,
and the manifest marks what was built from a placeholder so nobody ships
a robot voice by accident.  The text is passed to espeak-ng as one
argument (no shell), so nothing in it is interpreted.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from callguard.prompts.audio import AudioError, require_tool
from callguard.prompts.manifest import write_atomic
from callguard.prompts.spec import CatalogSpec

_TIMEOUT_S = 60


@dataclass(frozen=True)
class Synthesized:
    prompt_id: str
    language: str
    voice: str
    path: Path


def espeak_voices() -> set[str]:
    """Voice names espeak-ng knows (first column of ``--voices``' file names)."""
    out = subprocess.run([require_tool("espeak-ng"), "--voices"], capture_output=True, text=True,
                         timeout=_TIMEOUT_S, stdin=subprocess.DEVNULL)
    voices: set[str] = set()
    for line in out.stdout.splitlines()[1:]:
        cols = line.split()
        if len(cols) >= 5:
            voices.add(cols[1])  # language code, e.g. en-us
            voices.add(cols[4].rsplit("/", 1)[-1].lower())  # file name, e.g. en-us
    return voices


def _speak(text: str, voice: str, speed: int, out: Path) -> None:
    exe = require_tool("espeak-ng")
    fd, tmp = tempfile.mkstemp(suffix=".wav")
    os.close(fd)
    try:
        proc = subprocess.run([exe, "-v", voice, "-s", str(speed), "-w", tmp, "--", text],
                              capture_output=True, timeout=_TIMEOUT_S, stdin=subprocess.DEVNULL)
        data = Path(tmp).read_bytes()
        if proc.returncode != 0 or len(data) <= 44:
            err = proc.stderr.decode("utf-8", "replace").strip() or f"exit code {proc.returncode}"
            raise AudioError(f"espeak-ng failed with voice {voice!r}: {err}")
        write_atomic(out, data)
    finally:
        os.unlink(tmp)


def synthesize(spec: CatalogSpec, *, prompt_ids: list[str] | None = None, languages: list[str] | None = None,
               voices: dict[str, str] | None = None, jobs: int | None = None) -> list[Synthesized]:
    """Write a placeholder for every (prompt, language) with text; all or nothing on bad voices."""
    available = espeak_voices()
    chosen = {**spec.synth.voices, **(voices or {})}
    problems = []
    todo = []
    for prompt in spec.prompts.values():
        if prompt_ids and prompt.prompt_id not in prompt_ids:
            continue
        for lang in prompt.texts:
            if languages and lang not in languages:
                continue
            voice = chosen.get(lang, lang)
            if voice.lower() not in available and voice.split("+")[0].lower() not in available:
                problems.append(f"no espeak-ng voice {voice!r} for {lang!r}; set [synth] voices.{lang} "
                                f"(see `espeak-ng --voices`)")
                continue
            todo.append(Synthesized(prompt.prompt_id, lang, voice, spec.placeholder_path(prompt.prompt_id, lang)))
    if problems:
        raise AudioError("\n".join(sorted(set(problems))))
    texts = {(p.prompt_id, lang): text for p in spec.prompts.values() for lang, text in p.texts.items()}
    with ThreadPoolExecutor(max_workers=jobs or min(8, (os.cpu_count() or 2) * 2)) as pool:
        list(pool.map(lambda s: _speak(texts[s.prompt_id, s.language], s.voice, spec.synth.speed_wpm, s.path),
                      todo))
    return todo
