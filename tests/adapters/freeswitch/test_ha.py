"""The FreeSWITCH listener under high availability (issue 15's hooks): ``Acting`` for a lease ``Term``.

In one process against FakeFreeSWITCH on real sockets: a listener acting in
term 1 pauses a call; it loses the lease (its ``may_act`` turns false: it
writes nothing more) and abandons (no recording stopped, no mask lifted, the
dialplan's port closed); a second listener started in term 2 has adopted
the call by the time ``start()`` returns, and the agent's hotkeys work on it.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from callguard.adapters.freeswitch.listener import FreeSwitchListener
from callguard.adapters.freeswitch.commands import directory_prompts
from callguard.ha.service import Acting, Term

from .conftest import SOUNDS, Rig, scenario


class Lease:
    """A lease a test can take away: ``may_act`` is what the listener checks before every write."""

    def __init__(self) -> None:
        self.held = True

    def may_act(self) -> bool:
        return self.held


async def acting(rig: Rig, term: Term) -> FreeSwitchListener:
    """What ElectedService's ``build(term)`` returns; ``start()`` is left to the caller."""
    listener = FreeSwitchListener(rig.config, rig.ledger, prompts=rig.prompts, prompt_path=directory_prompts(SOUNDS),
                                  term=term)
    rig.fake.watch(listener.busy)
    return listener


def port_open(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


async def test_a_fenced_listener_writes_nothing_abandons_without_unmasking_and_the_next_term_adopts(make_rig) -> Any:
    rig: Rig = await make_rig(start=False)
    first_lease = Lease()
    first = await acting(rig, Term("node-a", "freeswitch@test", 1, None, first_lease.may_act))
    as_acting: Acting = first  # what ElectedService expects of build(term) (checked by mypy)
    assert as_acting is first
    await first.start()  # connects and adopts (nothing to adopt yet) before it returns
    assert first.adoption.is_set() and first.inbound is not None
    rig.listener = first
    rig.fake.socket_address = ("127.0.0.1", first.outbound_port or 0)
    play = asyncio.ensure_future(rig.fake.play(scenario([{"at": 2, "press": "1"}, {"at": 10, "hotkey": "pause"},
                                                          {"at": 60, "hangup": "caller"}])))
    await rig.fake.until(20)
    record = rig.fake.calls[0]
    with rig.fake.hold():  # the scenario's clock stays at 20 while the lease changes hands
        await rig.wait_for(lambda: not first.busy())
        first_lease.held = False  # the lease deadline passed: nothing may be written any more
        sent = len(rig.fake.api_log)
        rig.fake.signal(record, "resume")  # a resume arrives at the fenced node ...
        await asyncio.sleep(0.3)
        fenced_writes = [c for _, c in rig.fake.api_log[sent:]]
        port = first.outbound_port or 0
        await first.abandon()
        port_closed = not port_open(port)
        second = await acting(rig, Term("node-b", "freeswitch@test", 2, "node-a", lambda: True))
        await second.start()  # returns once the live calls are adopted
        rig.listener = second
        rig.fake.socket_address = ("127.0.0.1", second.outbound_port or 0)
    await rig.fake.until(30)
    rig.fake.signal(record, "resume")
    await asyncio.wait_for(play, 60)
    await rig.settle()
    call = record.call_id
    # fenced: the resume was not acted on (no unmask, no read-back, not even the heartbeat)
    assert fenced_writes == []
    assert port_closed and second.adopted == [call]
    rec = record.recordings[0]
    # abandoned without a stop or an unmask: masked from the pause (10) until term 2's resume (30)
    spans = rec.audible_spans(60)
    assert not rec.audible_during(10.0, 30.0) and spans[-1] == (30.0, 60.0), spans
    kinds = rig.kinds(call)
    assert kinds.count("call-adopted") == 1 and "recording-stopped" not in kinds[:kinds.index("call-adopted")]
    adopted = rig.entry(call, "call-adopted").data
    assert adopted["muted_for"] == ["pause"]
    assert rig.entry(call, "recording-unmuted").pbx_time - rig.fake.base_epoch >= 30.0
