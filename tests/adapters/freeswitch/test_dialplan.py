"""The shipped FreeSWITCH XML agrees with the listener and holds together.

No FreeSWITCH here, so this checks what a typo would break: the files
parse, the ``socket`` application reaches the address the listener serves
in ``async full`` mode, a missing or failed decision takes the fail-closed
path (fallback notice, not recorded, never a hangup), the hotkeys and
payment signals fire exactly the CUSTOM subclasses the listener subscribes
to and translate into the events their names promise, the state flags are
the ones the resync reads back, the event socket is loopback-only, and the
README's FreeSWITCH section names every file and only real settings.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import quote

import pytest

from callguard.adapters.freeswitch import listener
from callguard.adapters.freeswitch.adoption import MASKED_VARIABLE
from callguard.adapters.freeswitch.cli import check_freeswitch_config
from callguard.adapters.freeswitch.payments import CARD_SIGNALS
from callguard.adapters.freeswitch.wire import parse_event
from callguard.adapters.freeswitch.translate import (
    CUSTOM_SIGNALS,
    INBOUND_CUSTOM,
    offer_from_channel_data,
    translate_inbound,
)
from callguard.adapters.freeswitch.commands import DECISION_VARIABLE, HEARTBEAT_VARIABLE, RECORDING_VARIABLE
from callguard.config import Config, FreeswitchConfig
from callguard.core import events as ev
from callguard.core.commands import OUTCOMES

ROOT = Path(__file__).parents[3]
DIALPLAN = ROOT / "dialplan" / "freeswitch"
README = ROOT / "dialplan" / "README.md"
DEFAULTS = FreeswitchConfig()
#: Variables FreeSWITCH itself defines at start-up (not ours to set).
CORE_VARIABLES = {"sounds_dir"}

CALL = "337c44b3-d15a-4ddc-8a6a-6f1275f058d7"
AGENT_LEG = "feb11acb-1cd6-481e-870a-70ae4ea2aad8"


# -- helpers ---------------------------------------------------------------------------------------


def parse(name: str) -> ET.Element:
    return ET.parse(DIALPLAN / name).getroot()


def preprocess_vars(root: ET.Element) -> dict[str, str]:
    """``<X-PRE-PROCESS cmd="set" data="k=v"/>`` -> {k: v}."""
    out = {}
    for node in root.iter("X-PRE-PROCESS"):
        if node.get("cmd") == "set":
            key, _, value = node.get("data", "").partition("=")
            out[key] = value
    return out


CALLGUARD = parse("callguard.xml")
FEATURES = parse("callguard_features.xml")
ESL = parse("event_socket.conf.xml")
VARS = preprocess_vars(CALLGUARD)


def expand(text: str) -> str:
    """Expand ``$${var}`` the way FreeSWITCH's pre-processor does (undefined: empty)."""
    return re.sub(r"\$\$\{(\w+)\}", lambda m: VARS.get(m.group(1), ""), text)


def contexts(root: ET.Element) -> dict[str, dict[str, ET.Element]]:
    return {ctx.get("name"): {ext.get("name"): ext for ext in ctx.iter("extension")}
            for ctx in root.iter("context")}


CONTEXTS = {**contexts(CALLGUARD), **contexts(FEATURES)}


def extension(context: str, name: str) -> ET.Element:
    return CONTEXTS[context][name]


def conditions(ext: ET.Element) -> list[ET.Element]:
    return ext.findall("condition")


def actions(node: ET.Element, tag: str = "action") -> list[tuple[str, str]]:
    """(application, data) of every ``action`` (or ``anti-action``) below ``node``, in order."""
    return [(a.get("application", ""), a.get("data", "")) for a in node.iter(tag)]


def decision_condition() -> ET.Element:
    cond = [c for c in conditions(extension("callguard", "callguard_after"))
            if c.get("field") == f"${{{DECISION_VARIABLE}}}"]
    assert len(cond) == 1
    return cond[0]


def fallback_prompt_id() -> str:
    """The catalogue's notice the dialplan plays itself (the listener never does)."""
    catalog = tomllib.loads((ROOT / "ivr_prompts" / "prompts.toml").read_text())
    ids = [pid for pid, spec in catalog["prompts"].items()
           if spec.get("used_by") == "dialplan" and spec.get("kind") == "notice"]
    assert len(ids) == 1, ids
    return ids[0]


