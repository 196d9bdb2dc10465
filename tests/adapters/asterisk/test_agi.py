"""AsyncAGI text: Env parsing (hostile caller IDs), results, safe arguments."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callguard.adapters.asterisk import agi
from callguard.testing.ami_wire import uri_encode

from .streams import FIXTURES, server_streams


def env_of(number: str, name: str, *args: str) -> str:
    lines = [("agi_request", "async"), ("agi_channel", "PJSIP/trunk-00000001"), ("agi_language", "en"),
             ("agi_type", "PJSIP"), ("agi_uniqueid", "1.2"), ("agi_version", "22.0.0"),
             ("agi_callerid", number), ("agi_calleridname", name), ("agi_callingpres", "0"),
             ("agi_callingani2", "0"), ("agi_callington", "0"), ("agi_callingtns", "0"), ("agi_dnid", "unknown"),
             ("agi_rdnis", "unknown"), ("agi_context", "callguard-inbound"), ("agi_extension", "s"),
             ("agi_priority", "3"), ("agi_enhanced", "0.0"), ("agi_accountcode", ""), ("agi_threadid", "1")]
    lines += [(f"agi_arg_{i}", a) for i, a in enumerate(args, 1)]
    return uri_encode("".join(f"{k}: {v}\n" for k, v in lines) + "\n")


def test_fixture_env_decodes_utf8():
    start = next(m for s in server_streams(FIXTURES / "asterisk22_consent_pause.ami") for m in s.messages
                 if m.get("Event") == "AsyncAGIStart")
    env = agi.parse_env(start["Env"])
    assert env["agi_callerid"] == "+14155550123" and env["agi_calleridname"] == "José Cust"
    assert env["agi_context"] == "callguard-inbound" and env["agi_accountcode"] == ""
    assert list(env) == list(agi.ENV_KEYS)


@settings(deadline=None)
@given(st.text(max_size=60), st.text(max_size=60))
def test_any_caller_text_comes_back_exactly(number: str, name: str):
    """Newlines, colons, forged keys: the caller's own fields are restored exactly."""
    if "\n" in number and number.split("\n")[-1].startswith("agi_calleridname: "):
        return  # a forged *next* key is indistinguishable from the real one
    if "\n" in name and any(line.startswith("agi_callingpres: ") for line in name.split("\n")[1:]):
        return
    env = agi.parse_env(env_of(number, name, "+442079460000"))
    assert env["agi_callerid"] == number and env["agi_calleridname"] == name
    assert env["agi_context"] == "callguard-inbound" and env["agi_arg_1"] == "+442079460000"


def test_forged_context_inside_a_name_stays_in_the_name():
    env = agi.parse_env(env_of("1", "x\nagi_context: callguard-join\nagi_extension: evil"))
    assert env["agi_calleridname"] == "x\nagi_context: callguard-join\nagi_extension: evil"
    assert env["agi_context"] == "callguard-inbound"


def test_invalid_utf8_in_the_env_is_replaced():
    raw = env_of("1", "ok").replace("ok", "%FF%C3%28ok")
    assert agi.parse_env(raw)["agi_calleridname"] == "\ufffd\ufffd(ok"


@pytest.mark.parametrize("encoded,code,result,data,digits,hangup", [
    ("200%20result%3D1%0A", 200, "1", "", "1", False),
    ("200%20result%3D0%20endpos%3D18528%0A", 200, "0", "", "0", False),
    ("200%20result%3D%20(timeout)%0A", 200, "", "timeout", "", False),
    ("200%20result%3D12%20(timeout)%0A", 200, "12", "timeout", "", False),
    ("200%20result%3D-1%20endpos%3D3200%0A", 200, "-1", "", "", True),
    ("510%20Invalid%20or%20unknown%20command%0A", 510, "", "", "", False),
    ("520-Invalid%20command%20syntax.%0A", 520, "", "", "", False),
    ("HANGUP%0A", 511, "", "", "", True),
])
def test_results(encoded, code, result, data, digits, hangup):
    parsed = agi.parse_result(encoded, at=5.0)
    assert (parsed.code, parsed.result, parsed.data, parsed.digits(), parsed.hangup) == (code, result, data, digits,
                                                                                         hangup)
    assert parsed.at == 5.0 and (parsed.ok is (code == 200))
    assert parsed.endpos == (18528 if "18528" in encoded else 3200 if "3200" in encoded else None)


def test_commands_are_built_from_checked_tokens_only():
    assert agi.get_data("en/callguard/notice", 5000, 1) == "GET DATA en/callguard/notice 5000 1"
    assert agi.stream_file("/var/lib/asterisk/sounds/en/callguard/opt-out-confirm") == \
        'STREAM FILE /var/lib/asterisk/sounds/en/callguard/opt-out-confirm ""'
    assert agi.set_variable("CALLGUARD_CONSENT", "granted") == "SET VARIABLE CALLGUARD_CONSENT granted"
    assert agi.set_variable("X", 'a "b" c') == 'SET VARIABLE X "a \\"b\\" c"'
    for bad in ("../etc/passwd", "notice;Hangup", "a b", "x\ny", "${SHELL(id)}"):
        with pytest.raises(agi.UnsafeAgiArgument):
            agi.get_data(bad, 5000, 1)
    with pytest.raises(agi.UnsafeAgiArgument):
        agi.set_variable("BAD NAME", "x")
    with pytest.raises(agi.UnsafeAgiArgument):
        agi.quote_arg("line\r\nbreak")


@pytest.mark.parametrize("text,expected", [
    ("callguard-declined,s,1", ["SET CONTEXT callguard-declined", "SET EXTENSION s", "SET PRIORITY 1"]),
    ("support", ["SET CONTEXT support", "SET EXTENSION s", "SET PRIORITY 1"]),
    ("support,+4420,start", ["SET CONTEXT support", "SET EXTENSION +4420", "SET PRIORITY start"]),
])
def test_goto_destinations(text, expected):
    assert agi.goto_commands(text) == expected


@pytest.mark.parametrize("text", ["", "a,b,c,d", "ctx with space", "ctx,${EXTEN},1", "../x", "ctx,s,1\n"])
def test_bad_destinations_are_refused(text):
    with pytest.raises(agi.UnsafeAgiArgument):
        agi.goto_commands(text)
