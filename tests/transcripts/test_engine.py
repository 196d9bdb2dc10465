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


class _Sink:
    def append(self, entry, received_at) -> None:
        pass


def test_a_listener_whose_declared_engine_cannot_run_says_so_at_start_up(tmp_path, caplog):
    import logging

    from callguard.config import parse_config
    from callguard.vault.autoingest import open_auto_ingest
    from callguard.vault.service import os_user
    from tests.vault.conftest import install_key

    config = parse_config({
        "ledger": {"url": f"sqlite:///{tmp_path / 'l.sqlite'}"},
        "vault": {"dir": str(tmp_path / "vault"), "private_keys": str(tmp_path / "private")},
        "transcripts": {"purposes": ["qa"], "notice_prompts": ["notice"], "engine": "faster-whisper"},
        "users": {os_user(): "service"}}, "site.toml", environ={})
    install_key(config)
    with caplog.at_level(logging.INFO, logger="callguard.vault"):
        ingest = open_auto_ingest(config, _Sink(), str(tmp_path), "[asterisk] recording_dir")
    assert ingest is not None
    ingest.close()
    assert "[transcripts] declared but the engine cannot run: the faster-whisper engine needs a local model" \
        in caplog.text
