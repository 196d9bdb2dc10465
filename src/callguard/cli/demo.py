"""``callguard demo``: watch callguard handle a set of calls, no PBX needed."""

from __future__ import annotations

import shlex
import shutil
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from callguard.cli.common import get_config
from callguard.core.prompts import UnknownPrompt
from callguard.demo import Backend, DemoReport, run_demo, simulator_backend
from callguard.ledger import LedgerError


def _this_program() -> str:
    """How to run this same callguard again: ``callguard`` if that is the one on PATH, else its path."""
    invoked = Path(sys.argv[0])
    if invoked.name == "__main__.py":
        return f"{shlex.quote(sys.executable)} -m callguard"
    on_path = shutil.which("callguard")
    if on_path and invoked.name == "callguard" and Path(on_path).resolve() == invoked.resolve():
        return "callguard"
    return shlex.quote(str(invoked))


def _backend(name: str) -> Backend:
    """The demo's PBX by name; the adapters are imported only when chosen."""
    if name == "asterisk":
        from callguard.adapters.asterisk.demo import asterisk_backend
        return asterisk_backend
    if name == "freeswitch":
        from callguard.adapters.freeswitch.demo import freeswitch_backend
        return freeswitch_backend
    return simulator_backend


@click.command("demo")
@click.option("--db", "db_url", default=None, metavar="URL",
              help="Ledger to write the demo calls into (default: a SQLite file in the temp directory).")
@click.option("--backend", type=click.Choice(["asterisk", "freeswitch", "simulator"]), default="asterisk",
              show_default=True,
              help="asterisk / freeswitch: the real listener over TCP against an embedded fake PBX "
                   "(callguard.testing); simulator: the engine on a virtual clock, no sockets.")
@click.option("--console", "console", is_flag=True,
              help="Instead: open the web console on localhost over live demo calls you can pause (Ctrl-C stops).")
@click.option("--port", type=int, default=8480, show_default=True, help="The console's port (with --console).")
@click.option("--no-browser", is_flag=True, help="With --console: print the address, do not open a browser.")
@click.pass_context
def demo_command(ctx: click.Context, db_url: str | None, backend: str, console: bool, port: int,
                 no_browser: bool) -> None:
    """Run demo calls (consent, decline, payment pause, late joiner, ...) and summarise the evidence."""
    config = get_config(ctx)
    if console:
        return _console_demo(config, port, not no_browser)
    console = Console(highlight=False, width=None if Console().is_terminal else 132)
    try:
        report = run_demo(config, _backend(backend), backend, db_url)
    except TimeoutError as exc:
        raise click.ClickException(f"demo failed: the demo calls did not finish in time ({exc})") from None
    except (LedgerError, UnknownPrompt, OSError) as exc:
        raise click.ClickException(f"demo failed: {exc}") from None
    table = Table(title=f"callguard demo ({report.backend})", show_lines=False)
    for column in ("call", "caller", "rule", "decision", "recorded", "mutes", "joiners", "violations", "check"):
        table.add_column(column)
    for call in report.calls:
        f = call.facts
        table.add_row(call.key, call.scenario.caller.number, str(f["regime"]), str(f["decision"]),
                      "yes" if f["recorded"] else "no", str(f["mutes_confirmed"]), str(f["joiners"]),
                      str(f["violations"]), "ok" if not call.failed else "; ".join(call.failed))
    console.print(table)
    for call in report.calls:
        console.print(f"  {call.key}: {call.scenario.description}")
    chains = ", ".join(f"{c.chain_id}: {c.entries} entries" for c in report.verify.chains)
    console.print(f"ledger {report.ledger_url}: hash chains {'verified' if report.verify.ok else 'FAILED'} ({chains})")
    for problem in report.verify.problems:
        console.print(f"  - {problem}")
    card_ok = _card_demo(console, report)
    if backend in ("asterisk", "freeswitch") and report.ledger_url.startswith("sqlite:///"):
        card_ok = _payment_demo(console, config, backend, report.ledger_url) and card_ok
    # Plain echo: rich would wrap a long command at the terminal width, breaking copy and paste.
    click.echo(f"see one call's evidence: {_this_program()} ledger show {report.calls[0].call_id} "
               f"--db {shlex.quote(report.ledger_url)}")
    if not report.ok or not card_ok:
        raise click.ClickException("the demo did not produce the expected evidence (see above)")


def _console_demo(config, port: int, open_browser: bool) -> None:  # type: ignore[no-untyped-def]
    """``--console``: serve the console over live demo calls until Ctrl-C."""
    import asyncio
    import logging
    import webbrowser

    from callguard.adapters.signals import stop_on_signals
    from callguard.cli.common import setup_logging
    from callguard.web.demo import ConsoleDemo, run_console_demo
    from callguard.web.server import ConsoleError

    setup_logging("warning")

    def ready(demo: ConsoleDemo) -> None:
        click.echo(f"callguard console: {demo.url}/\n  log in as {demo.user!r} with password {demo.password}\n"
                   f"  live demo calls are on the board; pause one from the browser. Ctrl-C stops.\n"
                   f"  evidence: callguard ledger calls --db {demo.ledger_url}", nl=True)
        if open_browser:
            webbrowser.open(f"{demo.url}/")

    async def main() -> None:
        stop = asyncio.Event()
        with stop_on_signals(stop):
            await run_console_demo(config, stop, ready, port=port)

    try:
        asyncio.run(main())
    except ConsoleError as exc:
        raise click.ClickException(f"{exc} (or pass --port)") from None
    except KeyboardInterrupt:
        pass
    logging.shutdown()


