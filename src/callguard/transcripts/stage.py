"""The transcription stage of ingest: transcribe, find, redact - before anything is encrypted.

:func:`prepare` runs on the plaintext in the spool directory, after the DTMF
scan and before encryption.  When the call is covered (see
:mod:`~callguard.transcripts.coverage`) it transcribes the recording in the
worker pool, finds sensitive speech, and writes a *redacted copy* next to
the original (``.<name>.redacted``): the findings' spans replaced by digital
silence or a tone.  Ingest then encrypts that copy, and the transcript
(already redacted) is sealed after it.

So the choice the issue asks for is **redact before encrypting**: the
unredacted audio and words never reach the vault's storage.  The unredacted
audio exists only where it already was - the PBX's spool file, which ingest
removes after the redacted version is stored - and the unredacted words
only in memory.
"""

from __future__ import annotations

import logging
import os
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from callguard.transcripts.coverage import Coverage, coverage
from callguard.transcripts.engines import Word
from callguard.transcripts.redact import fill_spans, merge_spans
from callguard.transcripts.settings import TranscriptsConfig
from callguard.transcripts.spoken import Finding, find_sensitive, redact_words
from callguard.transcripts.worker import shared_pool
from callguard.wav import open_wav

log = logging.getLogger("callguard.transcripts")


@dataclass
class Prepared:
    """What the stage hands back to ingest."""

    coverage: Coverage
    audio: Path  #: the file to encrypt: the redacted copy, or the original when nothing was redacted
    engine: str = ""
    words: list[Word] = field(default_factory=list)  #: the *redacted* transcript
    findings: list[Finding] = field(default_factory=list)
    spans: list[tuple[float, float]] = field(default_factory=list)  #: redacted audio (padded, merged)
    seconds: float = 0.0
    error: str | None = None

    @property
    def redacted_copy(self) -> bool:
        return bool(self.spans)

    def summary(self) -> dict[str, Any]:
        """For the recording-stored ledger entry: what the stage did, no content."""
        if not self.coverage.covered:
            return {"transcribed": False, "why": self.coverage.why}
        if self.error:
            return {"transcribed": False, "error": self.error}
        return {"transcribed": True, "engine": self.engine, "findings": len(self.findings),
                "redacted_spans": [[round(a, 3), round(b, 3)] for a, b in self.spans]}


def redacted_path(source: Path) -> Path:
    return source.with_name(f".{source.name}.redacted")


def write_redacted(source: Path, target: Path, spans: Sequence[tuple[float, float]], settings: TranscriptsConfig) -> None:
    """Copy ``source`` to ``target`` with ``spans`` filled (same format, same length)."""
    with open_wav(source) as reader:
        params = reader.getparams()
        raw = reader.readframes(reader.getnframes())
    if params.sampwidth != 2:
        raise ValueError(f"{source.name}: {params.sampwidth * 8}-bit audio cannot be redacted; record 16-bit PCM")
    frames = np.frombuffer(raw, dtype="<i2").reshape(-1, params.nchannels)
    filled = fill_spans(frames, params.framerate, spans, fill=settings.fill, tone_hz=settings.tone_hz)
    part = target.with_name(target.name + ".part")
    with wave.open(str(part), "wb") as writer:
        writer.setparams(params)
        writer.writeframes(filled.astype("<i2").tobytes())
    with open(part, "rb") as stream:
        os.fsync(stream.fileno())
    os.replace(part, target)


def prepare(settings: TranscriptsConfig, source: Path, entries: Sequence[Any], purpose: str) -> Prepared:
    """Transcribe and redact ``source`` if the call is covered; never raises for engine trouble.

    An engine failure leaves the recording unredacted and says so
    (``error``): ingest stores it anyway (a plaintext left in the spool
    directory is worse) and the ledger entry lets the audit flag it.
    """
    cover = coverage(entries, purpose, settings)
    prepared = Prepared(cover, source)
    if not cover.covered:
        return prepared
    try:
        engine, words, seconds = shared_pool(settings).transcribe(source)
        findings = find_sensitive(words, near_card_s=settings.near_card_s, patterns=settings.patterns)
        spans = merge_spans(((f.start, f.end) for f in findings), settings.pad_ms / 1000, seconds)
        if spans:
            target = redacted_path(source)
            write_redacted(source, target, spans, settings)
            prepared.audio = target
        prepared.engine, prepared.seconds = engine, seconds
        prepared.words, prepared.findings, prepared.spans = redact_words(words, findings), findings, spans
    except Exception as exc:  # noqa: BLE001 - an engine problem must not lose the recording
        log.error("transcripts: %s: transcription failed: %s", source.name, exc)
        prepared.error = f"{type(exc).__name__}: {exc}"
        redacted_path(source).unlink(missing_ok=True)
    return prepared


__all__ = ["Prepared", "prepare", "redacted_path", "write_redacted"]
