"""The audio file a fake PBX writes while it records (for tests that need the real file).

Asterisk's MixMonitor and FreeSWITCH's record_session create the file when
the recording starts, append audio while it runs, write silence (not
nothing) while it is muted / masked, and complete the WAV header when the
recording stops or the channel hangs up.  :class:`RecordingFile` does the
same on the fake's clock, so a test can hand the result to the vault: a
16-bit mono PCM WAV whose length is the recording's length on the PBX clock.

The audio is a quiet 400 Hz tone: no keypad pair, so the vault's DTMF leak
scan has nothing to report, and plainly not silence, so a muted span is
visible in the file.  A caller's keypress (:meth:`RecordingFile.dtmf`)
writes its keypad tone pair unless the recording is muted.
"""

from __future__ import annotations

import hashlib
import math
import wave
from array import array
from pathlib import Path

#: Longest recording a fake writes (seconds of PBX time); a runaway clock must not fill the disk.
MAX_SECONDS = 3600.0
_TONE_HZ = 400
_LEVEL = 3000  #: of 32767: about -20 dBFS
_KEYPAD = {key: (low, high) for low, row in zip((697, 770, 852, 941), ("123A", "456B", "789C", "*0#D"))
           for high, key in zip((1209, 1336, 1477, 1633), row)}


class RecordingFile:
    """One recording being written: :meth:`advance` as time passes, :meth:`close` on stop."""

    def __init__(self, path: str | Path, started_at: float, rate: int = 8000) -> None:
        self.path = Path(path)
        self.rate = rate
        self.started_at = started_at
        self.samples = 0
        self.closed = False
        #: SHA-256 of the completed file, read back when it is closed (what a test compares against
        #: once the vault has removed the plaintext)
        self.sha256: str | None = None
        self.path.parent.mkdir(parents=True, exist_ok=True)  # both PBXs create the directory
        self._wav = wave.open(str(self.path), "wb")  # noqa: SIM115 - open for the recording's life, like the PBX's
        self._wav.setnchannels(1)
        self._wav.setsampwidth(2)
        self._wav.setframerate(rate)
        self._wav.writeframes(b"")  # the header is on disk from the start, sizes still zero
        period = rate // math.gcd(rate, _TONE_HZ)
        self._period = array("h", (round(_LEVEL * math.sin(2 * math.pi * _TONE_HZ * i / rate))
                                   for i in range(period)))

    def advance(self, at: float, audible: bool) -> None:
        """Write the audio from where the file ends up to PBX time ``at`` (silence if not ``audible``)."""
        if self.closed:
            return
        target = round(min(max(at - self.started_at, 0.0), MAX_SECONDS) * self.rate)
        count = target - self.samples
        if count <= 0:
            return
        if audible:
            period = len(self._period)
            offset = self.samples % period
            reps = (offset + count) // period + 1
            frames = (self._period * reps)[offset:offset + count]
        else:
            frames = array("h", bytes(2 * count))
        self._wav.writeframes(frames.tobytes())
        self.samples = target

    def dtmf(self, at: float, digit: str, audible: bool) -> None:
        """A caller's keypress at ``at``: 100 ms of its keypad tone pair, or silence while muted.

        Real phones often send the tone in-band too, and a PBX that does not
        mute records it: this is what the vault's DTMF leak scan must find.
        """
        if self.closed or digit not in _KEYPAD:
            return
        self.advance(at, audible)
        low, high = _KEYPAD[digit]
        count = round(0.1 * self.rate)
        if audible:
            frames = array("h", (round(8000 * (math.sin(2 * math.pi * low * i / self.rate)
                                               + math.sin(2 * math.pi * high * i / self.rate)))
                                 for i in range(count)))
        else:
            frames = array("h", bytes(2 * count))
        self._wav.writeframes(frames.tobytes())
        self.samples += count

    def close(self, at: float, audible: bool) -> None:
        """The recording stopped at ``at``: write the rest and complete the header."""
        if self.closed:
            return
        self.advance(at, audible)
        self._wav.close()
        self.closed = True
        self.sha256 = hashlib.sha256(self.path.read_bytes()).hexdigest()


__all__ = ["RecordingFile"]
