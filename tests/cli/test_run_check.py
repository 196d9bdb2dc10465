"""`callguard run <pbx> --check` connects and logs in to the PBX and opens the ledger, in a real process,
against the fake PBXs over real sockets, and leaves no file behind in the current directory."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from callguard.testing.fake_asterisk import FakeAsterisk
from callguard.testing.fake_freeswitch import FakeFreeSWITCH

SECRET = "s3cret-ami"


async def run_check(cwd: Path, pbx: str, config: str, *extra: str) -> tuple[int, str]:
    (cwd / "site.toml").write_text(config)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLGUARD_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "callguard", "--config", str(cwd / "site.toml"), "run", pbx, "--check", *extra,
        cwd=cwd, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode or 0, out.decode()


async def test_asterisk_check_logs_in_and_creates_nothing_here(tmp_path):
    async with FakeAsterisk(secret=SECRET) as pbx:
        code, out = await run_check(tmp_path, "asterisk", f'[asterisk]\nport = {pbx.port}\nsecret = "{SECRET}"\n',
                                    "--log-level", "DEBUG")  # upper case, as in Python's logging
        assert code == 0, out
        assert f"ok: AMI 127.0.0.1:{pbx.port}: logged in as 'callguard' (Asterisk Call Manager/11.0.0)" in out
        assert f"ok: ledger {tmp_path / 'callguard.sqlite'} does not exist yet; the listener will create it" in out
        assert sorted(p.name for p in tmp_path.iterdir()) == ["site.toml"]  # no ledger, no journal

        code, out = await run_check(tmp_path, "asterisk", f'[asterisk]\nport = {pbx.port}\nsecret = "wrong"\n')
        assert code == 1 and "cannot reach the Asterisk PBX: AMI login as 'callguard' refused" in out


async def test_asterisk_check_fails_when_nothing_answers(tmp_path):
    async with FakeAsterisk(secret=SECRET) as pbx:
        port = pbx.port  # closed when the block ends: nothing listens there any more
    code, out = await run_check(tmp_path, "asterisk", f'[asterisk]\nport = {port}\nsecret = "{SECRET}"\n'
                                                       'action_timeout_ms = 500\n')
    assert code == 1 and f"cannot log in to AMI at 127.0.0.1:{port} within 5 s" in out, out


async def test_freeswitch_check_logs_in_and_checks_mod_expr(tmp_path):
    async with FakeFreeSWITCH(password="esl-pass") as fake:
        fake.load_dialplan(str(Path(__file__).parents[2] / "dialplan" / "freeswitch" / "callguard.xml"))
        config = f'[freeswitch]\nport = {fake.port}\npassword = "esl-pass"\n'
        code, out = await run_check(tmp_path, "freeswitch", config)
        assert code == 0, out
        assert f"ok: event socket 127.0.0.1:{fake.port}: logged in, mod_expr" in out
        fake.modules.discard("mod_expr")
        code, out = await run_check(tmp_path, "freeswitch", config)
        assert code == 1 and "mod_expr is not loaded" in out and "heartbeat check" in out
        code, out = await run_check(tmp_path, "freeswitch", config.replace("esl-pass", "nope"))
        assert code == 1 and "refused the event socket password" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site.toml"]


async def test_an_unreachable_ledger_fails_the_check(tmp_path):
    async with FakeAsterisk(secret=SECRET) as pbx:
        code, out = await run_check(tmp_path, "asterisk", f'[asterisk]\nport = {pbx.port}\nsecret = "{SECRET}"\n'
                                                          '[ledger]\nurl = "postgresql+psycopg://cg@127.0.0.1:9/x"\n')
    assert code == 1 and "cannot open the ledger: cannot open ledger postgresql+psycopg://cg@127.0.0.1:9/x" in out
