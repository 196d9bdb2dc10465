"""Spoken card numbers: recall, false redactions of decoys, span precision and speed, on a regenerable test set.

The test set is synthesised with espeak-ng (several voices and speeds),
band-limited to the telephone channel (8 kHz, 300-3400 Hz) and, for half of
the calls, mixed with pink line noise.  Each call opens with the agent's question
(another voice: "can I take the long number on your card?" or, for decoys,
"what's the best number to reach you on?"); card calls then read a Luhn-valid test
number inside a natural sentence (groups with pauses, "double", "oh",
fillers); decoy calls read phone numbers, order numbers that fail Luhn and
amounts.  Each call is assembled from pieces whose lengths are known, so
the true span of the card number (its voiced part) is known to the sample.

Measured per engine configuration, in the same run:

* recall: card calls with a card-number finding overlapping the true span;
* false redactions: decoy calls with any card finding;
* span precision: whether the redacted span (findings padded by
  ``[transcripts] pad_ms`` and merged, exactly as stored) covers the whole
  spoken number, and how much extra it silences;
* speed: audio seconds per CPU second of transcription + detection on one
  core (the worker pool runs one engine per core).

The baseline is PocketSphinx with its bundled general en-US language model
(``language_model = "general"``), on the first ``--baseline-calls`` calls;
``--whisper-model DIR`` adds faster-whisper on a local model directory (the
first ``--whisper-calls`` calls).

    .venv/bin/python bench/transcripts_accuracy.py --calls 72 --out /tmp/cg-transcripts-bench
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from callguard.transcripts.engines import Engine, PocketSphinxEngine, read_mono
from callguard.transcripts.redact import merge_spans
from callguard.transcripts.spoken import CARD, find_sensitive, luhn_ok

VOICES = ("en-us", "en-gb", "en-us+f3", "en+m3", "en-gb-x-rp", "en-us+m7")
SPEEDS = (140, 160, 180)
DIGITS = "zero one two three four five six seven eight nine".split()
PREFIXES = ("my card number is", "sure, it's", "okay the long number is", "the card is", "right, it's",
            "um, my visa card number is")
SUFFIXES = ("thank you.", "is that all you need?", "and that's a visa.", "okay.", "did you get that?")
AGENT_VOICE = "en-gb+m2"  #: the agent's question, on the same (mixed) recording
AGENT_CARD = ("can i take the long number on your card please?", "what's the card number?",
              "and the number on the front of the card?", "go ahead with the card number when you're ready.")
AGENT_OTHER = ("what's the best number to reach you on?", "can i take your order number?",
               "do you have a reference for that?", "how much was it?")
DECOY_PREFIXES = ("you can call me back on", "my order number is", "the reference on the letter is",
                  "my phone number is", "the amount was")


@dataclass
class Call:
    name: str
    kind: str  #: "card" | "decoy"
    wav: Path
    span: tuple[float, float] | None  #: true spoken span of the card number
    noisy: bool
    voice: str
    speed: int


def valid_card(rng: random.Random) -> str:
    prefix = rng.choice(("4", "51", "55", "37", "6011", "22"))
    length = 15 if prefix == "37" else 16
    body = prefix + "".join(rng.choice("0123456789") for _ in range(length - len(prefix) - 1))
    for last in "0123456789":
        if luhn_ok(body + last):
            return body + last
    raise AssertionError


def invalid_number(rng: random.Random, length: int) -> str:
    while True:
        n = rng.choice("3456") + "".join(rng.choice("0123456789") for _ in range(length - 1))
        if not luhn_ok(n):
            return n


def say(digits: str, rng: random.Random, groups: tuple[int, ...]) -> str:
    """Digits as a person reads them: groups separated by commas (pauses), "oh", "double", fillers."""
    words, i, g = [], 0, 0
    for size in groups:
        part = digits[i:i + size]
        i += size
        j = 0
        out = []
        while j < len(part):
            d = part[j]
            if j + 1 < len(part) and part[j + 1] == d and rng.random() < 0.3:
                out.append("double " + ("oh" if d == "0" else DIGITS[int(d)]))
                j += 2
            else:
                out.append("oh" if d == "0" and rng.random() < 0.5 else DIGITS[int(d)])
                j += 1
        words.append(" ".join(out))
        g += 1
    glue = [", um, " if rng.random() < 0.15 else ", " for _ in words]
    return "".join(w + (glue[k] if k < len(words) - 1 else "") for k, w in enumerate(words))


def run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


def speak(text: str, voice: str, speed: int, out: Path) -> Path:
    raw = out.with_suffix(".raw.wav")
    run("espeak-ng", "-v", voice, "-s", str(speed), "-w", str(raw), text)
    run("sox", str(raw), "-r", "8000", "-b", "16", "-c", "1", str(out))
    raw.unlink()
    return out


def voiced_span(path: Path) -> tuple[float, float]:
    samples, rate = read_mono(path)
    frame = rate // 100
    energy = [float(np.abs(samples[i:i + frame].astype(np.int32)).mean()) for i in range(0, len(samples), frame)]
    loud = [i for i, e in enumerate(energy) if e > 0.05 * max(energy)]
    return loud[0] / 100, (loud[-1] + 1) / 100


def make_call(directory: Path, index: int, rng: random.Random) -> Call:
    kind = "card" if index % 3 != 2 else "decoy"
    voice, speed, noisy = VOICES[index % len(VOICES)], SPEEDS[(index // 2) % len(SPEEDS)], index % 2 == 1
    work = directory / f"call{index:03d}"
    work.mkdir(parents=True, exist_ok=True)
    if kind == "card":
        number = valid_card(rng)
        groups = (4, 6, 5) if len(number) == 15 else rng.choice(((4, 4, 4, 4), (4, 4, 4, 4), (2, 2, 4, 4, 4)))
        lead, body, tail = rng.choice(PREFIXES), say(number, rng, groups), rng.choice(SUFFIXES)
    else:
        which = index % 4
        if which == 0:
            body = say("07700" + "".join(rng.choice("0123456789") for _ in range(6)), rng, (5, 3, 3))
        elif which == 1:
            body = say(invalid_number(rng, 16), rng, (4, 4, 4, 4))
        elif which == 2:
            body = say("4155550" + "".join(rng.choice("0123456789") for _ in range(3)), rng, (3, 3, 4))
        else:
            body = f"{rng.randint(2, 9)} hundred and {rng.randint(20, 99)} dollars"
        lead, tail = rng.choice(DECOY_PREFIXES), rng.choice(SUFFIXES)
    question = rng.choice(AGENT_CARD if kind == "card" else AGENT_OTHER)
    pieces = [speak(question, AGENT_VOICE, 170, work / "q.wav"), speak(lead, voice, speed, work / "a.wav"),
              speak(body, voice, speed, work / "b.wav"), speak(tail, voice, speed, work / "c.wav")]
    lengths = [read_mono(p)[0].size / 8000 for p in pieces]
    start, end = voiced_span(pieces[2])
    wav = directory / f"call{index:03d}.wav"
    effects = ["sinc", "300-3400"]
    run("sox", *map(str, pieces), str(work / "joined.wav"), *effects)
    if noisy:
        total = sum(lengths)
        run("sox", "-n", "-r", "8000", "-b", "16", "-c", "1", str(work / "noise.wav"), "synth", f"{total}",
            "pinknoise", "vol", "0.02")
        run("sox", "-m", str(work / "joined.wav"), str(work / "noise.wav"), str(wav))
    else:
        shutil.copy(work / "joined.wav", wav)
    shutil.rmtree(work)
    span = (lengths[0] + lengths[1] + start, lengths[0] + lengths[1] + end) if kind == "card" else None
    return Call(wav.stem, kind, wav, span, noisy, voice, speed)


def build_set(directory: Path, count: int, seed: int) -> list[Call]:
    index_file = directory / f"set-{count}-{seed}.json"
    if index_file.exists():
        return [Call(**{**c, "wav": Path(c["wav"]), "span": tuple(c["span"]) if c["span"] else None})
                for c in json.loads(index_file.read_text())]
    rng = random.Random(seed)
    calls = [make_call(directory, i, rng) for i in range(count)]
    index_file.write_text(json.dumps([{**c.__dict__, "wav": str(c.wav)} for c in calls]))
    return calls


def evaluate(engine: Engine, calls: list[Call], pad_s: float) -> dict[str, object]:
    audio = cpu = 0.0
    hits = misses = decoy_flags = covered = 0
    extras: list[float] = []
    cards = [c for c in calls if c.kind == "card"]
    decoys = [c for c in calls if c.kind == "decoy"]
    missed: list[str] = []
    for call in calls:
        samples, rate = read_mono(call.wav)
        t0 = time.process_time()
        words = engine.transcribe(samples, rate)
        found = [f for f in find_sensitive(words) if f.kind == CARD]
        cpu += time.process_time() - t0
        audio += len(samples) / rate
        if call.kind == "decoy":
            decoy_flags += bool(found)
            continue
        a, b = call.span  # type: ignore[misc]
        match = [f for f in found if f.start < b and f.end > a]
        if not match:
            misses += 1
            missed.append(f"{call.name} ({call.voice} {call.speed} wpm{' noise' if call.noisy else ''}): "
                          + " ".join(w.text for w in words))
            continue
        hits += 1
        spans = merge_spans(((f.start, f.end) for f in match), pad_s, len(samples) / rate)
        lo, hi = min(s[0] for s in spans), max(s[1] for s in spans)
        if lo <= a and hi >= b:
            covered += 1
        extras.append(max(0.0, a - lo) + max(0.0, hi - b))
    return {
        "engine": engine.name, "calls": len(calls), "cards": len(cards), "decoys": len(decoys),
        "recall": hits / len(cards) if cards else None,
        "false_redactions": decoy_flags / len(decoys) if decoys else None,
        "span_fully_covered": covered / hits if hits else None,
        "extra_ms_median": 1000 * float(np.median(extras)) if extras else None,
        "extra_ms_p95": 1000 * float(np.percentile(extras, 95)) if extras else None,
        "realtime_per_core": audio / cpu if cpu else None, "audio_s": audio, "missed": missed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=72)
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--baseline-calls", type=int, default=12)
    parser.add_argument("--pad-ms", type=int, default=150)
    parser.add_argument("--out", type=Path, default=Path("/tmp/callguard-transcripts-bench"))
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--whisper-model", type=Path, default=None,
                        help="a local CTranslate2 Whisper model directory: also measure faster-whisper")
    parser.add_argument("--whisper-calls", type=int, default=24)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    calls = build_set(args.out, args.calls, args.seed)
    print(f"test set: {len(calls)} calls in {args.out} ({time.time() - started:.0f} s to build or load)")
    results = [evaluate(PocketSphinxEngine("digits"), calls, args.pad_ms / 1000)]
    if args.baseline_calls:
        results.append(evaluate(PocketSphinxEngine("general"), calls[:args.baseline_calls], args.pad_ms / 1000))
    if args.whisper_model:
        from callguard.transcripts.engines import FasterWhisperEngine

        results.append(evaluate(FasterWhisperEngine(str(args.whisper_model)), calls[:args.whisper_calls],
                                args.pad_ms / 1000))
    print(f"{'engine':24} {'calls':>5} {'recall':>7} {'decoys':>7} {'span ok':>8} {'extra ms':>14} {'x RT/core':>9}")
    for r in results:
        fmt = lambda v, pct=True: "-" if v is None else (f"{100 * v:.1f}%" if pct else f"{v:.0f}")  # noqa: E731
        print(f"{r['engine']:24} {r['calls']:>5} {fmt(r['recall']):>7} {fmt(r['false_redactions']):>7} "
              f"{fmt(r['span_fully_covered']):>8} {fmt(r['extra_ms_median'], False):>6}/{fmt(r['extra_ms_p95'], False):>6} "
              f"{r['realtime_per_core']:>9.1f}")
    for other in results[1:]:
        print(f"vs {other['engine']}: speed ratio {results[0]['realtime_per_core'] / other['realtime_per_core']:.1f}x, "
              f"recall {results[0]['recall']:.3f} vs {other['recall']:.3f}")
    for line in results[0]["missed"][:20]:
        print("  missed:", line)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    sys.exit(main())
