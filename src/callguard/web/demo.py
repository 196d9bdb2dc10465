"""``callguard demo --console``: the console on localhost over a live demo call you can pause.

The same parts as production: an embedded :class:`~callguard.testing.FakeAsterisk`
on a loopback port (real time, real prompt lengths), the real listener and
engine over TCP, a real SQLite ledger, and the console served from the
listener's loop.  A demo user with the supervisor role and a one-off
password is created in a temporary credentials file; the demo callers
consent and stay on the line until the demo stops, so there is always a
recording to pause from the browser.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from callguard.config import Config

DEMO_USER = "demo"
#: (number, caller name): a one-party US caller and a GDPR-style UK caller, both agreeing
DEMO_CALLERS = (("+14155550123", "Demo Caller (California)"), ("+442079460000", "Demo Caller (London)"))


@dataclass(frozen=True)
class ConsoleDemo:
    url: str
    user: str
    password: str
    ledger_url: str


async def run_console_demo(config: Config, stop: asyncio.Event, on_ready: Callable[[ConsoleDemo], None], *,
                           port: int = 8480, workdir: Path | None = None) -> None:
    """Serve the demo console until ``stop`` is set; ``on_ready`` gets the URL and the login."""
    from callguard.adapters.asterisk.demo import embedded_config, teach_prompt_lengths
    from callguard.adapters.asterisk.runner import console_probe, start_listener
    from callguard.ledger import Ledger
    from callguard.testing.fake_asterisk import FakeAsterisk
    from callguard.web.server import serve_console
    from callguard.web.users import Credentials
    from callguard.wiring import build_prompts

    work = workdir or Path(tempfile.mkdtemp(prefix="callguard-console-demo-"))
    ledger_url = f"sqlite:///{work / 'ledger.sqlite'}"
    password = secrets.token_urlsafe(12)
    credentials = work / "console-users.json"
    Credentials(credentials).set_user(DEMO_USER, password, ["Local/agent@agent-sim"])
    prompts = build_prompts(config)
    async with FakeAsterisk(secret=secrets.token_hex(16), timestamps=True) as pbx:
        teach_prompt_lengths(pbx, prompts)
        demo = embedded_config(config, pbx)
        demo = dataclasses.replace(
            demo, ledger=dataclasses.replace(demo.ledger, url=ledger_url),
            vault=dataclasses.replace(demo.vault, dir=str(work / "vault")),
            web=dataclasses.replace(demo.web, enabled=True, host="127.0.0.1", port=port, credentials=str(credentials)),
            users={**demo.users, DEMO_USER: "supervisor"})
        ledger = Ledger.open(ledger_url, "demo-console@localhost")
        running = await start_listener(demo, ledger, prompts=prompts)
        try:
            await pbx.wait_for_client(timeout=10)
            async with serve_console(demo, running.engine, console_probe(running), pbx="asterisk (embedded demo)"):
                on_ready(ConsoleDemo(f"http://127.0.0.1:{port}", DEMO_USER, password, ledger_url))
                callers = [asyncio.ensure_future(_caller(pbx, number, name, stop)) for number, name in DEMO_CALLERS]
                await stop.wait()
                await asyncio.gather(*callers, return_exceptions=True)
        finally:
            await running.stop()
            ledger.close(10)


async def _caller(pbx: "object", number: str, name: str, stop: asyncio.Event) -> None:
    """One caller after another on this line: agree to recording, stay on until the demo stops."""
    while not stop.is_set():
        call = pbx.place_call(number, name)  # type: ignore[attr-defined]
        try:
            await call.answer_prompt("1", timeout=30)
        except (asyncio.TimeoutError, AssertionError):
            pass
        await stop.wait()
        await call.hangup()
        await call.wait_ended(timeout=10)


__all__ = ["ConsoleDemo", "DEMO_USER", "run_console_demo"]