def event_headers(data: str) -> dict[str, str]:
    """The ``event`` application's ``k=v,k=v`` argument as headers."""
    return dict(pair.split("=", 1) for pair in data.split(","))


def fired_events() -> dict[str, dict[str, str]]:
    """Feature extension name -> the headers of the CUSTOM event it fires."""
    out = {}
    for name, ext in CONTEXTS["callguard-features"].items():
        events = [data for app, data in actions(ext) if app == "event"]
        assert len(events) == 1, name
        out[name] = event_headers(events[0])
    return out


def as_inbound_event(headers: dict[str, str], leg: str) -> ev.Event:
    """What the listener makes of the event fired on ``leg`` (which carries the exported call id)."""
    exported = exported_call_variable()
    block = {"Event-Name": headers["Event-Name"], "Unique-ID": leg, f"variable_{exported}": CALL, **headers}
    text = "\n".join(f"{k}: {quote(v, safe='')}" for k, v in block.items())
    translated = translate_inbound(parse_event(text.encode()), received_at=1.0)
    assert translated is not None, headers
    assert translated.call_id == CALL and translated.origin == leg
    return translated.event


def exported_call_variable() -> str:
    exports = [data for app, data in actions(extension("callguard", "callguard_inbound")) if app == "export"]
    assert len(exports) == 1
    name, _, value = exports[0].partition("=")
    assert value == "${uuid}"
    return name


def readme_section() -> str:
    text = README.read_text()
    start = text.index("\n## FreeSWITCH\n")
    end = text.find("\n## ", start + 1)
    return text[start:] if end < 0 else text[start:end]


# -- the files --------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(DIALPLAN.glob("*.xml")), ids=lambda p: p.name)
def test_every_file_is_well_formed_xml(path: Path):
    root = ET.parse(path).getroot()
    assert root.tag in ("include", "configuration")


def test_every_execute_extension_target_exists():
    targets = []
    for root in (CALLGUARD, FEATURES):
        for app, data in actions(root) + actions(root, "anti-action"):
            if app == "execute_extension":
                targets.append(data)
        for app, data in actions(root):
            if app == "bind_meta_app":
                targets.append(data.split(" ", 3)[3].partition("::")[2])
    assert targets
    for target in targets:
        exten, dialplan, context = target.split(" ")
        assert dialplan == "XML" and exten in CONTEXTS[context], target
        first = conditions(CONTEXTS[context][exten])[0]
        assert first.get("field") == "destination_number"
        assert re.fullmatch(first.get("expression", ""), exten), target


def test_preprocessor_variables_are_defined_before_use():
    used = set()
    for path in DIALPLAN.glob("callguard*.xml"):
        text = re.sub(r"<!--.*?-->", "", path.read_text(), flags=re.DOTALL)
        used |= set(re.findall(r"\$\$\{(\w+)\}", text))
    assert used and used - CORE_VARIABLES <= set(VARS), used - CORE_VARIABLES - set(VARS)


# -- the socket and the fail-closed path ----------------------------------------------------------------


def test_socket_reaches_the_listener_in_async_full_mode():
    sockets = [(ctx, name, data) for ctx, exts in CONTEXTS.items() for name, ext in exts.items()
               for app, data in actions(ext) if app == "socket"]
    assert {name for _, name, _ in sockets} == {"callguard_connect", "callguard_join", "callguard_conference"}
    example = tomllib.loads((ROOT / "examples" / "callguard.toml").read_text())["freeswitch"]
    for config in (DEFAULTS, dataclasses.replace(DEFAULTS, **{k: example[k] for k in ("listen_host", "listen_port")})):
        for _, name, data in sockets:
            assert expand(data).split(" ") == [f"{config.listen_host}:{config.listen_port}", "async", "full"], name


