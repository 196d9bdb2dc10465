"""`callguard demo`'s card payment, on both fake PBXs: it shows the payment end to end, and the leak search
finds the card nowhere - not in the logs (DEBUG), the printed demo, the SQLite files, the ledger export or
the recording."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console

from callguard.cli import main
from callguard.cli.demo import _payment_demo
from callguard.config import parse_config
from callguard.demo import DEMO_CARD


def windows(card: str) -> set[str]:
    """Every run of 8 digits of the card, and all of it but the last four."""
    return {card[i:i + 8] for i in range(len(card) - 7)} | {card[:-4]}


@pytest.mark.parametrize("backend", ["asterisk", "freeswitch"])
def test_the_demo_payment_leaks_the_card_nowhere(backend: str, tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    config = parse_config({"policy": {"home": "GB"}}, "<demo-test>", environ={})
    shown = Console(record=True, width=200)
    assert _payment_demo(shown, config, backend, url)
    printed = shown.export_text()
    # What the demo shows: masked progress, the token, the agent's phone, the recording, the ledger entry
    assert "card: 12 of 16 digits, Visa" in printed and "card: ok, Visa | expiry: ok | CVV: ok" in printed
    assert "gateway: approved, visa ending 1111, token tok_" in printed
    assert "agent's phone: no DTMF and no keypad tone while the card was keyed" in printed
    assert "then resumed (PBX-confirmed)" in printed and "no keypad tone in the payment span" in printed
    assert "ledger: payment-ended approved, visa ending 1111" in printed and "hash chains verified" in printed
    export = CliRunner().invoke(main, ["ledger", "export", "--db", url])
    assert export.exit_code == 0 and '"kind": "payment-ended"' in export.output.replace('":"', '": "')
    # the haystack holds what was really logged: the connector's HTTPS traffic at DEBUG, callguard's own lines
    assert any(r.levelno == logging.DEBUG and r.name.startswith("httpcore") for r in caplog.records)
    assert any(r.name == "callguard.payments" for r in caplog.records)
    haystacks = {"logs": caplog.text, "printed": printed, "export": export.output}
    for path in tmp_path.rglob("*"):
        if path.is_file():
            haystacks[str(path)] = path.read_bytes().decode("latin-1")
    assert any(p.endswith(".wav") for p in haystacks) and any(p.endswith(".sqlite") for p in haystacks)
    card = DEMO_CARD[0]
    hits = {where: sorted(w for w in windows(card) if w in text) for where, text in haystacks.items()}
    assert not any(hits.values()), hits
