"""The acceptance vocabulary over :class:`~callguard.testing.FakeAsterisk` (in this process, real TCP)."""

from __future__ import annotations

import asyncio
from typing import Any

from callguard.testing.fake_asterisk import FakeAsterisk, FakeCall

from .interactive import Call, Pbx

SECRET = "acceptance-secret"
PROMPT_S = 0.3


def forged_frames(*frames: dict[str, str]) -> str:
    """A caller number that ends Asterisk's frame and injects ``frames`` (fixture asterisk22_crlf_callerid.ami)."""
    body = "".join("".join(f"{k}: {v}\r\n" for k, v in frame.items()) + "\r\n" for frame in frames)
    return "100\r\n\r\n" + body + "Event: UserEvent"


class FakeAsteriskCall(Call):
    def __init__(self, pbx: FakeAsterisk, call: FakeCall):
        self.pbx = pbx
        self.fake = call
        self.call_id = call.linkedid
        self.number = str(call.number)

    async def answer_notice(self, digits: str, timeout: float = 30.0) -> None:
        await self.fake.answer_prompt(digits, timeout=timeout)

    async def wait_decided(self, timeout: float = 30.0) -> str:
        await self.fake.wait_agi_left(timeout)
        return self.fake.outcome or ""

    async def wait_bridged(self, timeout: float = 30.0) -> None:
        async def bridged() -> None:
            while not (self.fake.agent is not None and self.fake.agent.bridge and self.fake.channel.bridge):
                await asyncio.sleep(0.01)
        await asyncio.wait_for(bridged(), timeout)

    async def hotkey(self, action: str) -> None:
        await self.fake.hotkey(action)

    async def payment(self, seconds: float) -> tuple[float, float]:
        await self.fake.ivr("payment-start")
        await self.pbx.sleep(seconds)
        await self.fake.ivr("payment-end")
        return self.fake.payment_windows()[-1]

    async def join(self, number: str, digits: str | None) -> None:
        joining = asyncio.ensure_future(self.fake.join(number, "Joiner", announceable=True))
        if digits is not None:
            await self.fake.answer_prompt(digits, party=number)
        await joining

    async def hangup(self) -> None:
        await self.fake.hangup()

    async def wait_ended(self, timeout: float = 30.0) -> None:
        await self.fake.wait_ended(timeout)

    def audible_between(self, t0: float, t1: float) -> bool:
        return any(r.audible_between(t0, t1) for r in self.fake.recordings)

    def recorded(self) -> bool:
        return bool(self.fake.recordings)


class FakeAsteriskPbx(Pbx):
    kind = "asterisk"
    real = False

    def __init__(self) -> None:
        self.fake = FakeAsterisk(secret=SECRET, default_prompt_s=PROMPT_S, timestamps=True)
        self.fake.pickup_s = 2.0  # CALLGUARD_PICKUP_S as shipped: the "killed" scenario times the fallback

    async def start(self) -> "FakeAsteriskPbx":
        await self.fake.start()
        return self

    def listener_settings(self) -> dict[str, Any]:
        return {"port": self.fake.port, "secret": SECRET, "heartbeat_interval_s": 0.5, "agi_guard_s": 2.0,
                "reconnect_min_s": 0.05, "reconnect_max_s": 0.5, "ping_interval_s": 1.0}

    async def listener_alive(self) -> bool:
        return self.fake.heartbeat_fresh() and self.fake.connected_clients > 0

    async def call(self, number: str, name: str = "Accept Caller") -> Call:
        fake = self.fake.place_call(number, name)
        await fake.wait_answered(30)
        return FakeAsteriskCall(self.fake, fake)

    async def hostile_call(self, victim: Call, action: str) -> Call:
        assert isinstance(victim, FakeAsteriskCall) and victim.fake.agent is not None
        agent = victim.fake.agent
        forged = {"Event": "UserEvent", "Privilege": "user,all", "Channel": agent.name, "Uniqueid": agent.uniqueid,
                  "Linkedid": victim.call_id, "UserEvent": "CallGuard", "Action": action, "Source": "agent-hotkey"}
        return await self.call(forged_frames(forged), "Mallory")

    async def close(self) -> None:
        await self.fake.stop()
