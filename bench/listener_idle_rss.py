"""Idle memory of the listener as installed: ``callguard run asterisk|freeswitch``, logged in, no calls.

The real CLI in its own process against FakeAsterisk / FakeFreeSWITCH (in
this process), default configuration (``[ledger] writer = "process"``), a
vault key present (so the vault ingest is armed, in the writer process).
Once the listener has logged in and warmed up, we read the RSS of the
listener process and of its ledger writer process.

Baseline in the same run, a process that only holds the PBX connection
with the library we replace: plain panoramisk 1.4 (Asterisk: ``Manager``
logged in) and greenswitch (FreeSWITCH: ``InboundESL`` connected and
subscribed).  Target: listener under 80 MiB.

    python bench/listener_idle_rss.py [--pbx asterisk|freeswitch|both]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))
from measure import rss_kib  # noqa: E402

SECRET = "idle-bench"
SETTLE_S = 5.0  #: after login: the policy warm-up and the first heartbeats are done


def writer_pids(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def site(tmp: Path, pbx: str, port: int) -> Path:
    config = tmp / "callguard.toml"
    section = (f'[asterisk]\nport = {port}\nsecret = "{SECRET}"\nrecording_dir = "{tmp / "spool"}"\n'
               if pbx == "asterisk" else
               f'[freeswitch]\nport = {port}\npassword = "{SECRET}"\nlisten_port = 0\n'
               f'recording_dir = "{tmp / "spool"}"\n')
    config.write_text(section + textwrap.dedent(f"""
        [ledger]
        url = "sqlite:///{tmp / 'ledger.sqlite'}"
        [vault]
        dir = "{tmp / 'vault'}"
        private_keys = "{tmp / 'private'}"
        [users]
        "{os.environ.get('USER') or 'root'}" = "service"
        """))
    subprocess.run([sys.executable, "-m", "callguard", "--config", str(config), "keys", "generate",
                    "--no-passphrase"], check=True, capture_output=True)
    return config


async def listener_rss(pbx: str, port: int, connected, tmp: Path) -> tuple[int, list[int]]:
    config = site(tmp, pbx, port)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLGUARD_")}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "callguard", "--config", str(config), "run",
                                                pbx, env=env, stdout=asyncio.subprocess.DEVNULL,
                                                stderr=asyncio.subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not connected():
            if time.monotonic() > deadline or proc.returncode is not None:
                raise SystemExit(f"callguard run {pbx} did not log in: {(await proc.stderr.read()).decode()}")
            await asyncio.sleep(0.1)
        await asyncio.sleep(SETTLE_S)
        return rss_kib(proc.pid), [rss_kib(p) for p in writer_pids(proc.pid)]
    finally:
        proc.terminate()
        await proc.wait()


def baseline_rss(code: str) -> int:
    """RSS of a fresh interpreter that ran ``code`` (which connects and then prints 'ready')."""
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if "ready" not in line:
            raise SystemExit(f"baseline did not connect: {line!r}")
        time.sleep(1.0)
        return rss_kib(proc.pid)
    finally:
        proc.terminate()
        proc.wait()


PANORAMISK = textwrap.dedent("""
    import asyncio, sys
    from panoramisk import Manager
    async def main():
        manager = Manager(host="127.0.0.1", port={port}, username="callguard", secret="{secret}", ping_delay=30)
        await manager.connect()
        await asyncio.sleep(1.0)
        print("ready", flush=True)
        await asyncio.sleep(3600)
    asyncio.run(main())
""")

GREENSWITCH = textwrap.dedent("""
    import gevent
    from greenswitch import InboundESL
    esl = InboundESL(host="127.0.0.1", port={port}, password="{secret}")
    esl.connect()
    esl.send("event plain CHANNEL_HANGUP_COMPLETE CUSTOM callguard::pause callguard::resume")
    print("ready", flush=True)
    gevent.sleep(3600)
""")


async def asterisk(tmp: Path) -> tuple[str, int, list[int], int]:
    from callguard.testing.fake_asterisk import FakeAsterisk

    async with FakeAsterisk(secret=SECRET) as pbx:
        listener, writers = await listener_rss("asterisk", pbx.port, pbx.heartbeat_fresh, tmp)
        base = await asyncio.to_thread(baseline_rss, PANORAMISK.format(port=pbx.port, secret=SECRET))
    return "asterisk (baseline: plain panoramisk 1.4 Manager)", listener, writers, base


async def freeswitch(tmp: Path) -> tuple[str, int, list[int], int]:
    from callguard.testing.fake_freeswitch import FakeFreeSWITCH

    fake = FakeFreeSWITCH(password=SECRET)
    await fake.start()
    try:
        listener, writers = await listener_rss("freeswitch", fake.port, lambda: any(c.authed for c in fake.clients), tmp)
        base = await asyncio.to_thread(baseline_rss, GREENSWITCH.format(port=fake.port, secret=SECRET))
    finally:
        await fake.stop()
    return "freeswitch (baseline: greenswitch InboundESL)", listener, writers, base


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pbx", choices=("asterisk", "freeswitch", "both"), default="both")
    args = parser.parse_args()
    runs = [asterisk, freeswitch] if args.pbx == "both" else [asterisk if args.pbx == "asterisk" else freeswitch]
    ok = True
    print(f"machine: load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    for run in runs:
        with tempfile.TemporaryDirectory(prefix="cg-idle-") as tmp:
            name, listener, writers, base = await run(Path(tmp))
        print(f"{name}: listener {listener / 1024:.1f} MiB idle RSS (target < 80 MiB), ratio to the baseline "
              f"{listener / base:.2f}x ({base / 1024:.1f} MiB); ledger writer process "
              f"{', '.join(f'{w / 1024:.1f} MiB' for w in writers) or 'none'}")
        ok = ok and listener < 80 * 1024
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