@pytest.mark.parametrize("name", ["callguard_connect", "callguard_join", "callguard_conference"])
def test_socket_only_when_the_heartbeat_is_fresh(name: str):
    first, *_, gate = conditions(extension("callguard", name))
    assert not actions(first)  # the name match only
    assert f"0${{{HEARTBEAT_VARIABLE}}}" in gate.get("field", "")  # missing heartbeat reads as 0: stale
    assert re.fullmatch(gate.get("expression", ""), "fresh") and not re.fullmatch(gate.get("expression", ""), "stale")
    apps = [app for app, _ in actions(gate)]
    assert "socket" in apps and "socket" not in [app for app, _ in actions(gate, "anti-action")]
    # The listener refreshes every heartbeat_interval_s; two beats may be lost before it counts as down.
    stale_after = expand("$${callguard_stale_after}")
    assert float(stale_after) >= 3 * DEFAULTS.heartbeat_interval_s
    # ... and `callguard run freeswitch` checks the interval against this very limit.
    problems = check_freeswitch_config(Config(freeswitch=dataclasses.replace(DEFAULTS, heartbeat_interval_s=5.0)))
    assert any(f"callguard_stale_after, {stale_after} s" in p for p in problems), problems
    assert "$${callguard_stale_after}" in gate.get("field", "")


def test_inbound_runs_the_socket_then_the_decision_check():
    steps = actions(extension("callguard", "callguard_inbound"))
    # A decision left from an earlier pass must not count as this one's.
    unset = steps.index(("unset", DECISION_VARIABLE))
    connect = steps.index(("execute_extension", "callguard_connect XML callguard"))
    after = steps.index(("execute_extension", "callguard_after XML callguard"))
    assert unset < connect < after


def test_every_outcome_but_error_passes_and_the_rest_falls_back():
    expression = decision_condition().get("expression", "")
    passing = {o for o in OUTCOMES if re.fullmatch(expression, o)}
    assert passing == set(OUTCOMES) - {"error"}
    for missing in ("", "error", "_undef_"):
        assert not re.fullmatch(expression, missing)


def test_fallback_plays_the_notice_and_continues_unrecorded():
    cond = decision_condition()
    fallback = actions(cond, "anti-action")
    apps = [app for app, _ in fallback]
    assert ("stop_record_session", "all") in fallback
    assert ("set", f"{DECISION_VARIABLE}=not-recorded") in fallback
    plays = [expand(data) for app, data in fallback if app == "playback"]
    prompt = fallback_prompt_id()
    assert plays == [f"{expand('$${callguard_prompts}')}/{prompt}.wav"]
    # Stopped before the caller is told it is not recorded.
    assert apps.index("stop_record_session") < apps.index("playback")
    # The call goes on: nothing on the way hangs up, moves or parks the caller.
    for name in ("callguard_inbound", "callguard_connect", "callguard_after", "callguard_join"):
        ext = extension("callguard", name)
        for app, _ in actions(ext) + actions(ext, "anti-action"):
            assert app not in ("hangup", "transfer", "park", "respond"), (name, app)
    join_fallback = actions(conditions(extension("callguard", "callguard_join"))[1], "anti-action")
    assert [expand(d) for a, d in join_fallback if a == "playback"] == plays


def test_prompts_path_is_where_prompts_install_puts_them():
    from callguard.prompts.formats import FORMATS

    # `prompts install --freeswitch $${sounds_dir}` writes each format's relpath under it.
    fs = next(f for f in FORMATS.values() if f.pbx == "freeswitch" and f.rate == 8000)
    prompt = fallback_prompt_id()
    assert f"{VARS['callguard_prompts']}/{prompt}.wav" == f"$${{sounds_dir}}/{fs.relpath(prompt, 'en')}"


def test_the_exported_call_id_is_what_the_listener_maps_a_leg_by():
    name = exported_call_variable()
    own = offer_from_channel_data({"Unique-ID": CALL, f"variable_{name}": CALL}, 0.0)
    joiner = offer_from_channel_data({"Unique-ID": AGENT_LEG, f"variable_{name}": CALL,
                                      "Caller-Direction": "outbound"}, 0.0)
    assert own is not None and not own.is_join
    assert joiner is not None and joiner.is_join and joiner.call_id == CALL


# -- hotkeys and payment signals ---------------------------------------------------------------------


def test_features_fire_exactly_the_subclasses_the_listener_subscribes_to():
    events = fired_events()
    subclasses = [h["Event-Subclass"] for h in events.values()]
    assert all(h["Event-Name"] == "CUSTOM" for h in events.values())
    assert set(subclasses) == {*CUSTOM_SIGNALS, *CARD_SIGNALS}
    assert set(subclasses) <= {*INBOUND_CUSTOM, *CARD_SIGNALS}  # the listener subscribes to both lists
    for headers in events.values():
        assert ev.Source.parse(headers["callguard_source"]).value == headers["callguard_source"]


