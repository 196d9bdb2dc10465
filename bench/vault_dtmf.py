"""DTMF leak scan speed as a multiple of real time, one core, against textbook Goertzel.

    python bench/vault_dtmf.py [--minutes 10] [--rounds 3]

Builds a real recording per sample rate with sox and espeak-ng (pink noise,
speech, and a 16-digit card number typed in the middle), then times
:func:`callguard.vault.dtmf.scan` on it with BLAS/OpenMP pinned to one
thread (best of ``--rounds``).  Baseline in the same run: the classic
per-frame Goertzel recursion in pure Python (8 tones, 205-sample blocks,
the textbook DTMF receiver) on the first 20 s of the same audio.  Also
checks that the scan found exactly the digits that were typed.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import math  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import wave  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from callguard.vault.dtmf import COLS, ROWS, digits_of, scan  # noqa: E402

CARD = "4532015112830366"
PAIRS = {"0": (941, 1336), "1": (697, 1209), "2": (697, 1336), "3": (697, 1477), "4": (770, 1209),
         "5": (770, 1336), "6": (770, 1477), "7": (852, 1209), "8": (852, 1336), "9": (852, 1477)}


def _sox(*args: str) -> None:
    subprocess.run(["sox", *args], check=True, capture_output=True)


def build(work: Path, rate: int, minutes: float) -> Path:
    seconds = minutes * 60
    speech_raw = work / "speech22k.wav"
    if not speech_raw.exists():
        subprocess.run(["espeak-ng", "-w", str(speech_raw), "Thank you for calling. Could you confirm the "
                        "postcode and the first line of the address please? Lovely, one moment."],
                       check=True, capture_output=True)
    speech = work / f"speech{rate}.wav"
    _sox(str(speech_raw), "-r", str(rate), "-b", "16", "-c", "1", str(speech), "repeat", "200")
    noise = work / f"noise{rate}.wav"
    _sox("-n", "-r", str(rate), "-b", "16", "-c", "1", str(noise), "synth", str(seconds), "pinknoise", "vol", "0.03")
    effects: list[str] = []
    for i, digit in enumerate(CARD):
        low, high = PAIRS[digit]
        effects += ([":"] if i else []) + ["synth", "0.07", "sine", str(low), "sine", str(high), "remix", "1,2",
                                           "vol", "0.3", "pad", "0", "0.06"]
    tones = work / f"tones{rate}.wav"
    subprocess.run(["sox", "-n", "-r", str(rate), "-b", "16", str(tones), *effects], check=True, capture_output=True)
    padded = work / f"tones-pad{rate}.wav"
    _sox(str(tones), str(padded), "pad", str(seconds / 2))
    out = work / f"call{rate}.wav"
    # keypad tones reach the recording about 6 dB above speech (DTMF is sent at -8 dBm0 per tone pair
    # against ~-15 dBm0 speech), so the speech is mixed in at half amplitude
    _sox("-m", "-v", "1", str(noise), "-v", "0.5", str(speech), "-v", "1", str(padded), str(out), "trim", "0",
         str(seconds))
    return out


def goertzel_python(path: Path, seconds: float) -> float:
    """The textbook receiver: per 205-sample block, the Goertzel recursion for each tone."""
    with wave.open(str(path)) as w:
        rate = w.getframerate()
        raw = w.readframes(int(seconds * rate))
    samples = np.frombuffer(raw, dtype="<i2").astype(float).tolist()
    n = round(0.0256 * rate)
    coeffs = [2 * math.cos(2 * math.pi * f / rate) for f in ROWS + COLS]
    start = time.perf_counter()
    hits = 0
    for block in range(0, len(samples) - n, n):
        chunk = samples[block:block + n]
        powers = []
        for coeff in coeffs:
            s1 = s2 = 0.0
            for x in chunk:
                s0 = x + coeff * s1 - s2
                s2, s1 = s1, s0
            powers.append(s1 * s1 + s2 * s2 - coeff * s1 * s2)
        hits += max(powers[:4]) > 1e9 and max(powers[4:]) > 1e9
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if not (shutil.which("sox") and shutil.which("espeak-ng")):
        raise SystemExit("needs sox and espeak-ng")
    work = Path(tempfile.mkdtemp(prefix="callguard-dtmf-bench-"))
    try:
        for rate in (8000, 16000):
            audio = build(work, rate, args.minutes)
            best = float("inf")
            tones: list = []
            for _ in range(args.rounds):
                start = time.perf_counter()
                tones, info = scan(audio)
                best = min(best, time.perf_counter() - start)
            baseline_s = 20.0
            base = goertzel_python(audio, baseline_s)
            ours_x = info.duration_s / best
            base_x = baseline_s / base
            found = digits_of(tones)
            print(f"{rate:5d} Hz, {info.duration_s / 60:.0f} min: scan {best:.2f} s = {ours_x:,.0f}x real time on one "
                  f"core (target >= 200x: {'OK' if ours_x >= 200 else 'MISSED'}); textbook pure-Python Goertzel "
                  f"{base_x:.1f}x -> {ours_x / base_x:,.0f}x faster; digits found {found!r} "
                  f"({'correct' if found == CARD else 'WRONG'})")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
