"""``callguard run freeswitch``: click's runner for the errors, a real subprocess for the service."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import threading
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from callguard.cli import main
from callguard.ledger import open_for_reading
from callguard.ledger.queries import timeline
from callguard.testing.fake_freeswitch import FakeFreeSWITCH

from .conftest import PASSWORD, scenario


def write_config(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_help_is_mounted_under_run() -> None:
    result = CliRunner().invoke(main, ["run", "freeswitch", "--help"])
    assert result.exit_code == 0, result.output
    assert "socket" in result.output and "--check" in result.output


def test_check_reports_what_it_would_use(tmp_path) -> None:
    """Nothing listens on the event socket port: the check says so instead of claiming ok."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again below: a port nobody listens on
    config = write_config(tmp_path / "callguard.toml", f'[ledger]\nurl = "sqlite:///{tmp_path}/l.sqlite"\n'
                                                       f'[freeswitch]\nport = {port}\nlisten_port = 8084\n')
    result = CliRunner().invoke(main, ["--config", config, "run", "freeswitch", "--check"])
    assert result.exit_code == 1, result.output
    assert f"cannot reach FreeSWITCH event socket at 127.0.0.1:{port}" in result.output


DIALPLAN = Path(__file__).parents[3] / "dialplan" / "freeswitch"


@contextlib.contextmanager
def fake_in_a_thread(setup=None):
    """A FakeFreeSWITCH on a real port, served from its own thread (click's runner is synchronous)."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder: dict = {}

    async def serve() -> None:
        fake = FakeFreeSWITCH(password=PASSWORD)
        fake.load_dialplan(str(DIALPLAN / "callguard.xml"))
        if setup is not None:
            setup(fake)
        await fake.start()
        holder["fake"], holder["stop"] = fake, asyncio.Event()
        ready.set()
        await holder["stop"].wait()
        await fake.stop()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield holder["fake"]
    finally:
        loop.call_soon_threadsafe(holder["stop"].set)
        thread.join(10)
        loop.close()


def check(tmp_path, port: int, *extra: str) -> Any:
    config = write_config(tmp_path / "callguard.toml", f'[ledger]\nurl = "sqlite:///{tmp_path}/l.sqlite"\n'
                                                       f'[freeswitch]\nport = {port}\nlisten_port = 8084\n'
                                                       f'password = "{PASSWORD}"\n')
    return CliRunner().invoke(main, ["--config", config, "run", "freeswitch", "--check", *extra])


def test_check_asks_freeswitch_and_reports_what_it_would_use(tmp_path) -> None:
    with fake_in_a_thread() as fake:
        result = check(tmp_path, fake.port, "--log-level", "DEBUG")  # logging's own spelling is accepted
    assert result.exit_code == 0, result.output
    assert f"ok: event socket 127.0.0.1:{fake.port}: logged in, mod_expr" in result.output
    assert "callguard context loaded with inline hotkeys" in result.output


def test_check_fails_naming_a_missing_module(tmp_path) -> None:
    """Issue 11 section 6: without mod_expr every call silently went unrecorded and --check passed."""
    with fake_in_a_thread(lambda fake: fake.modules.discard("mod_expr")) as fake:
        result = check(tmp_path, fake.port)
    assert result.exit_code == 1
    assert "mod_expr is not loaded" in result.output and "modules.conf.xml" in result.output


def test_check_fails_on_a_hotkey_binding_that_is_not_inline(tmp_path) -> None:
    def hold_binding(fake) -> None:
        fake.contexts["callguard"] = fake.contexts["callguard"].replace(" a si ", " a s ")
    with fake_in_a_thread(hold_binding) as fake:
        result = check(tmp_path, fake.port)
    assert result.exit_code == 1
    assert "without the inline flag: use 'a si'" in result.output


def test_check_fails_when_the_callguard_context_is_not_loaded(tmp_path) -> None:
    with fake_in_a_thread(lambda fake: fake.contexts.clear()) as fake:
        result = check(tmp_path, fake.port)
    assert result.exit_code == 1 and "no 'callguard' dialplan context is loaded" in result.output


def test_bad_settings_are_explained_and_exit_non_zero(tmp_path) -> None:
    config = write_config(tmp_path / "callguard.toml", '[freeswitch]\nrecording_dir = "/var/lib/my recordings"\n'
                                                       'host = "10.0.0.5"\nheartbeat_interval_s = 10.0\n'
                                                       '[consent]\ndecline_destination = "x; rm -rf /"\n')
    result = CliRunner().invoke(main, ["--config", config, "run", "freeswitch"])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    for words in ("recording_dir '/var/lib/my recordings' must be an absolute path",
                  "'ClueCon' for a remote host 10.0.0.5", "heartbeat_interval_s = 10",
                  "decline destination 'x; rm -rf /' must look like"):
        assert words in result.output


def test_unknown_key_in_the_section_is_a_config_error(tmp_path) -> None:
    config = write_config(tmp_path / "callguard.toml", "[freeswitch]\nlisten_prot = 8084\n")
    result = CliRunner().invoke(main, ["--config", config, "run", "freeswitch"])
    assert result.exit_code == 1 and "did you mean 'listen_port'" in result.output


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def start_service(tmp_path: Path, fake: FakeFreeSWITCH, password: str = PASSWORD) -> tuple[asyncio.subprocess.Process, int, str]:
    port = free_port()
    db = tmp_path / "ledger.sqlite"
    config = write_config(tmp_path / "callguard.toml", f"""