def _payment_demo(console: Console, config, backend: str, ledger_url: str) -> bool:  # type: ignore[no-untyped-def]
    """A card payment the agent never hears, end to end (README: Taking payments)."""
    from callguard.demo import run_card_demo

    if backend == "asterisk":
        from callguard.adapters.asterisk.demo import card_backend
    else:
        from callguard.adapters.freeswitch.demo import card_backend
    recordings = Path(ledger_url[len("sqlite:///"):]).parent / "recordings"
    card = run_card_demo(config, card_backend, backend, ledger_url, str(recordings))
    result = card.result
    console.print(f"card payment: {card.call_id} - the agent takes 49.90 GBP; the caller keys a Visa test card "
                  f"(ending 1111) on the keypad. What the agent's screen showed:")
    for view in _milestones(card.progress):
        console.print(f"  {' | '.join(view.lines())}" + (f"  ({escape(view.message)})" if view.message else ""))
    console.print(f"  gateway: {result['outcome']}, {result['brand']} ending {result['last4']}, token {result['token']}"
                  f" (charge {result['reference']}, idempotency key {result['idempotency_key']})")
    console.print("  agent's phone: " + ("no DTMF and no keypad tone while the card was keyed" if not card.agent_heard
                                         else f"HEARD {len(card.agent_heard)} keypad signals"))
    kinds = [e.kind for e in card.entries]
    resumed = "payment-ended" in kinds and "recording-unmuted" in kinds[kinds.index("payment-ended"):]
    console.print("  recording: muted while the card was taken, then " + ("resumed (PBX-confirmed)" if resumed
                                                                         else "NOT RESUMED"))
    scanned = _scan(card)
    console.print(f"  {card.recording}: DTMF leak scan: {scanned}")
    ended = next(e.data for e in card.entries if e.kind == "payment-ended")
    console.print(f"  ledger: payment-ended {ended['outcome']}, {ended['brand']} ending {ended['last4']}, "
                  f"token {ended['token']}; hash chains {'verified' if card.verified else 'FAILED'}")
    return card.ok and scanned.startswith("no keypad tone")


def _milestones(views: list) -> list:  # type: ignore[type-arg]
    """The views worth a line: each new message, and every fourth digit of a field."""
    out = []
    for view in views:
        entering = [f for f in view.fields if f.state == "entering"]
        if view.message or any(f.entered % 4 == 0 for f in entering):
            out.append(view)
    return out


def _scan(card) -> str:  # type: ignore[no-untyped-def]
    """The vault's DTMF scan over the demo recording, judged against the ledger's payment span."""
    from callguard.vault.dtmf import scan
    from callguard.vault.leaks import classify, recording_window, summary

    if not card.recording:
        return "no recording written"
    tones, _ = scan(card.recording)
    window = recording_window(card.entries, card.recording)
    found = summary(classify(tones, window), window)
    in_payment = [t for t in found["tones"] if t["in_payment_segment"]]
    if in_payment or found["leaks"]:
        return f"FOUND {len(in_payment)} tone(s) in the payment span, {found['leaks']} leak(s)"
    return f"no keypad tone in the payment span ({len(found['payment_segments'])} segment(s) checked)"


def _card_demo(console: Console, report: DemoReport) -> bool:
    """The missed-pause call's recording through transcription and redaction (README: Transcripts)."""
    call = next((c for c in report.calls if c.key == "missed_pause_card"), None)
    if call is None or not call.facts.get("recorded") or not report.ledger_url.startswith("sqlite"):
        return True
    from callguard.transcripts.demo import run_card_demo

    console.print(f"missed pause: {call.call_id} - the agent forgot to pause and the caller read a test card "
                  f"number; its recording through the vault's transcription stage (PocketSphinx, local):")
    card = run_card_demo(report.ledger_url, call.call_id)
    if card.problem:
        console.print(f"  [FAILED] {card.problem}")
        return False
    span = f"{card.span[0]:.2f}-{card.span[1]:.2f} s" if card.span else "none"
    console.print(f"  stored recording {card.recording_id}: {'digital silence' if card.silent else 'NOT SILENT'} "
                  f"over {span}")
    console.print(f"  transcript: {escape(card.transcript)}")
    console.print("  ledger: " + ("; ".join(f"speech-redacted {f['kind']} {f['start_s']}-{f['end_s']} s"
                                            for f in card.findings) or "no finding"))
    for m in card.missed_pauses:
        console.print(f"  audit, missed pauses: {m['week']} agent {m['agent']}: {m['calls']} call(s)")
    return card.ok