def test_hotkeys_pause_and_resume_from_the_agent_leg():
    binds = [data.split(" ") for app, data in actions(extension("callguard", "callguard_agent"))
             if app == "bind_meta_app"]
    keys = {}
    for key, listen, respond, app, *rest in binds:
        # The agent's own keypresses, run INLINE on the agent's leg: no hold music, so no
        # FreeSWITCH holding the feature back until the leg ends (issue 19 section 4).
        assert (listen, respond) == ("a", "si")
        exten = app.partition("::")[2]
        assert rest == ["XML", "callguard-features"]
        fired = fired_events()[exten]
        keys[key] = fired["Event-Subclass"] if fired["Event-Subclass"] in CARD_SIGNALS else \
            type(as_inbound_event(fired, leg=AGENT_LEG))
    assert keys == {"6": ev.PauseRequested, "7": ev.ResumeRequested, "8": "callguard::card_start",
                    "9": "callguard::card_cancel"}
    for name in ("callguard_pause", "callguard_resume"):
        gate = conditions(extension("callguard-features", name))[1]
        assert f"${{uuid}} == ${{{exported_call_variable()}}}" in gate.get("field", "")
        assert re.fullmatch(gate.get("expression", ""), "staff") and not re.fullmatch(gate.get("expression", ""), "caller")
        assert "event" in [app for app, _ in actions(gate)]


def test_payment_signals_translate_and_hide_digits():
    events = fired_events()
    start = as_inbound_event(events["callguard_payment_start"], leg=CALL)
    end = as_inbound_event(events["callguard_payment_end"], leg=CALL)
    assert isinstance(start, ev.PaymentStarted) and isinstance(end, ev.PaymentEnded)
    assert start.source is ev.Source.IVR
    begin = actions(extension("callguard-features", "callguard_payment_start"))
    finish = actions(extension("callguard-features", "callguard_payment_end"))
    # Digits are hidden before the event goes out, and only shown again after it.
    assert begin.index(("set", "sensitive_dtmf=true")) < [a for a, _ in begin].index("event")
    assert finish.index(("set", "sensitive_dtmf=false")) > [a for a, _ in finish].index("event")


@pytest.mark.parametrize("name,flag,on", [
    ("callguard_pause", listener.PAUSE_FLAG, True), ("callguard_resume", listener.PAUSE_FLAG, False),
    ("callguard_payment_start", listener.PAYMENT_FLAG, True), ("callguard_payment_end", listener.PAYMENT_FLAG, False),
])
def test_each_signal_leaves_the_flag_the_resync_reads(name: str, flag: str, on: bool):
    steps = actions(extension("callguard-features", name))
    evals = [data for app, data in steps if app == "eval" and data.startswith("${uuid_setvar(")]
    sets = [re.fullmatch(r"\$\{uuid_setvar\(\$\{(\w+)\} (\w+)(?: ([\w-]+))?\)\}", data) for data in evals]
    assert all(sets), evals
    flags = [m for m in sets if m and m.group(2) == flag]
    assert len(flags) == 1
    m = flags[0]
    assert m.group(1) == exported_call_variable()
    if on:
        # The value is read back as the signal's source.
        assert m.group(3) == fired_events()[name]["callguard_source"]
        # Marked masked (what a restarted listener adopts the call by) before the dialplan masks it.
        masked = [i for i, (app, data) in enumerate(steps) if data == f"${{uuid_setvar(${{{exported_call_variable()}}}"
                  f" {MASKED_VARIABLE} true)}}"]
        mask = [i for i, (app, data) in enumerate(steps) if data.startswith("${uuid_record(") and " mask " in data]
        assert masked and mask and masked[0] < mask[0]
    else:
        assert m.group(3) is None  # no value: unset
        assert len(sets) == 1  # only the listener clears the mask mark, after it has unmasked


def test_inbound_clears_the_flags_of_an_earlier_pass():
    cleared = {data.partition("=")[0] for app, data in actions(extension("callguard", "callguard_inbound"))
               if app == "set" and data.endswith("=")}
    assert {listener.PAUSE_FLAG, listener.PAYMENT_FLAG, MASKED_VARIABLE} <= cleared


