"""Prompt catalogue benchmarks, each against a baseline in the same run.

1. resolve(): PromptCatalog (the real resolver, on the notice path of every
   call) vs StaticPrompts (the in-memory test resolver: the floor).
2. load(): PromptCatalog.load() of the shipped catalogue vs parsing its
   manifest JSON alone.
3. build: an unchanged rebuild (hash checks only) vs a forced full build.
4. decode: one ffmpeg run writing 16 kHz and 8 kHz (what build does) vs two
   ffmpeg runs, one per rate.

Run: python bench/prompts_catalog.py
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from pathlib import Path

from pydub.generators import Sine

from callguard.core.prompts import StaticPrompts
from callguard.prompts.audio import decode
from callguard.prompts.build import build_catalog
from callguard.prompts.catalog import PromptCatalog, default_catalog_path
from callguard.prompts.spec import load_catalog_spec


def per_call(fn, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n


def report(name: str, ours: float, base: float, unit: str = "us", scale: float = 1e6) -> None:
    print(f"{name:<44} {ours * scale:10.2f} {unit}  baseline {base * scale:10.2f} {unit}  ratio {ours / base:8.3g}x")


def main() -> None:
    catalog = PromptCatalog.load()
    static = StaticPrompts(languages=("en", "es", "fr"))
    n = 200_000
    report("resolve('notice', 'es') vs StaticPrompts", per_call(lambda: catalog.resolve("notice", "es"), n),
           per_call(lambda: static.resolve("notice", "es"), n))
    ref = catalog.resolve("notice", "es")
    report("path_for(asterisk) vs resolve", per_call(lambda: catalog.path_for(ref, "asterisk"), n // 4),
           per_call(lambda: catalog.resolve("notice", "es"), n // 4))

    manifest = default_catalog_path().parent / "build" / "manifest.json"
    report("PromptCatalog.load() vs json.loads(manifest)", per_call(PromptCatalog.load, 50),
           per_call(lambda: json.loads(manifest.read_text()), 50), "ms", 1e3)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        lines = ["[catalog]", 'name = "bench"', ""]
        for i in range(6):
            lines += [f"[prompts.p{i}]", 'text.en = "x"', ""]
            seg = Sine(300 + 40 * i).to_audio_segment(duration=3000, volume=-12).set_frame_rate(44100)
            (root / "source/en").mkdir(parents=True, exist_ok=True)
            seg.set_channels(2).export(root / f"source/en/p{i}.wav", format="wav")
        (root / "prompts.toml").write_text("\n".join(lines))
        spec = load_catalog_spec(root / "prompts.toml")
        start = time.perf_counter()
        build_catalog(spec, force=True)
        full = time.perf_counter() - start
        start = time.perf_counter()
        result = build_catalog(spec)
        incremental = time.perf_counter() - start
        assert len(result.unchanged) == 6 and not result.built
        report("unchanged rebuild vs full build (6 x 3 s)", incremental, full, "ms", 1e3)

        src = root / "source/en/p0.wav"

        def two_runs() -> None:
            for rate in (16000, 8000):
                subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(src), "-ac", "1", "-ar", str(rate),
                                "-f", "s16le", "pipe:1"], capture_output=True, check=True)

        report("decode both rates: 1 ffmpeg run vs 2 runs", per_call(lambda: decode(src), 10), per_call(two_runs, 10),
               "ms", 1e3)


if __name__ == "__main__":
    main()
