"""The embedded engine on real (synthesised) speech, and clear errors for engines that cannot run."""

from __future__ import annotations

import pytest

from callguard.transcripts.engines import EngineUnavailable, PocketSphinxEngine, load_engine, read_mono
from callguard.transcripts.settings import TranscriptsConfig
from callguard.transcripts.spoken import CARD, find_sensitive
from tests.transcripts.conftest import SPEECH_AT


def test_pocketsphinx_hears_the_card_number_and_where(card_call_wav):
    samples, rate = read_mono(card_call_wav)
    words = PocketSphinxEngine().transcribe(samples, rate)
    found = find_sensitive(words)
    assert [f.kind for f in found] == [CARD], " ".join(w.text for w in words)
    card = found[0]
    # The speech starts at 3 s ("my card number is" takes ~1.3 s) and lasts ~6 s.
    assert SPEECH_AT < card.start < SPEECH_AT + 3.0
    assert card.end - card.start > 3.0


def test_faster_whisper_without_a_model_says_what_to_configure(tmp_path):
    with pytest.raises(EngineUnavailable, match=r"model_dir"):
        load_engine(TranscriptsConfig(engine="faster-whisper"))
    with pytest.raises(EngineUnavailable, match=r"no model\.bin"):
        load_engine(TranscriptsConfig(engine="faster-whisper", model_dir=str(tmp_path)))
