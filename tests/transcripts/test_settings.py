"""``[transcripts]``: the README's example loads; wrong values are named."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from callguard.config import ConfigError, parse_config
from callguard.transcripts.coverage import coverage
from callguard.transcripts.settings import TranscriptsConfig

README = Path(__file__).parents[2] / "README.md"


def test_the_readme_example_is_a_valid_config():
    section = README.read_text().split("## Transcripts and redaction", 1)[1]
    block = re.search(r"```toml\n(.*?)```", section, re.S).group(1)
    config = parse_config(tomllib.loads(block), "README.md", environ={})
    assert config.transcripts.purposes == ["qa"] and set(config.transcripts.patterns) == {"ni_number", "email"}


@pytest.mark.parametrize("raw, says", [
    ({"engine": "whisper"}, "[transcripts] engine"),
    ({"patterns": {"bad": "(unclosed"}}, "not a valid regular expression"),
    ({"workers": 0}, "[transcripts] workers: 0 is outside 1..64"),
])
def test_wrong_values_are_named(raw, says):
    with pytest.raises(ConfigError) as caught:
        parse_config({"transcripts": raw}, "site.toml", environ={})
    assert says in str(caught.value)


class E:
    def __init__(self, kind, **data):
        self.kind, self.data = kind, data


def test_coverage_needs_the_purpose_and_every_notice():
    settings = TranscriptsConfig(purposes=["qa"], notice_prompts=["notice-transcribed"])
    told = [E("notice-started", prompt_id="notice-transcribed")]
    assert coverage(told, "qa", settings).covered
    assert not coverage(told, "dispute", settings).covered
    assert not coverage([], "qa", settings).covered  # no notice in the ledger
    joiner = told + [E("notice-started", prompt_id="notice")]  # a joiner heard the old notice
    assert "notice does not tell" in coverage(joiner, "qa", settings).why
