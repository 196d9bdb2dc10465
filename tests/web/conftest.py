"""A listener with its console on a real HTTP port, against FakeAsterisk over TCP, real SQLite ledger.

Users (credentials file + [users] roles): ``sup`` supervisor, ``ann`` an
agent whose endpoint is the fake's agent channel, ``bo`` an agent on
another endpoint, ``cora`` compliance, ``nemo`` no role at all.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import httpx
import pytest

from callguard.adapters.asterisk.runner import RunningListener, console_probe, start_listener
from callguard.config import Config, parse_config
from callguard.core.prompts import StaticPrompts
from callguard.ledger import Ledger
from callguard.testing.fake_asterisk import FakeAsterisk, FakeCall
from callguard.web.server import RunningConsole, serve_console
from callguard.web.users import Credentials

SECRET = "s3cret-for-web-tests"
PROMPT_S = 0.04
PASSWORD = "correct horse battery"
#: the fake dials its agent as Local/agent@agent-sim-<seq>;1
AGENT_ENDPOINT = "Local/agent@agent-sim"
ROLES = {"sup": "supervisor", "ann": "agent", "bo": "agent", "cora": "compliance"}


def make_config(tmp: Path, pbx_port: int, **sections: dict[str, Any]) -> Config:
    data: dict[str, Any] = {
        "asterisk": {"port": pbx_port, "secret": SECRET, "heartbeat_interval_s": 0.1, "ping_interval_s": 0.5,
                     "reconnect_min_s": 0.02, "reconnect_max_s": 0.1, "action_timeout_ms": 1000},
        "consent": {"timeout_ms": 2500},
        "recording": {"confirm_timeout_ms": 2000, "start_timeout_ms": 3000},
        "policy": {"home": "US-NY"},
        "ledger": {"url": f"sqlite:///{tmp / 'callguard.sqlite'}"},
        "vault": {"dir": str(tmp / "vault"), "private_keys": str(tmp / "private"), "chunk_kib": 4,
                  "ingest_on_stop": False},
        "web": {"enabled": True, "port": 8480, "credentials": str(tmp / "console-users.json")},
        "users": dict(ROLES),
    }
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return parse_config(data, "<web-test>", environ={})


@dataclass
class ConsoleRig:
    pbx: FakeAsterisk
    config: Config
    ledger: Ledger
    running: RunningListener
    console: RunningConsole
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.console.url

    @property
    def engine(self):
        return self.running.engine

    def client(self, user: str | None = None, **options: Any) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {self.tokens[user]}"} if user else {}
        headers.update(options.pop("headers", {}))
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=15.0, **options)

    async def login(self, user: str) -> tuple[httpx.AsyncClient, str]:
        """A browser-like client logged in through the form; returns it and its CSRF token."""
        client = httpx.AsyncClient(base_url=self.url, timeout=15.0, follow_redirects=False)
        form = await client.get("/login")
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
        response = await client.post("/login", data={"username": user, "password": PASSWORD, "csrf_token": csrf,
                                                     "next": "/"})
        assert response.status_code == 303, response.text
        board = await client.get("/")
        csrf = re.search(r'<meta name="csrf-token" content="([^"]+)"', board.text).group(1)
        return client, csrf

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
        async def poll() -> None:
            while not predicate():
                await asyncio.sleep(0.005)
        try:
            await asyncio.wait_for(poll(), timeout)
        except asyncio.TimeoutError:
            raise AssertionError(f"timed out waiting for {what or predicate}") from None

    async def recorded_call(self, number: str = "+14155550123") -> FakeCall:
        """A call that consented, is recording, and has the agent bridged in."""
        call = self.pbx.place_call(number, "Web Caller")
        await call.answer_prompt("1")
        await self.wait_for(lambda: (s := self.engine.session(call.linkedid)) is not None
                            and s.state.value == "recording", what="recording")
        await self.wait_for(lambda: any(p.channel.startswith(AGENT_ENDPOINT)
                                        for p in self.engine.session(call.linkedid).parties), what="agent leg")
        return call

    def entries(self, call_id: str, kind: str) -> list[dict[str, Any]]:
        from callguard.ledger.queries import timeline

        assert self.ledger.flush(5)
        return [dict(e.data) for e in timeline(self.ledger.engine, call_id) if e.kind == kind]


def write_users(config: Config) -> dict[str, str]:
    credentials = Credentials(config.web.credentials)
    tokens = {}
    for name in (*ROLES, "nemo"):
        endpoints = {"ann": [AGENT_ENDPOINT], "bo": ["PJSIP/agent-999"]}.get(name, [])
        credentials.set_user(name, PASSWORD, endpoints)
        tokens[name] = credentials.add_token(name, "tests")
    return tokens


@pytest.fixture
async def console_rig(tmp_path: Path) -> AsyncIterator[ConsoleRig]:
    async with FakeAsterisk(secret=SECRET, default_prompt_s=PROMPT_S) as pbx:
        config = make_config(tmp_path, pbx.port)
        tokens = write_users(config)
        ledger = Ledger.open(config.ledger.url, "asterisk@web-test", batch_wait_ms=0.5)
        prompts = StaticPrompts(("en", "es", "fr"), durations={"notice": PROMPT_S})
        running = await start_listener(config, ledger, prompts=prompts)
        try:
            await pbx.wait_for_client()
            async with serve_console(config, running.engine, console_probe(running), pbx="asterisk",
                                     port=0) as console:
                rig = ConsoleRig(pbx, config, ledger, running, console, tokens)
                await rig.wait_for(pbx.heartbeat_fresh, what="heartbeat")
                yield rig
        finally:
            await running.stop()
            ledger.close(5)


# -- a real recording in the vault, for the listen tests ---------------------------------------


def tone_wav(path: Path, seconds: float = 2.0, rate: int = 8000, hz: float = 440.0) -> Path:
    """A real 16-bit mono WAV (a plain tone: no DTMF pair, nothing for the leak scan to flag)."""
    import math
    import struct
    import wave

    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * hz * i / rate)))
                               for i in range(int(seconds * rate))))
    return path


async def stored_recording(rig: ConsoleRig, tmp: Path) -> tuple[str, str]:
    """A call recorded through the fake PBX, hung up, its (real) audio ingested: (call id, recording id)."""
    import dataclasses

    from callguard.vault.ingest import ingest_file
    from callguard.vault.keys import Keyring, generate_pair, private_pem
    from callguard.vault.service import Vault, os_user

    call = await rig.recorded_call("+442079460123")
    await call.hangup()
    await rig.wait_for(lambda: rig.engine.session(call.linkedid) is None, what="call ended")
    assert rig.ledger.flush(5)
    private = generate_pair()
    ring = Keyring(Path(rig.config.vault.dir) / "keyring")
    ring.add(private.public_key(), activate=True)
    keys = Path(rig.config.vault.private_keys)
    keys.mkdir(parents=True, exist_ok=True)
    (keys / f"{ring.active()[0]}.pem").write_bytes(private_pem(private, None))
    spool = tmp / "spool"
    spool.mkdir(exist_ok=True)
    wav = tone_wav(spool / f"callguard-{call.linkedid}.wav")
    config = dataclasses.replace(rig.config, users={**rig.config.users, os_user(): "service"})

    def ingest() -> str:
        with Vault.open(config) as vault:
            return ingest_file(vault, wav, call.linkedid).recording_id

    return call.linkedid, await asyncio.to_thread(ingest)


def access_log(rig: ConsoleRig) -> list[dict[str, Any]]:
    from sqlalchemy import select

    from callguard.vault.models import AccessLogRecord
    from callguard.vault.service import Vault

    with Vault.open(rig.config) as vault, vault.session() as session:
        return [{"actor": r.actor, "action": r.action, "target": r.target, "reason": r.reason, "outcome": r.outcome,
                 "detail": r.detail} for r in session.scalars(select(AccessLogRecord).order_by(AccessLogRecord.seq))]
