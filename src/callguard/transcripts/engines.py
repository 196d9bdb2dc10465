"""Speech-to-text engines behind one small interface: audio in, timed words out.

* ``pocketsphinx`` (default, embedded): the ``pocketsphinx`` wheel ships its
  en-US acoustic model, so nothing is downloaded at install or run time.
  Speech regions are found with its voice-activity segmenter and decoded one
  by one, so a long call never becomes one giant utterance.  Telephone audio
  (8 kHz) is up-sampled to the model's 16 kHz.  With ``language_model =
  "digits"`` (the default) the decoder uses a small call-centre language
  model (:mod:`callguard.transcripts.langmodel`) that knows how people read
  out numbers; ``"general"`` uses the bundled 130k-word en-US model (slower,
  worse on digits).
* ``faster-whisper`` (optional extra ``callguard[whisper]``): used only with
  ``[transcripts] model_dir`` pointing at a local CTranslate2 model; it is
  never downloaded.

An engine that cannot be loaded raises :class:`EngineUnavailable` whose
message says what to install or configure.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from callguard.transcripts.settings import TranscriptsConfig
from callguard.wav import open_wav

#: The rate the engines decode at (both models are trained on 16 kHz audio).
MODEL_RATE = 16000


class EngineUnavailable(RuntimeError):
    """The configured engine cannot run here; the message says how to fix it."""


@dataclass(frozen=True, slots=True)
class Word:
    """One recognised word and where it was said (seconds from the start of the recording)."""

    text: str
    start: float
    end: float

    def as_list(self) -> list[object]:
        return [self.text, round(self.start, 3), round(self.end, 3)]


class Engine(Protocol):
    name: str

    def transcribe(self, samples: np.ndarray, rate: int) -> list[Word]:
        """Words in ``samples`` (mono int16 at ``rate`` Hz), in order."""


def read_mono(path: str | Path) -> tuple[np.ndarray, int]:
    """A PCM WAV file as mono int16 samples and its rate (channels mixed down)."""
    with open_wav(Path(path)) as reader:
        rate, channels, width = reader.getframerate(), reader.getnchannels(), reader.getsampwidth()
        raw = reader.readframes(reader.getnframes())
    if width != 2:
        dtype = {1: np.uint8, 4: np.int32}.get(width)
        if dtype is None:
            raise ValueError(f"{width * 8}-bit WAV is not supported; convert to 16-bit PCM")
        data = np.frombuffer(raw, dtype=dtype).astype(np.float64)
        data = (data - 128) * 256 if width == 1 else data / 65536
    else:
        data = np.frombuffer(raw, dtype="<i2").astype(np.float64)
    if channels > 1:
        data = data[: len(data) // channels * channels].reshape(-1, channels).mean(axis=1)
    return np.clip(data, -32768, 32767).astype(np.int16), rate


def resample(samples: np.ndarray, rate: int, target: int = MODEL_RATE) -> np.ndarray:
    """Linear-interpolation resampling (telephone audio has nothing above 4 kHz to alias)."""
    if rate == target or len(samples) == 0:
        return samples
    count = int(math.floor(len(samples) * target / rate))
    positions = np.arange(count) * (rate / target)
    return np.interp(positions, np.arange(len(samples)), samples.astype(np.float64)).astype(np.int16)


class PocketSphinxEngine:
    """The embedded engine (see the module docstring)."""

    name = "pocketsphinx"

    def __init__(self, language_model: str = "digits") -> None:
        try:
            import pocketsphinx
        except ImportError:
            raise EngineUnavailable(
                "the pocketsphinx engine needs the 'pocketsphinx' package: pip install pocketsphinx "
                "(it ships its en-US model; nothing else is downloaded)") from None
        self._ps = pocketsphinx
        self.language_model = language_model
        options: dict[str, object] = {"samprate": MODEL_RATE, "loglevel": "FATAL"}
        if language_model == "digits":
            from callguard.transcripts.langmodel import arpa_path

            options["lm"] = str(arpa_path())
        self.name = f"pocketsphinx/{language_model}"
        self._decoder = pocketsphinx.Decoder(**options)
        self._frate = int(self._decoder.config["frate"])

    def _segments(self, samples: np.ndarray) -> list[tuple[float, np.ndarray]]:
        """Speech regions (start seconds, 16 kHz samples) found by the bundled VAD."""
        segmenter = self._ps.Segmenter(sample_rate=MODEL_RATE, vad_mode=1)
        return [(seg.start_time, np.frombuffer(seg.pcm, dtype=np.int16))
                for seg in segmenter.segment(io.BytesIO(samples.tobytes()))]

    def transcribe(self, samples: np.ndarray, rate: int) -> list[Word]:
        audio = resample(samples, rate)
        words: list[Word] = []
        for offset, pcm in self._segments(audio):
            decoder = self._decoder
            decoder.start_utt()
            decoder.process_raw(pcm.tobytes(), full_utt=True)
            decoder.end_utt()
            for seg in decoder.seg():
                text = seg.word.split("(")[0].lower()
                if text.startswith("<") or text.startswith("[") or not text:
                    continue
                words.append(Word(text, offset + seg.start_frame / self._frate,
                                  offset + (seg.end_frame + 1) / self._frate))
        return words


class FasterWhisperEngine:
    """faster-whisper on a local model directory (word timestamps on)."""

    name = "faster-whisper"

    def __init__(self, model_dir: str) -> None:
        if not model_dir:
            raise EngineUnavailable(
                "the faster-whisper engine needs a local model: set [transcripts] model_dir to a CTranslate2 "
                "Whisper model directory (callguard never downloads one), or use engine = \"pocketsphinx\"")
        if not (Path(model_dir) / "model.bin").is_file():
            raise EngineUnavailable(f"[transcripts] model_dir {model_dir!r} holds no model.bin; point it at a "
                                    f"converted CTranslate2 Whisper model directory")
        try:
            from faster_whisper import WhisperModel
        except ImportError:
            raise EngineUnavailable("the faster-whisper engine needs the optional extra: "
                                    "pip install 'callguard[whisper]'") from None
        self._model = WhisperModel(model_dir, device="cpu", compute_type="int8", local_files_only=True)
        self.name = f"faster-whisper/{Path(model_dir).name}"

    def transcribe(self, samples: np.ndarray, rate: int) -> list[Word]:
        audio = resample(samples, rate).astype(np.float32) / 32768.0
        segments, _ = self._model.transcribe(audio, language="en", word_timestamps=True, vad_filter=False)
        words = []
        for segment in segments:
            for w in segment.words or ():
                text = w.word.strip().lower().strip(".,?!")
                if text:
                    words.append(Word(text, float(w.start), float(w.end)))
        return words


def load_engine(settings: TranscriptsConfig) -> Engine:
    """The configured engine, or :class:`EngineUnavailable` saying what to install or set."""
    if settings.engine == "pocketsphinx":
        return PocketSphinxEngine(settings.language_model)
    if settings.engine == "faster-whisper":
        return FasterWhisperEngine(settings.model_dir)
    raise EngineUnavailable(f"unknown [transcripts] engine {settings.engine!r}; use pocketsphinx or faster-whisper")


__all__ = ["Engine", "EngineUnavailable", "FasterWhisperEngine", "MODEL_RATE", "PocketSphinxEngine", "Word",
           "load_engine", "read_mono", "resample"]
