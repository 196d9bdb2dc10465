"""callguard.toml loading: precise errors, env overrides, defaults."""

from __future__ import annotations

import pytest

from callguard.config import ConfigError, load_config, parse_config


def write(tmp_path, text):
    path = tmp_path / "callguard.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_without_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CALLGUARD_CONFIG", raising=False)
    config = load_config(environ={})
    assert config.asterisk.port == 5038 and config.recording.confirm_timeout_ms == 500
    assert config.source == "<defaults>"


def test_full_example_file_is_valid():
    from pathlib import Path

    example = Path(__file__).parents[2] / "examples" / "callguard.toml"
    config = load_config(example, environ={})
    assert config.policy.home == ""  # no live example jurisdiction: a site must choose its own


def test_every_problem_is_reported_with_file_and_key(tmp_path):
    path = write(tmp_path, """
[asterisk]
prot = 5038
port = "five"
[consent]
grant_digits = "1"
decline_digits = "1"
[policy]
unknown_regime = "one-party"
[bogus]
x = 1
""")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    problems = info.value.problems
    text = "\n".join(problems)
    assert f"{path}: [asterisk] prot: unknown key (did you mean 'port'?)" in text
    assert f"{path}: [asterisk] port: expected an integer, got 'five'" in text
    assert "[consent] decline_digits: shares a digit with grant_digits" in text
    assert "[policy] unknown_regime: must be at least as strict as all-party" in text
    assert "[bogus]: unknown section" in text
    assert len(problems) == 5


def test_bad_toml_says_where(tmp_path):
    path = write(tmp_path, "[asterisk\nport = 1\n")
    with pytest.raises(ConfigError, match=r"not valid TOML: .*line 1"):
        load_config(path, environ={})


def test_missing_file_says_what_to_do(tmp_path):
    with pytest.raises(ConfigError, match="file not found; pass --config PATH"):
        load_config(tmp_path / "nope.toml", environ={})


def test_env_overrides_win_and_are_typed(tmp_path):
    path = write(tmp_path, "[asterisk]\nport = 5038\nsecret = 'file'\n")
    config = load_config(path, environ={"CALLGUARD_ASTERISK__PORT": "5039",
                                        "CALLGUARD_ASTERISK__SECRET": "from-env",
                                        "CALLGUARD_ASTERISK__TLS": "true"})
    assert (config.asterisk.port, config.asterisk.secret, config.asterisk.tls) == (5039, "from-env", True)


def test_env_override_with_wrong_type_is_an_error():
    with pytest.raises(ConfigError, match=r"\[recording\] confirm_timeout_ms: expected an integer"):
        parse_config({}, environ={"CALLGUARD_RECORDING__CONFIRM_TIMEOUT_MS": "fast"})
