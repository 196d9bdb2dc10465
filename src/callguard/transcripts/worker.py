"""The transcription worker pool: engines run in separate, niced processes.

Decoding speech is seconds of CPU per minute of audio.  Run in the
listener's process it would hold the interpreter while a caller waits for
a pause to be confirmed; so each worker is its own process (no shared GIL),
lowered to ``nice`` 10 so the kernel serves live call handling first, and
loads its engine once.  The vault's ingest thread waits on the result; the
event loop never does.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from callguard.transcripts.engines import Engine, Word, load_engine, read_mono
from callguard.transcripts.settings import TranscriptsConfig

NICE = 10
_engine: Engine | None = None


def _init(settings: TranscriptsConfig) -> None:
    global _engine
    try:
        os.nice(NICE)
    except OSError:
        pass
    _engine = load_engine(settings)


def _transcribe(path: str) -> tuple[str, list[tuple[str, float, float]], float]:
    assert _engine is not None
    samples, rate = read_mono(path)
    words = _engine.transcribe(samples, rate)
    return _engine.name, [(w.text, w.start, w.end) for w in words], len(samples) / rate


class TranscriptionPool:
    """``transcribe(path)`` in a worker process; the engine is checked once, in this process, first."""

    def __init__(self, settings: TranscriptsConfig) -> None:
        self.settings = settings
        self._executor: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def _pool(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._executor is None:
                load_engine(self.settings)  # a clear EngineUnavailable here, not a broken pool later
                self._executor = ProcessPoolExecutor(max_workers=self.settings.workers,
                                                     mp_context=multiprocessing.get_context("spawn"),
                                                     initializer=_init, initargs=(self.settings,))
            return self._executor

    def transcribe(self, path: str | os.PathLike[str], timeout: float | None = None) -> tuple[str, list[Word], float]:
        """(engine name, words, audio seconds) for a PCM WAV file."""
        name, words, seconds = self._pool().submit(_transcribe, str(path)).result(timeout)
        return name, [Word(*w) for w in words], seconds

    def close(self) -> None:
        with self._lock:
            if self._executor is not None:
                self._executor.shutdown(wait=True, cancel_futures=True)
                self._executor = None


_shared: dict[Any, TranscriptionPool] = {}
_shared_lock = threading.Lock()


def shared_pool(settings: TranscriptsConfig) -> TranscriptionPool:
    """One pool per settings for the whole process (the listener's ingestor and the CLI share it)."""
    key = repr(settings)
    with _shared_lock:
        if key not in _shared:
            _shared[key] = TranscriptionPool(settings)
        return _shared[key]


def close_shared() -> None:
    with _shared_lock:
        for pool in _shared.values():
            pool.close()
        _shared.clear()


__all__ = ["NICE", "TranscriptionPool", "close_shared", "shared_pool"]
