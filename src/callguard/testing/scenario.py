"""Scripted calls: who calls, who presses what and when, who joins, who hangs up.

One scenario format serves three audiences: IVR designers run it with
``callguard simulate`` to see the evidence timeline a policy produces, the
fake PBX servers play it over the real wire protocols, and the parity tests
check both adapters produce the same timeline for it.

A scenario file (TOML)::

    name = "consent, then a payment pause"
    [caller]
    number = "+14155550123"
    name = "José Cust"
    [pbx]                  # optional behaviour knobs of the simulated PBX
    confirm_delay_ms = 5   # how long the PBX takes to confirm a command
    confirm_mute = true    # false: mute is never confirmed (fail-safe test)
    [[step]]
    at = 2.0               # seconds after answer
    press = "1"            # the caller presses 1
    [[step]]
    at = 20
    hotkey = "pause"       # agent feature code: pause | resume
    [[step]]
    at = 30
    ivr = "payment-start"  # dialplan signal: pause | resume | payment-start | payment-end
    [[step]]
    at = 70
    join = "+13125550100"  # a third party joins (announceable = false: unannounced)
    [[step]]
    at = 72
    press = "1"
    party = "+13125550100" # the joiner answers their notice
    [[step]]
    at = 90
    hangup = "caller"
    [expect]               # optional: simulate exits 1 when these do not hold
    decision = "granted"
    recorded = true

Every step has ``at`` and exactly one action key.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

ACTIONS = ("press", "hotkey", "ivr", "api", "join", "leave", "hangup")
SIGNALS = {
    "hotkey": ("pause", "resume"),
    "ivr": ("pause", "resume", "payment-start", "payment-end"),
    "api": ("pause", "resume", "payment-start", "payment-end"),
}
EXPECT_KEYS = {"decision": str, "recorded": bool, "final_state": str, "violations": int, "regime": str}
STEP_KEYS = set(ACTIONS) | {"at", "party", "announceable", "name"}


class ScenarioError(ValueError):
    """A scenario file problem: where, which key, what is wrong."""


@dataclass(frozen=True, slots=True)
class ScenarioParty:
    number: str
    name: str = ""


@dataclass(frozen=True, slots=True)
class Step:
    """One scripted action at ``at`` seconds after the call was answered."""

    at: float
    action: str
    value: str
    party: str = "caller"
    announceable: bool = True
    name: str = ""


@dataclass(frozen=True)
class Scenario:
    name: str
    caller: ScenarioParty
    steps: tuple[Step, ...]
    agent: ScenarioParty | None = None
    description: str = ""
    confirm_delay_s: float = 0.005
    confirm_mute: bool = True
    prompt_duration_s: float = 4.0
    expect: Mapping[str, Any] = field(default_factory=dict)

    @property
    def duration(self) -> float:
        return max((s.at for s in self.steps), default=0.0)

    @classmethod
    def from_toml(cls, path: str | Path) -> "Scenario":
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ScenarioError(f"{path}: no such scenario file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ScenarioError(f"{path}: cannot read: {exc}") from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ScenarioError(f"{path}: not valid TOML: {exc}") from None
        return cls.from_dict(data, where=str(path), default_name=path.stem)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "<scenario>", default_name: str = "scenario") -> "Scenario":
        problems: list[str] = []
        known = {"name", "description", "caller", "agent", "pbx", "step", "expect"}
        for key in data:
            if key not in known:
                problems.append(f"{where}: {key}: unknown key; use {', '.join(sorted(known))}")
        caller = _party(data.get("caller"), "caller", where, problems, required=True)
        agent = _party(data.get("agent"), "agent", where, problems, required=False)
        pbx = data.get("pbx", {})
        if not isinstance(pbx, dict):
            problems.append(f"{where}: [pbx] must be a table")
            pbx = {}
        for key in pbx:
            if key not in ("confirm_delay_ms", "confirm_mute", "prompt_duration_s"):
                problems.append(f"{where}: [pbx] {key}: unknown key; use confirm_delay_ms, confirm_mute, prompt_duration_s")
        delay = pbx.get("confirm_delay_ms", 5)
        if not _is_number(delay) or delay < 0:
            problems.append(f"{where}: [pbx] confirm_delay_ms: expected a number >= 0, got {delay!r}")
            delay = 5
        prompt_duration = pbx.get("prompt_duration_s", 4.0)
        if not _is_number(prompt_duration) or prompt_duration <= 0:
            problems.append(f"{where}: [pbx] prompt_duration_s: expected a positive number, got {prompt_duration!r}")
            prompt_duration = 4.0
        raw_steps = data.get("step", [])
        if not isinstance(raw_steps, list):
            problems.append(f"{where}: step must be an array of tables ([[step]])")
            raw_steps = []
        steps = [s for i, raw in enumerate(raw_steps, 1) if (s := _step(raw, i, where, problems)) is not None]
        joiners = {s.value for s in steps if s.action == "join"}
        for s in steps:
            if s.party not in ("caller", "agent") and s.party not in joiners:
                problems.append(f"{where}: step at {s.at:g}: party {s.party!r} never joins; "
                                f"use 'caller', 'agent' or a number from a join step")
        expect = data.get("expect", {})
        if not isinstance(expect, dict):
            problems.append(f"{where}: [expect] must be a table")
            expect = {}
        for key, value in expect.items():
            wanted = EXPECT_KEYS.get(key)
            if wanted is None:
                problems.append(f"{where}: [expect] {key}: unknown key; use {', '.join(EXPECT_KEYS)}")
            elif not isinstance(value, wanted) or (wanted is int and isinstance(value, bool)):
                problems.append(f"{where}: [expect] {key}: expected {wanted.__name__}, got {value!r}")
        if problems:
            raise ScenarioError("\n".join(problems))
        assert caller is not None
        return cls(
            name=str(data.get("name", default_name)),
            description=str(data.get("description", "")),
            caller=caller,
            agent=agent,
            steps=tuple(sorted(steps, key=lambda s: s.at)),
            confirm_delay_s=float(delay) / 1000.0,
            confirm_mute=bool(pbx.get("confirm_mute", True)),
            prompt_duration_s=float(prompt_duration),
            expect=dict(expect),
        )


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _party(raw: Any, label: str, where: str, problems: list[str], required: bool) -> ScenarioParty | None:
    if raw is None:
        if required:
            problems.append(f"{where}: [{label}] is missing; give at least number = \"+1...\" (or \"anonymous\")")
        return None
    if not isinstance(raw, dict):
        problems.append(f"{where}: [{label}] must be a table with number and name")
        return None
    number, name = raw.get("number"), raw.get("name", "")
    extra = set(raw) - {"number", "name"}
    if extra:
        problems.append(f"{where}: [{label}] {sorted(extra)[0]}: unknown key; use number, name")
    if not isinstance(number, str):
        problems.append(f"{where}: [{label}] number: expected a string, got {number!r}")
        return None
    if not isinstance(name, str):
        problems.append(f"{where}: [{label}] name: expected a string, got {name!r}")
        name = ""
    return ScenarioParty(number, name)


def _step(raw: Any, index: int, where: str, problems: list[str]) -> Step | None:
    label = f"{where}: step {index}"
    if not isinstance(raw, dict):
        problems.append(f"{label}: must be a table")
        return None
    at = raw.get("at")
    if not _is_number(at) or at < 0:
        problems.append(f"{label}: at: expected seconds after answer (a number >= 0), got {at!r}")
        return None
    for key in raw:
        if key not in STEP_KEYS:
            problems.append(f"{label} (at {at:g}): {key!r} is not a step key; actions: {', '.join(ACTIONS)}")
    actions = [a for a in ACTIONS if a in raw]
    if len(actions) != 1:
        problems.append(f"{label} (at {at:g}): needs exactly one action of {', '.join(ACTIONS)}, got "
                        f"{', '.join(actions) or 'none'}")
        return None
    action = actions[0]
    value = raw[action]
    if action == "hangup" and value is True:
        value = "caller"
    if not isinstance(value, str):
        problems.append(f"{label} (at {at:g}): {action}: expected a string, got {value!r}")
        return None
    if action in SIGNALS and value not in SIGNALS[action]:
        problems.append(f"{label} (at {at:g}): {action} = {value!r}; use one of {', '.join(SIGNALS[action])}")
        return None
    if action == "press" and (not value or any(ch not in "0123456789*#" for ch in value)):
        problems.append(f"{label} (at {at:g}): press = {value!r}; keypad digits only (0-9, *, #)")
        return None
    party = raw.get("party", "caller")
    if action == "hangup":
        party = value
    announceable = raw.get("announceable", True)
    if not isinstance(announceable, bool):
        problems.append(f"{label} (at {at:g}): announceable: expected true or false, got {announceable!r}")
        announceable = True
    return Step(float(at), action, value, str(party), announceable, str(raw.get("name", "")))
