"""The audio files each PBX plays natively, and how to write and inspect them.

Asterisk picks, among the files that share a name in one directory, the
format that costs least to translate to the call's codec: ``.ulaw`` for a
G.711 mu-law call, ``.sln16`` (16 kHz signed linear) for a wideband G.722
call, ``.wav`` (8 kHz, 16-bit, mono) as the general fallback.  So all three
live side by side as ``<language>/callguard/<prompt>.<ext>`` and the
adapter names the file without an extension.

FreeSWITCH keeps one directory per sample rate (``.../8000/x.wav``,
``.../16000/x.wav``), the layout of its own sound packs; the adapter passes
an absolute ``.wav`` path for the rate it wants.

Every output derives from one master: 16 kHz, 16-bit, mono PCM after
trimming and normalising.  The master's SHA-256 is the prompt's content
hash (the one in the ledger); it is also, byte for byte, the ``.sln16``
file's hash.
"""

from __future__ import annotations

import hashlib
import io
import wave
from dataclasses import dataclass
from typing import Callable

from callguard.wav import AudioFormatError, AudioInfo, wav_info

MASTER_RATE = 16000
SAMPLE_WIDTH = 2  #: 16-bit
PBXES = ("asterisk", "freeswitch")
PROMPT_SUBDIR = "callguard"  #: keeps our files apart from the PBX's own sounds


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256, the one hash used everywhere in the manifest and ledger."""
    return hashlib.sha256(data).hexdigest()


def _wav_bytes(pcm: bytes, rate: int) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(SAMPLE_WIDTH)
        out.setframerate(rate)
        out.writeframes(pcm)
    return buf.getvalue()


def _ulaw_bytes(pcm: bytes, rate: int) -> bytes:
    # G.711 mu-law is a fixed table; audioop's lin2ulaw is the reference
    # implementation pydub itself relies on (audioop-lts on Python 3.13+).
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import audioop
    return audioop.lin2ulaw(pcm, SAMPLE_WIDTH)


def _raw_bytes(pcm: bytes, rate: int) -> bytes:
    return pcm


@dataclass(frozen=True)
class OutputFormat:
    """One file the build writes per prompt and language."""

    name: str  #: manifest key, e.g. "asterisk-wav"
    pbx: str
    rate: int
    extension: str
    pattern: str  #: path under the PBX's sound directory
    description: str
    encode: Callable[[bytes, int], bytes]
    bytes_per_frame: int = SAMPLE_WIDTH

    def relpath(self, prompt_id: str, language: str) -> str:
        """Path under the PBX's sound directory (the install target)."""
        return self.pattern.format(language=language, sub=PROMPT_SUBDIR, prompt=prompt_id,
                                   rate=self.rate, ext=self.extension)

    def build_relpath(self, prompt_id: str, language: str) -> str:
        """Path under the build directory: one tree per PBX, copied as is by install."""
        return f"{self.pbx}/{self.relpath(prompt_id, language)}"

    def info(self, data: bytes) -> AudioInfo:
        """Parse ``data`` and check it is this format (rate, mono, 16-bit or 8-bit law)."""
        if self.extension == "wav":
            info = wav_info(data)
        else:
            if len(data) % self.bytes_per_frame:
                raise AudioFormatError(f"{len(data)} bytes is not a whole number of {self.bytes_per_frame}-byte samples")
            info = AudioInfo(self.rate, 1, self.bytes_per_frame, len(data) // self.bytes_per_frame)
        if (info.rate, info.channels, info.sample_width) != (self.rate, 1, self.bytes_per_frame):
            raise AudioFormatError(
                f"{info.rate} Hz, {info.channels} channel(s), {8 * info.sample_width}-bit; "
                f"{self.name} must be {self.rate} Hz mono {8 * self.bytes_per_frame}-bit"
            )
        return info


FORMATS: dict[str, OutputFormat] = {
    f.name: f
    for f in (
        OutputFormat("asterisk-wav", "asterisk", 8000, "wav", "{language}/{sub}/{prompt}.{ext}",
                     "Asterisk: 8 kHz 16-bit mono WAV (any codec, transcoded)", _wav_bytes),
        OutputFormat("asterisk-ulaw", "asterisk", 8000, "ulaw", "{language}/{sub}/{prompt}.{ext}",
                     "Asterisk: raw G.711 mu-law (played as is on ulaw calls)", _ulaw_bytes, 1),
        OutputFormat("asterisk-sln16", "asterisk", 16000, "sln16", "{language}/{sub}/{prompt}.{ext}",
                     "Asterisk: raw 16 kHz signed linear (wideband calls, G.722)", _raw_bytes),
        OutputFormat("freeswitch-8000", "freeswitch", 8000, "wav", "{language}/{sub}/{rate}/{prompt}.{ext}",
                     "FreeSWITCH: 8 kHz 16-bit mono WAV", _wav_bytes),
        OutputFormat("freeswitch-16000", "freeswitch", 16000, "wav", "{language}/{sub}/{rate}/{prompt}.{ext}",
                     "FreeSWITCH: 16 kHz 16-bit mono WAV (wideband calls)", _wav_bytes),
    )
}

