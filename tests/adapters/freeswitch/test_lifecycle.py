"""Listener lifecycle against the fake FreeSWITCH: stop, restart, in-process and as a service."""

from __future__ import annotations

import asyncio
import socket

from callguard.adapters.freeswitch.listener import FreeSwitchListener
from callguard.adapters.freeswitch.commands import directory_prompts

from .conftest import PASSWORD, SOUNDS, make_config, scenario


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_a_stopped_listener_lets_go_of_the_dialplan_port_so_a_new_one_can_serve_it(rig) -> None:
    """gevent closed the listening socket from a hub callback its ending thread never ran: the port
    stayed bound after stop() and a restarted listener could not serve the dialplan's socket."""
    port = free_port()
    config = make_config(rig.fake.port, freeswitch={"listen_port": port})
    for _ in range(2):
        listener = FreeSwitchListener(config, rig.ledger, prompts=rig.prompts, prompt_path=directory_prompts(SOUNDS))
        await listener.start()
        assert listener.outbound_port == port
        await listener.stop()
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0, "still listening after stop()"


# -- the service in a real process ----------------------------------------------------------------

async def start_service(tmp_path, fake, **freeswitch) -> tuple[asyncio.subprocess.Process, int, str]:
    import os
    import sys

    port = free_port()
    db = tmp_path / "ledger.sqlite"
    extra = "".join(f"{k} = {v}\n" for k, v in freeswitch.items())
    config = tmp_path / "callguard.toml"
    config.write_text(f"""
[ledger]
url = "sqlite:///{db}"
[freeswitch]
port = {fake.port}
listen_port = {port}
heartbeat_interval_s = 0.2
reconnect_min_s = 0.05
reconnect_max_s = 0.2
{extra}[recording]
confirm_timeout_ms = 3000
[vault]
ingest_on_stop = false
""")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("CALLGUARD_")},
           "CALLGUARD_FREESWITCH__PASSWORD": PASSWORD}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-X", "faulthandler", "-m", "callguard", "--config", str(config), "run",
                                                "freeswitch", "--log-level", "warning", env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    return proc, port, f"sqlite:///{db}"


async def wait_logged_in(fake, timeout: float = 60) -> None:
    async def logged_in() -> None:
        while not any(c.authed for c in fake.clients) or not fake.globals.get("callguard_heartbeat"):
            await asyncio.sleep(0.02)
    await asyncio.wait_for(logged_in(), timeout)


async def sigterm_takes(proc: asyncio.subprocess.Process) -> float:
    import signal
    import time

    start = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), 10)
    except asyncio.TimeoutError:
        proc.send_signal(signal.SIGABRT)  # faulthandler dumps every thread's stack on stderr
        _, err = await asyncio.wait_for(proc.communicate(), 10)
        raise AssertionError("still running 10 s after SIGTERM:\n" + err.decode()[-6000:]) from None
    await proc.communicate()
    return time.monotonic() - start


async def test_sigterm_stops_the_service_within_2_s_while_freeswitch_is_unreachable(tmp_path) -> None:
    from callguard.testing.fake_freeswitch import FakeFreeSWITCH

    async with FakeFreeSWITCH(password=PASSWORD, clock="real") as fake:
        proc, _, _ = await start_service(tmp_path, fake)
        await wait_logged_in(fake)
        await fake.stop()  # FreeSWITCH goes away: the listener keeps reconnecting
        await asyncio.sleep(0.5)
        took = await sigterm_takes(proc)
    assert proc.returncode == 0 and took < 2.0, took


async def test_sigterm_stops_the_service_within_2_s_while_freeswitch_stalls(tmp_path) -> None:
    """A recording running and FreeSWITCH answering nothing any more (a hung event socket)."""
    from callguard.testing.fake_freeswitch import FakeFreeSWITCH, Faults

    async with FakeFreeSWITCH(password=PASSWORD, clock="real", prompt_duration_s=0.3,
                              faults=Faults()) as fake:
        proc, port, _ = await start_service(tmp_path, fake)
        await wait_logged_in(fake)
        fake.socket_address = ("127.0.0.1", port)
        play = asyncio.ensure_future(fake.play(scenario([{"at": 60, "hangup": "caller"}], agent=None),
                                               auto_press="1"))
        async def recording() -> None:
            while not (fake.calls and fake.calls[0].recordings):
                await asyncio.sleep(0.02)
        try:
            await asyncio.wait_for(recording(), 30)
        except asyncio.TimeoutError:
            raise AssertionError(f"no recording: {fake.calls and fake.calls[0].caller.trace}, {fake.api_log}")
        fake.faults.stall_on.append(r"^api ")  # from now on every api command hangs
        await asyncio.sleep(0.5)
        took = await sigterm_takes(proc)
        play.cancel()
    assert proc.returncode == 0 and took < 2.0, took


async def test_a_payment_segment_stays_off_the_recording_with_the_listener_stopped_for_5_s(tmp_path) -> None:
    """Issue 11 section 4: the listener SIGSTOPped across a payment segment -> 0 ms of payment recorded."""
    import os
    import signal

    from callguard.testing.fake_freeswitch import FakeFreeSWITCH

    async with FakeFreeSWITCH(password=PASSWORD, clock="real", prompt_duration_s=0.5) as fake:
        proc, port, _ = await start_service(tmp_path, fake)
        try:
            await wait_logged_in(fake)
            fake.socket_address = ("127.0.0.1", port)
            play = asyncio.ensure_future(fake.play(scenario([{"at": 300, "hangup": "caller"}], agent=None),
                                                   auto_press="1"))

            async def recording() -> None:
                while not (fake.calls and fake.calls[0].recordings):
                    await asyncio.sleep(0.02)
            await asyncio.wait_for(recording(), 60)
            record = fake.calls[0]
            await asyncio.sleep(0.5)
            os.kill(proc.pid, signal.SIGSTOP)  # the listener stalls for 5 s ...
            fake.signal(record, "payment-start", source="ivr")  # ... across the whole payment segment
            await asyncio.sleep(2.0)
            fake.signal(record, "payment-end", source="ivr")
            await asyncio.sleep(3.0)
            os.kill(proc.pid, signal.SIGCONT)

            async def unmasked() -> None:  # the listener confirms the end, then unmasks
                while record.recordings[0].masked or not any(op == "unmask" for _, op in record.recordings[0].ops):
                    await asyncio.sleep(0.02)
            await asyncio.wait_for(unmasked(), 30)
            await asyncio.sleep(0.5)
            await fake.hangup_call(record)
            play.cancel()
        finally:
            if proc.returncode is None:
                os.kill(proc.pid, signal.SIGCONT)
                await sigterm_takes(proc)
    began, ended = (next(t for t, c in record.caller.trace if c == f"execute_extension callguard_payment_{what}")
                    for what in ("start", "end"))
    spans = record.recordings[0].audible_spans(record.ended_at)
    payment = sum(max(0.0, min(b, ended) - max(a, began)) for a, b in spans)
    assert payment == 0.0, (spans, began, ended)
    assert spans and spans[0][0] < began and spans[-1][1] > ended  # recorded before, and again after
