"""``[transcripts]``: which calls are transcribed, by which engine, and what is redacted.

Transcription is a processing purpose of its own: it turns every recording
into a second, searchable dataset.  So it runs only for calls whose
recording purpose is listed in ``purposes`` *and* where every notice played
on the call is one of ``notice_prompts`` (prompts whose wording tells the
caller the call is transcribed).  Both default to empty: nothing is
transcribed until a site declares it.
"""

from __future__ import annotations

import re
from dataclasses import field
from typing import Annotated, Literal

from callguard.config_schema import rule, section

ENGINES = ("pocketsphinx", "faster-whisper")


def _regexes(patterns: dict[str, str]) -> bool:
    try:
        for pattern in patterns.values():
            re.compile(pattern)
    except re.error:
        return False
    return True


@section
class TranscriptsConfig:
    """The ``[transcripts]`` section (see the module docstring for when a call is transcribed)."""

    #: pocketsphinx (embedded, no download) | faster-whisper (needs model_dir and callguard[whisper])
    engine: Literal["pocketsphinx", "faster-whisper"] = "pocketsphinx"
    purposes: list[str] = field(default_factory=list)  #: recording purposes that declare transcription
    notice_prompts: list[str] = field(default_factory=list)  #: notice prompt ids that tell callers about it
    #: pocketsphinx: "digits" (call-centre vocabulary, tuned for spoken numbers) or "general" (bundled en-US)
    language_model: Literal["digits", "general"] = "digits"
    model_dir: str = ""  #: faster-whisper: a local CTranslate2 model directory (never downloaded)
    #: transcription processes (niced, so live call handling keeps the CPU)
    workers: Annotated[int, rule(lambda v: 1 <= v <= 64, "{value} is outside 1..64")] = 1
    fill: Literal["silence", "tone"] = "silence"  #: what replaces a redacted span in the stored audio
    tone_hz: Annotated[float, rule(lambda v: 100 <= v <= 3400, "{value} Hz is outside the telephone band")] = 1000.0
    #: redacted audio extends this far either side of the spoken words
    pad_ms: Annotated[int, rule(lambda v: 0 <= v <= 2000, "{value} is outside 0..2000")] = 150
    #: expiry dates and security codes this close (seconds) to a card number are redacted
    near_card_s: Annotated[float, rule(lambda v: v >= 0, "must be 0 or more")] = 20.0
    #: name -> regular expression over the normalised transcript (digits run together, "at"/"dot" as @ .)
    patterns: Annotated[dict[str, str], rule(_regexes, "a pattern is not a valid regular expression")] = \
        field(default_factory=dict)


__all__ = ["ENGINES", "TranscriptsConfig"]
