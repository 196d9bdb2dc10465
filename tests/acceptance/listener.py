"""The listener under test: a real ``callguard run <pbx>`` process, as an admin runs it.

Killed, restarted, stalled (SIGSTOP/SIGCONT) and stopped (SIGTERM) exactly
as the scenarios say; its ledger is a real SQLite file read with the
ledger's own queries.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from callguard.ledger.queries import StoredEntry, timeline


def _toml(sections: dict[str, dict[str, Any]]) -> str:
    out = []
    for name, values in sections.items():
        out.append(f"[{name}]")
        for key, value in values.items():
            if isinstance(value, bool):
                out.append(f"{key} = {'true' if value else 'false'}")
            elif isinstance(value, (int, float)):
                out.append(f"{key} = {value}")
            else:
                out.append(f'{key} = "{value}"')
    return "\n".join(out) + "\n"


class ListenerProcess:
    """``python -m callguard --config <toml> run <kind>`` with its own SQLite ledger."""

    def __init__(self, kind: str, tmp: Path, pbx_settings: dict[str, Any], **sections: dict[str, Any]):
        self.kind = kind
        self.tmp = tmp
        self.ledger_url = f"sqlite:///{tmp / 'ledger.sqlite'}"
        config = {
            "listener": {"chain_id": f"acceptance-{kind}"},
            kind: pbx_settings,
            "ledger": {"url": self.ledger_url},
            "vault": {"ingest_on_stop": False},
            "consent": {"timeout_ms": 1500, "max_attempts": 2},
            "recording": {"confirm_timeout_ms": 1500},
            "policy": {"home": "US-NY"},
        }
        for name, values in sections.items():
            config.setdefault(name, {}).update(values)
        self.config = tmp / "callguard.toml"
        self.config.write_text(_toml(config))
        self.proc: asyncio.subprocess.Process | None = None
        self.extra_args: list[str] = []
        self.launcher: list[str] = ["-m", "callguard"]
        self.logs: list[bytes] = []
        self._reader: asyncio.Task | None = None
        self._engine: Any = None

    async def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CALLGUARD_", "NOTIFY_", "WATCHDOG_"))}
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, *self.launcher, "--config", str(self.config), "run", self.kind, *self.extra_args,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, env=env)
        self._reader = asyncio.ensure_future(self._drain())

    async def _drain(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        while line := await self.proc.stderr.readline():
            self.logs.append(line)

    @property
    def log_text(self) -> str:
        return b"".join(self.logs).decode("utf-8", "replace")

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    async def kill(self) -> None:
        """kill -9: no goodbye, nothing released."""
        self.signal(signal.SIGKILL)
        await self.wait_exit(10)

    async def terminate(self, within: float = 30.0) -> float:
        """SIGTERM; returns how long the listener took to stop, by its own "listener stopped" line.

        That is the listener's part (calls released, recordings stopped,
        PBX link closed).  Flushing the ledger and the interpreter's exit
        follow; on a loaded CI machine they alone can take seconds, so the
        process exit is only bounded by ``within``.
        """
        sent = time.time()
        self.signal(signal.SIGTERM)
        await self.wait_exit(within)
        for line in reversed(self.log_text.splitlines()):
            if "listener stopped" in line:
                stamp = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
                return stamp - sent
        raise AssertionError(f"the listener exited without saying it stopped:\n{self.log_text[-2000:]}")

    def stall(self) -> None:
        self.signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.signal(signal.SIGCONT)

    async def wait_exit(self, timeout: float) -> int:
        assert self.proc is not None
        code = await asyncio.wait_for(self.proc.wait(), timeout)
        if self._reader is not None:
            await asyncio.wait_for(self._reader, 5)
        return code

    # -- the ledger, read as `callguard ledger show` reads it --------------------------------

    def entries(self, call_id: str) -> list[StoredEntry]:
        from sqlalchemy import create_engine

        if self._engine is None:
            self._engine = create_engine(self.ledger_url)
        return timeline(self._engine, call_id)

    def kinds(self, call_id: str) -> list[str]:
        return [e.kind for e in self.entries(call_id)]

    def entry(self, call_id: str, kind: str, **match: Any) -> StoredEntry:
        for e in self.entries(call_id):
            if e.kind == kind and all(e.data.get(k) == v for k, v in match.items()):
                return e
        raise AssertionError(f"no {kind} {match} in {self.kinds(call_id)}")

    async def wait_entry(self, call_id: str, kind: str, timeout: float = 30.0, **match: Any) -> StoredEntry:
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.entry(call_id, kind, **match)
            except AssertionError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"timed out waiting for {kind} {match} in call {call_id}: ledger has "
                                         f"{self.kinds(call_id)}; listener log:\n{self.log_text[-3000:]}") from None
            except Exception:  # the file may not exist yet / be mid-migration
                if time.monotonic() > deadline:
                    raise
            await asyncio.sleep(0.05)

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
