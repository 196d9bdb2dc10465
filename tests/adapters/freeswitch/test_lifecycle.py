"""Listener lifecycle against the fake FreeSWITCH: stop, restart, in-process and as a service."""

from __future__ import annotations

import asyncio
import socket

from callguard.adapters.freeswitch.listener import FreeSwitchListener
from callguard.adapters.freeswitch.commands import directory_prompts

from .conftest import SOUNDS, make_config


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
