"""``callguard demo``: a handful of calls through callguard, end to end, in seconds.

The demo is the README's first command: it shows a new user what callguard
does without a PBX.  Each demo call is a shipped scenario (consent with a
payment pause, a decline, a late joiner from an all-party state, a withheld
number with no answer, a one-party caller who stays silent) played through
the engine into a real SQLite ledger; afterwards the ledger's hash chains
are verified and a summary is printed.  The backend that plays the calls is
pluggable so the same report serves the simulator and the fake PBXs.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable

from callguard.config import Config
from callguard.ledger import Ledger, open_for_reading, timeline, verify
from callguard.ledger.verify import VerifyReport
from callguard.simulator import simulate
from callguard.testing.scenario import Scenario
from callguard.timeline import summarize
from callguard.wiring import build_policy, build_prompts, build_session_settings

#: Shipped scenarios the demo plays, in this order.
DEMO_SCENARIOS = ("consent_payment", "decline", "late_joiner", "withheld_no_input", "no_input_one_party",
                  "missed_pause_card")


def scenario_dir() -> Path:
    """Where the shipped scenarios live (inside the installed package)."""
    return Path(str(resources.files("callguard") / "data" / "scenarios"))


def demo_scenarios() -> list[Scenario]:
    return [Scenario.from_toml(scenario_dir() / f"{name}.toml") for name in DEMO_SCENARIOS]


@dataclass
class DemoCall:
    key: str
    scenario: Scenario
    call_id: str
    facts: dict[str, Any]
    entries: int
    failed: list[str] = field(default_factory=list)


@dataclass
class DemoReport:
    backend: str
    ledger_url: str
    calls: list[DemoCall]
    verify: VerifyReport

    @property
    def ok(self) -> bool:
        return self.verify.ok and not any(c.failed for c in self.calls)


#: A backend plays the scenarios into ``ledger`` and returns their call ids.
Backend = Callable[[Config, list[Scenario], Ledger], list[str]]


def simulator_backend(config: Config, scenarios: list[Scenario], ledger: Ledger) -> list[str]:
    settings, policy, prompts = build_session_settings(config), build_policy(config), build_prompts(config)
    run = uuid.uuid4().hex[:8]
    ids = []
    for i, scenario in enumerate(scenarios, 1):
        result = simulate(scenario, settings, policy, prompts, ledger=ledger, call_id=f"demo-{run}-{i}")
        ids.append(result.call_id)
    return ids


def default_ledger_url() -> str:
    """A new ledger for this run, kept afterwards so the printed follow-up command can read it.

    One per run: a shared file would mix runs, and the second run's summary
    and chain counts would include the first's calls.
    """
    directory = Path(tempfile.mkdtemp(prefix="callguard-demo-"))
    return f"sqlite:///{directory / 'ledger.sqlite'}"


#: The Visa test card the demo caller keys (Luhn-valid, published by every payment provider), its expiry and code.
DEMO_CARD = ("4111111111111111", "1230", "123")


@dataclass
class CardDemo:
    """A card payment the demo took end to end, as the agent and the evidence saw it (never a digit)."""

    call_id: str
    payment_id: str
    progress: list[Any]  #: every masked view the agent's screen got (payments.capture.Progress)
    result: dict[str, Any]  #: how it ended: outcome, brand, last four, token
    agent_heard: list[tuple[str, str]]  #: keypad DTMF / tones that reached the agent's phone during it
    recording: str = ""  #: the call's recording (a real WAV the fake PBX wrote)
    entries: list[Any] = field(default_factory=list)  #: the call's ledger entries
    verified: bool = False

    @property
    def ok(self) -> bool:
        kinds = [e.kind for e in self.entries]
        return (self.verified and self.result.get("outcome") == "approved" and not self.agent_heard
                and "payment-ended" in kinds and "recording-unmuted" in kinds[kinds.index("payment-ended"):])


#: A card payment backend plays one payment call into ``ledger`` with the demo's gateway behind ``connector``.
CardBackend = Callable[[Config, Ledger, Any, str], Any]


def run_card_demo(config: Config, backend: CardBackend, backend_name: str, ledger_url: str,
                  recording_dir: str) -> CardDemo:
    """One card payment through the real listener, the embedded fake PBX and the local HTTPS test gateway."""
    from callguard.payments.connector import ConnectorSettings, HttpsConnector
    from callguard.testing.payment_gateway import PaymentGateway

    ledger = Ledger.open(ledger_url, chain_id=f"demo-{backend_name}@{os.uname().nodename}",
                         batch_max=config.ledger.batch_max, batch_wait_ms=config.ledger.batch_wait_ms)
    try:
        with PaymentGateway() as gateway:
            connector = HttpsConnector(ConnectorSettings(gateway.url, gateway.api_key, connect_timeout_s=20.0),
                                       verify=gateway.client_context())
            card: CardDemo = backend(config, ledger, connector, recording_dir)
        ledger.flush(timeout=30)
    finally:
        ledger.close(timeout=30)
    engine = open_for_reading(ledger_url)
    try:
        card.entries = timeline(engine, card.call_id)
        card.verified = verify(engine).ok
    finally:
        engine.dispose()
    return card


def run_demo(config: Config, backend: Backend, backend_name: str, ledger_url: str | None = None) -> DemoReport:
    """Play the demo calls with ``backend`` into a real ledger, then verify it."""
    url = ledger_url or default_ledger_url()
    scenarios = demo_scenarios()
    ledger = Ledger.open(url, chain_id=f"demo-{backend_name}@{os.uname().nodename}",
                         batch_max=config.ledger.batch_max, batch_wait_ms=config.ledger.batch_wait_ms)
    try:
        call_ids = backend(config, scenarios, ledger)
        ledger.flush(timeout=30)
    finally:
        ledger.close(timeout=30)
    engine = open_for_reading(url)
    try:
        calls = []
        for key, scenario, call_id in zip(DEMO_SCENARIOS, scenarios, call_ids):
            rows = timeline(engine, call_id)
            facts = summarize(rows)
            failed = [f"expected {k} = {v!r}, got {facts.get(k)!r}" for k, v in scenario.expect.items()
                      if facts.get(k) != v]
            calls.append(DemoCall(key, scenario, call_id, facts, len(rows), failed))
        report = verify(engine)
    finally:
        engine.dispose()
    return DemoReport(backend_name, url, calls, report)