# -- the event socket -------------------------------------------------------------------------------------


def esl_params() -> list[tuple[str, str]]:
    return [(p.get("name", ""), p.get("value", "")) for p in ESL.iter("param")]


def test_event_socket_is_loopback_only():
    params = esl_params()
    values = dict(params)
    assert ipaddress.ip_address(values["listen-ip"]).is_loopback
    assert [v for k, v in params if k == "apply-inbound-acl"] == ["loopback.auto"]
    assert (values["listen-ip"], int(values["listen-port"])) == (DEFAULTS.host, DEFAULTS.port)


def test_event_socket_password_is_not_the_default():
    password = dict(esl_params())["password"]
    assert password != "ClueCon"
    assert re.fullmatch(r"\$\$\{\w+\}", password)  # set in vars.xml, not in this file


# -- the README -----------------------------------------------------------------------------------------------


def test_readme_names_every_shipped_file():
    section = readme_section()
    for path in sorted(DIALPLAN.iterdir()):
        assert f"freeswitch/{path.name}" in section, path.name


def test_readme_names_only_real_settings_and_variables():
    section = readme_section()
    fields = {f.name for f in dataclasses.fields(FreeswitchConfig)}
    named = set(re.findall(r"\[freeswitch\] (\w+)", section))
    table = re.search(r"### \d+\. Listener settings\n(.*?)\n### ", section, re.DOTALL)
    assert table
    named |= {k for row in re.findall(r"^\| (`[^|]+`) \|", table.group(1), re.MULTILINE) for k in re.findall(r"`(\w+)`", row)}
    named.discard("key")
    assert named and named <= fields, named - fields
    assert fields <= named, f"not documented: {fields - named}"
    xml = "".join(p.read_text() for p in DIALPLAN.glob("*.xml"))
    code = "".join(p.read_text() for p in (ROOT / "src" / "callguard" / "adapters" / "freeswitch").glob("*.py"))
    variables = set(re.findall(r"\bcallguard_\w+", section)) - {"callguard_features"}
    assert variables
    for variable in variables:
        assert variable in xml or variable in code, variable


@pytest.mark.parametrize("name,masks", [("callguard_pause", True), ("callguard_payment_start", True),
                                        ("callguard_resume", False), ("callguard_payment_end", False)])
def test_the_dialplan_masks_by_itself_and_never_unmasks(name: str, masks: bool):
    """Issue 11 section 4: a payment segment stays off the recording even with the listener stalled."""
    steps = actions(extension("callguard-features", name))
    records = [data for app, data in steps if "uuid_record(" in data or app.startswith("record_session")]
    assert not any("unmask" in data for data in records)
    if masks:
        mask = ("eval", f"${{uuid_record(${{{exported_call_variable()}}} mask "
                        f"${{uuid_getvar(${{{exported_call_variable()}}} {RECORDING_VARIABLE})}})}}")
        assert mask in steps and steps.index(mask) < [app for app, _ in steps].index("event")
    else:
        assert records == []


def test_hotkeys_write_what_the_listener_reads_back_before_the_event():
    from callguard.adapters.freeswitch.mapping import HOTKEY_VARIABLE

    for name, action in (("callguard_pause", "pause"), ("callguard_resume", "resume"),
                         ("callguard_payment_end", "payment_end")):
        steps = actions(extension("callguard-features", name))
        mark = ("set", f"{HOTKEY_VARIABLE}={action}")
        assert mark in steps and steps.index(mark) < [app for app, _ in steps].index("event"), name


def test_no_preprocessor_line_hides_in_a_comment():
    """FreeSWITCH runs X-PRE-PROCESS lines even inside XML comments (verified on 1.10.12): a commented
    example would silently override the admin's settings (seen: the ESL password)."""
    shipped = [*DIALPLAN.glob("*.xml"), *(ROOT / "dialplan").glob("*.xml")]
    assert shipped
    for path in shipped:
        for comment in re.findall(r"<!--.*?-->", path.read_text(), flags=re.DOTALL):
            assert not re.search(r"<\s*x-pre-process", comment, re.IGNORECASE), f"{path.name}: {comment[:80]}"