[ledger]
url = "sqlite:///{db}"
[freeswitch]
port = {fake.port}
listen_port = {port}
heartbeat_interval_s = 0.2
reconnect_min_s = 0.05
[recording]
confirm_timeout_ms = 3000
""")
    env = {**os.environ, "CALLGUARD_FREESWITCH__PASSWORD": password}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", "from callguard.cli import main; main()",
                                                "--config", config, "run",
                                                "freeswitch", "--log-level", "warning", env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    return proc, port, f"sqlite:///{db}"


async def test_the_service_in_a_real_process(tmp_path) -> None:
    async with FakeFreeSWITCH(password=PASSWORD, time_scale=0.02) as fake:
        proc, port, url = await start_service(tmp_path, fake)
        try:
            async def logged_in() -> None:
                while not any(c.authed for c in fake.clients) or not fake.globals.get("callguard_heartbeat"):
                    await asyncio.sleep(0.05)
            await asyncio.wait_for(logged_in(), 60)
            fake.socket_address = ("127.0.0.1", port)
            record = await asyncio.wait_for(fake.play(scenario([
                {"at": 2.5, "press": "1"}, {"at": 10, "hotkey": "pause"}, {"at": 20, "hotkey": "resume"},
                {"at": 30, "hangup": "caller"}])), 60)
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
            out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    assert record.decision == "granted" and record.dialplan == "decided"
    assert any(c.startswith(f"uuid_record {record.call_id} mask ") for _, c in fake.api_log)
    kinds = [e.kind for e in timeline(open_for_reading(url), record.call_id)]
    assert kinds[:3] == ["call-offered", "rule-applied", "notice-started"]
    assert "recording-muted" in kinds and kinds[-1] == "hangup"


def test_a_refused_password_stops_the_service_with_the_reason(tmp_path) -> None:
    """Through click (exit code and message), against a fake running in its own thread."""
    import threading

    ready = threading.Event()
    holder: dict[str, object] = {}

    def serve_fake() -> None:
        async def run() -> None:
            async with FakeFreeSWITCH(password=PASSWORD) as fake:
                holder["port"] = fake.port
                holder["stop"] = stop = asyncio.Event()
                holder["loop"] = asyncio.get_running_loop()
                ready.set()
                await stop.wait()
        asyncio.run(run())

    thread = threading.Thread(target=serve_fake, daemon=True)
    thread.start()
    assert ready.wait(10)
    config = write_config(tmp_path / "callguard.toml", f'[ledger]\nurl = "sqlite:///{tmp_path}/l.sqlite"\n'
                                                       f'[freeswitch]\nport = {holder["port"]}\nlisten_port = 0\n')
    try:
        result = CliRunner().invoke(main, ["--config", config, "run", "freeswitch", "--log-level", "error"],
                                    env={"CALLGUARD_FREESWITCH__PASSWORD": "wrong"})
    finally:
        holder["loop"].call_soon_threadsafe(holder["stop"].set)  # type: ignore[union-attr]
        thread.join(10)
    assert result.exit_code == 1, result.output
    assert "refused the event socket password" in result.output and "Traceback" not in result.output
