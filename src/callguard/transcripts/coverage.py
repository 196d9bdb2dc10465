"""Was transcription declared for this call?  (Pure: the call's ledger entries and the settings.)

Two things must both hold: the recording's purpose is one the site has
declared transcription for (``[transcripts] purposes``), and every notice
played on the call - its prompt id is in the ledger's ``notice-started``
entries - is one whose wording tells the caller about transcription
(``[transcripts] notice_prompts``).  A call with no notice in its ledger is
never covered.  The audit applies the same function to stored transcripts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from callguard.transcripts.settings import TranscriptsConfig


@dataclass(frozen=True)
class Coverage:
    covered: bool
    notices: list[str]
    why: str


def notices_played(entries: Iterable[Any]) -> list[str]:
    """Prompt ids of the notices played on the call, in order, without repeats."""
    seen: list[str] = []
    for entry in entries:
        data = entry.data if isinstance(entry.data, dict) else {}
        prompt = data.get("prompt_id")
        if entry.kind == "notice-started" and prompt and str(prompt) not in seen:
            seen.append(str(prompt))
    return seen


def coverage(entries: Iterable[Any], purpose: str, settings: TranscriptsConfig) -> Coverage:
    notices = notices_played(entries)
    if purpose not in settings.purposes:
        return Coverage(False, notices, f"purpose {purpose!r} does not declare transcription "
                                        f"([transcripts] purposes: {', '.join(settings.purposes) or 'none'})")
    if not notices:
        return Coverage(False, notices, "no notice was played on the call")
    uncovered = [n for n in notices if n not in settings.notice_prompts]
    if uncovered:
        return Coverage(False, notices, f"notice {', '.join(uncovered)} does not tell callers about transcription "
                                        f"([transcripts] notice_prompts: {', '.join(settings.notice_prompts) or 'none'})")
    return Coverage(True, notices, f"purpose {purpose} and notice {', '.join(notices)} declare transcription")


__all__ = ["Coverage", "coverage", "notices_played"]
