"""How the engine names the prompts it plays, without knowing where audio lives.

The session asks a :class:`PromptResolver` for a :class:`PromptRef` (id,
language, audio hash, duration) and puts it into the command and the
ledger, so the evidence says exactly which recording the caller heard.  The
real resolver is :class:`callguard.prompts.catalog.PromptCatalog` (reads the
catalogue and build manifest); :class:`StaticPrompts` serves tests and the
simulator.
"""

from __future__ import annotations

from typing import Iterable, Iterator, Mapping, Protocol, runtime_checkable

from callguard.core.commands import PromptRef

#: Prompts the engine itself plays.
ENGINE_PROMPTS = ("notice", "notice-sensitive", "no-input-retry", "invalid-retry", "opt-out-confirm", "renotice-join")
#: Prompts a card payment plays to the caller (:mod:`callguard.payments.capture`).
PAYMENT_PROMPTS = ("pay-start", "pay-card-number", "pay-expiry", "pay-cvv", "pay-postcode", "pay-retry",
                   "pay-processing", "pay-approved", "pay-declined", "pay-failed", "pay-cancelled")
#: Prompts the shipped dialplan plays (feature codes, listener-down fallback).
DIALPLAN_PROMPTS = ("pause-confirm", "resume-confirm", "fallback-notice")


class UnknownPrompt(KeyError):
    """A prompt id or language the catalogue does not have."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else "unknown prompt"


@runtime_checkable
class PromptResolver(Protocol):
    """Anything that turns (prompt id, language) into a :class:`PromptRef`."""

    def resolve(self, prompt_id: str, language: str) -> PromptRef: ...

    def languages(self) -> frozenset[str]: ...


def engine_prompts(prompts: PromptResolver) -> Iterator[PromptRef]:
    """Every prompt the engine may play, in every language the resolver has.

    Ids a catalogue lacks are skipped: this lists what exists (for a fake
    PBX to time its playback, say); ``callguard prompts check`` is what
    reports what is missing.
    """
    for language in sorted(prompts.languages()):
        for prompt_id in ENGINE_PROMPTS + PAYMENT_PROMPTS:
            try:
                yield prompts.resolve(prompt_id, language)
            except UnknownPrompt:
                continue


class StaticPrompts:
    """In-memory resolver: every id in ``ids`` exists in every language.

    ``durations`` lets a test or scenario say how long a prompt plays
    (the simulator uses it to time the notice).
    """

    def __init__(self, languages: Iterable[str] = ("en",),
                 ids: Iterable[str] = ENGINE_PROMPTS + PAYMENT_PROMPTS + DIALPLAN_PROMPTS,
                 durations: Mapping[str, float] | None = None):
        self._languages = frozenset(languages)
        self._ids = frozenset(ids)
        self._durations = dict(durations or {})

    def resolve(self, prompt_id: str, language: str) -> PromptRef:
        if prompt_id not in self._ids:
            raise UnknownPrompt(f"unknown prompt id {prompt_id!r}; known: {', '.join(sorted(self._ids))}")
        if language not in self._languages:
            raise UnknownPrompt(f"prompt {prompt_id!r} has no {language!r} version; languages: "
                                f"{', '.join(sorted(self._languages))}")
        return PromptRef(prompt_id, language, sha256="static:" + prompt_id + ":" + language,
                         duration_s=self._durations.get(prompt_id, 4.0))

    def languages(self) -> frozenset[str]:
        return self._languages
