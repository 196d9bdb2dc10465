"""Conference members, through the fake FreeSWITCH on real sockets (issue 19 section 3).

``conference::maintenance`` ``add-member`` events carry no ``variable_*``
headers (fixture conference_join), so nothing in them says ``callguard``:
members are mapped by ``Unique-ID`` and ``Conference-Name``.  Seen on a real
1.10.12 before this: a +44 guest joined the recorded caller's conference
unannounced and was recorded.
"""

from __future__ import annotations

import asyncio
from typing import Any

from callguard.testing.fake_freeswitch import CallRecord

from .conftest import scenario

GUEST = "+442079460000"


async def play_with_conference(rig: Any, steps: list[dict[str, Any]], actions: list[tuple[float, str]], *,
                               number: str = "+14155550123", guest: str = GUEST, through_socket: bool = False,
                               presses: str = "") -> tuple[CallRecord, list[Any]]:
    """Play a call while, at scenario times, the caller enters room "cgtest" and a guest comes and goes."""
    guests: list[Any] = []

    async def drive() -> None:
        fake = rig.fake
        while not fake.calls:
            await asyncio.sleep(0.001)
        record = fake.calls[-1]
        for at, what in actions:
            await fake.until(at)
            if what == "enter":
                fake.conference_add(record.caller, "cgtest")
            elif what == "guest":
                guests.append(fake._spawn(fake.conference_guest(guest, "Guest", "cgtest", auto_press=presses,
                                                                through_socket=through_socket)))
            elif what == "guest-leaves":
                while not guests[0].done():
                    await asyncio.sleep(0.001)
                await fake.hangup(guests[0].result())

    record, _ = await asyncio.gather(rig.play(scenario(steps, number=number, agent=None)), drive())
    return record, [g.result() for g in guests]


async def test_a_guest_walking_straight_into_the_conference_is_seen_and_not_recorded(rig) -> None:
    record, _ = await play_with_conference(rig, [{"at": 2.5, "press": "1"}, {"at": 60, "hangup": "caller"}],
                                           [(10, "enter"), (20, "guest")])
    call = record.call_id
    joined = rig.entry(call, "party-joined")
    assert joined.data["party"]["number"] == GUEST and joined.data["staff"] is False
    assert joined.data["party"]["jurisdiction"] == "GB"
    assert rig.entry(call, "violation").data["what"] == "unannounced party"
    # California caller: all-party, an unannounced party stops the recording at once
    assert record.recordings[0].audible_spans(60) == [(2.5, 20.0)]


async def test_a_guest_in_a_one_party_call_mutes_it_until_they_leave(rig) -> None:
    record, _ = await play_with_conference(rig, [{"at": 2.5, "press": "1"}, {"at": 60, "hangup": "caller"}],
                                           [(10, "enter"), (20, "guest"), (30, "guest-leaves")],
                                           number="+12125550123", guest="+12145550100")
    call = record.call_id
    assert rig.entry(call, "party-joined").data["party"]["number"] == "+12145550100"
    assert rig.entry(call, "violation").data["what"] == "unannounced party"
    # New York and Texas: one-party; silent while the unannounced guest is in the room
    assert record.recordings[0].audible_spans(60) == [(2.5, 20.0), (30.0, 60.0)]


async def test_a_guest_through_the_join_path_hears_the_notice_before_being_recorded(rig) -> None:
    record, guests = await play_with_conference(rig, [{"at": 2.5, "press": "1"}, {"at": 60, "hangup": "caller"}],
                                                [(10, "enter"), (20, "guest")], through_socket=True, presses="1")
    call = record.call_id
    guest = guests[0]
    assert any("renotice-join" in c for _, c in guest.trace)
    consent = rig.entry(call, "consent", party="joiner")
    assert consent.data["decision"] == "granted" and consent.data["channel"] == guest.uuid
    assert rig.entries(call, "violation") == []
    assert len(rig.entries(call, "party-joined")) == 1  # the add-member that followed is the same party
    spans = record.recordings[0].audible_spans(60)
    assert spans[0] == (2.5, 20.0) and spans[-1][1] == 60.0  # silent while the guest decided, then recorded


async def test_members_already_in_the_room_are_parties_when_the_recorded_caller_enters(rig) -> None:
    record, _ = await play_with_conference(rig, [{"at": 2.5, "press": "1"}, {"at": 60, "hangup": "caller"}],
                                           [(5, "guest"), (10, "enter")])
    call = record.call_id
    assert rig.entry(call, "party-joined").data["party"]["channel"] in rig.fake.channels
    assert record.recordings[0].audible_spans(60) == [(2.5, 10.0)]
