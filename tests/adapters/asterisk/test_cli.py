"""``callguard run asterisk``: CliRunner for the errors, a real subprocess for the service."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

from click.testing import CliRunner

from callguard.cli import main
from callguard.ledger import open_for_reading, timeline, verify
from callguard.testing.fake_asterisk import FakeAsterisk, FakeAsteriskThread

from .conftest import SECRET


def write_config(tmp_path: Path, port: int, secret: str = SECRET, **asterisk: object) -> Path:
    settings = {"port": port, "secret": secret, "heartbeat_interval_s": 0.2, "reconnect_min_s": 0.05,
                "reconnect_max_s": 0.2, **asterisk}
    lines = ["[asterisk]"] + [f"{k} = {json.dumps(v)}" for k, v in settings.items()]  # JSON scalars are TOML
    lines += ["[ledger]", f'url = "sqlite:///{tmp_path / "ledger.sqlite"}"', "[listener]", 'chain_id = "ast-test"']
    path = tmp_path / "callguard.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def run_cli(*args: str) -> object:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLGUARD_")}
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def test_missing_secret_is_a_clear_error(tmp_path):
    config = write_config(tmp_path, 5038, secret="")
    result = run_cli("run", "asterisk", "--config", str(config))
    assert result.exit_code == 1
    assert "[asterisk] secret is empty" in result.output and "CALLGUARD_ASTERISK__SECRET" in result.output
    assert "Traceback" not in result.output


def test_bad_settings_are_all_reported_at_once(tmp_path):
    config = write_config(tmp_path, 5038, tls=True, ca_file="/nonexistent/ca.pem", recording_dir="relative/dir",
                          heartbeat_interval_s=10.0)
    result = run_cli("run", "asterisk", "--config", str(config))
    assert result.exit_code == 1
    for fragment in ("ca_file '/nonexistent/ca.pem' does not exist", "recording_dir 'relative/dir' must be an "
                     "absolute path", "heartbeat_interval_s = 10"):
        assert fragment in result.output


def test_unknown_key_in_asterisk_section(tmp_path):
    config = write_config(tmp_path, 5038)
    config.write_text(config.read_text() + "[consent]\n")
    config.write_text(config.read_text().replace("[asterisk]\n", "[asterisk]\nprot = 1\n"))
    result = run_cli("run", "asterisk", "--config", str(config))
    assert result.exit_code == 1 and "did you mean 'port'" in result.output


def test_check_opens_the_ledger_and_prompts_and_logs_in(tmp_path):
    controller = FakeAsteriskThread(secret=SECRET)
    pbx = controller.start()
    try:
        config = write_config(tmp_path, pbx.port)
        result = run_cli("run", "asterisk", "--config", str(config), "--check")
    finally:
        controller.stop()
    assert result.exit_code == 0, result.output
    assert result.output.startswith("ok: prompts in en, es, fr\nok: ledger ")
    assert f"ok: AMI 127.0.0.1:{pbx.port}: logged in as 'callguard'" in result.output


def test_wrong_secret_exits_with_the_reason(tmp_path):
    controller = FakeAsteriskThread(secret=SECRET)
    pbx = controller.start()
    try:
        config = write_config(tmp_path, pbx.port, secret="not-the-secret")
        result = run_cli("run", "asterisk", "--config", str(config), "--log-level", "error")
        assert result.exit_code == 1
        assert "AMI login as 'callguard' refused (Authentication failed)" in result.output
    finally:
        controller.stop()


async def test_real_process_handles_a_call_and_stops_cleanly(tmp_path, pbx: FakeAsterisk):
    config = write_config(tmp_path, pbx.port)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLGUARD_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "callguard", "run", "asterisk", "--config", str(config),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env)
    try:
        await pbx.wait_for_client(timeout=90)
        await asyncio.wait_for(_until(pbx.heartbeat_fresh), 60)
        call = pbx.place_call("+14155550123", "José Cust")
        await call.answer_prompt("1", timeout=60)
        await asyncio.wait_for(_until(lambda: call.recording is not None), 60)
        await call.wait_agi_left()
        await call.hotkey("pause")
        await asyncio.wait_for(_until(lambda: call.recording.muted), 60)
        await call.hangup()
        await asyncio.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, stderr.decode()
    assert b"AMI connected" in stderr and b"Traceback" not in stderr
    # The prompt came from the shipped catalogue, by its installed Asterisk path.
    gets = [a["command"] for _, a in pbx.actions if a.get("command", "").startswith("GET DATA")]
    assert gets and gets[0].split()[2].endswith("/en/callguard/notice")
    db = open_for_reading(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    try:
        kinds = [e.kind for e in timeline(db, call.linkedid)]
        assert kinds[0] == "call-offered" and "recording-started" in kinds and "recording-muted" in kinds
        assert kinds[-1] == "hangup"
        assert verify(db).ok
    finally:
        db.dispose()


async def _until(predicate) -> None:
    while not predicate():
        await asyncio.sleep(0.01)
