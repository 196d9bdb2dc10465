"""DTMF detection on real audio: sox tones over noise and speech, espeak-ng speech alone."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from callguard.vault.dtmf import AudioFormatError, DtmfDetector, digits_of, pcm_blocks, open_wav, scan

from tests.vault.vault_audio import digit_sequence, noise_wav, overlay, run, speech_wav, tone_wav, silence_wav, concat

CARD = "4532015112830366"
SPEECH = [
    ("en", "Thank you. Can you read me the long number on the front of your card, please?"),
    ("en-us", "My number is four five three two, zero one five one, one two eight three."),
    ("fr", "Bonjour, je voudrais payer ma facture, le montant est de quarante-deux euros."),
    ("de", "Guten Tag, einen Moment bitte, ich verbinde Sie mit der Buchhaltung."),
    ("en+f3", "Mmmm, ohhh, eeee, let me see... yes, yes, that is absolutely fine, okay."),
]


@pytest.fixture(scope="module")
def audio(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("dtmf")


@pytest.mark.parametrize("rate", [8000, 16000])
def test_card_number_over_noise_is_found_with_times(audio, rate):
    seq = digit_sequence(audio, CARD, rate, tone_s=0.07, gap_s=0.06)
    noise = noise_wav(audio / f"noise{rate}.wav", 8, rate, 0.05)
    mix = overlay(noise, [(2.5, seq)], audio / f"mix{rate}.wav")
    tones, info = scan(mix)
    assert info.rate == rate
    assert digits_of(tones) == CARD
    for i, tone in enumerate(tones):
        assert tone.start == pytest.approx(2.5 + i * 0.13, abs=0.03)
        assert 0.04 < tone.duration < 0.12


@pytest.mark.parametrize("rate", [8000, 16000])
def test_digits_while_someone_talks(audio, rate):
    """Keypad tones on top of speech (the agent keeps talking) are still found."""
    speech = speech_wav(audio / f"talk{rate}.wav", SPEECH[0][1], rate)
    seq = digit_sequence(audio, "90210", rate, tone_s=0.1, gap_s=0.1)
    noise = noise_wav(audio / f"n2{rate}.wav", 7, rate, 0.03)
    mix = overlay(noise, [(0.5, speech), (2.0, seq)], audio / f"talkmix{rate}.wav")
    tones, _ = scan(mix)
    assert digits_of(tones) == "90210"


@pytest.mark.parametrize("rate", [8000, 16000])
@pytest.mark.parametrize("voice,text", SPEECH)
def test_speech_alone_gives_no_digits(audio, rate, voice, text):
    speech = speech_wav(audio / f"sp-{voice}-{rate}.wav", text, rate, voice)
    noise = noise_wav(audio / f"spn{rate}.wav", 1, rate, 0.02)
    tones, info = scan(concat([noise, speech, noise], audio / f"spc-{voice}-{rate}.wav"))
    assert info.duration_s > 2
    assert tones == []


def test_noise_and_silence_give_no_digits(audio):
    for level in (0.01, 0.2, 0.8):
        tones, _ = scan(noise_wav(audio / f"pn{level}.wav", 4, 8000, level))
        assert tones == []
    assert scan(silence_wav(audio / "sil.wav", 3))[0] == []


@pytest.mark.parametrize("twist_db,found", [(0, True), (5, True), (14, False)])
def test_twist_limit(audio, twist_db, found):
    tone = tone_wav(audio / f"tw{twist_db}.wav", "5", 0.2, 8000, 0.4, twist_db=twist_db)
    assert (digits_of(scan(tone)[0]) == "5") is found


@pytest.mark.parametrize("seconds,found", [(0.02, False), (0.05, True)])
def test_minimum_tone_duration(audio, seconds, found):
    pad = silence_wav(audio / "pad.wav", 0.3)
    clip = concat([pad, tone_wav(audio / f"len{seconds}.wav", "8", seconds), pad], audio / f"c{seconds}.wav")
    assert (digits_of(scan(clip)[0]) == "8") is found


def test_streaming_in_small_blocks_matches_whole_file(audio):
    mix = audio / "mix8000.wav"
    if not mix.exists():
        seq = digit_sequence(audio, CARD, 8000)
        overlay(noise_wav(audio / "nz.wav", 8, 8000, 0.05), [(2.5, seq)], mix)
    whole, _ = scan(mix)
    with open_wav(mix) as reader:
        detector = DtmfDetector(reader.getframerate())
        for block in pcm_blocks(reader, block_s=0.037):
            detector.feed(block)
    assert [t.digit for t in detector.finish()] == [t.digit for t in whole]


def test_stereo_recording(audio):
    left = digit_sequence(audio, "147", 8000)
    right = silence_wav(audio / "right.wav", 1.0)
    stereo = audio / "stereo.wav"
    run("sox", "-M", str(left), str(right), str(stereo))
    with wave.open(str(stereo)) as w:
        assert w.getnchannels() == 2
    assert digits_of(scan(stereo)[0]) == "147"


def test_non_pcm_wav_is_a_clear_error(audio):
    ulaw = audio / "ulaw.wav"
    run("sox", str(silence_wav(audio / "s.wav", 0.5)), "-e", "u-law", str(ulaw))
    with pytest.raises(AudioFormatError, match="not a PCM WAV file.*ffmpeg"):
        scan(ulaw)


def test_low_sample_rate_is_rejected():
    with pytest.raises(AudioFormatError, match="too low"):
        DtmfDetector(2000)
    assert DtmfDetector(8000).frame == 205
    assert isinstance(np.float32(0), np.floating)
