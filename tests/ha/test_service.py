"""ElectedService on a real PostgreSQL lease: build and start on election, abandon on fence, terms in the ledger."""

from __future__ import annotations

import asyncio
import time

import pytest

from callguard.ha.lease import PgLease
from callguard.ha.node import HaNode
from callguard.ha.service import ElectedService, Term
from callguard.ha.settings import HaConfig
from tests.ledger.conftest import pg_base_url, pg_schema

pytestmark = pytest.mark.postgres

SETTINGS = HaConfig(enabled=True, lease_ttl_s=1.0, renew_interval_s=0.2, poll_interval_s=0.1, safety_margin_s=0.3)


@pytest.fixture
def pg_url():
    with pg_schema(pg_base_url()) as url:
        yield url


class Listener:
    """Stands in for a PBX listener; records what the election asked of it and when."""

    def __init__(self, term: Term, log: list, fail: bool = False) -> None:
        self.term, self.log, self.fail = term, log, fail

    async def start(self) -> None:
        if self.fail:
            raise RuntimeError("PBX refused the login")
        self.log.append(("start", self.term.node_id, self.term.epoch, self.term.previous_holder, time.monotonic()))

    async def abandon(self) -> None:
        self.log.append(("abandon", self.term.node_id, self.term.epoch, self.term.may_act(), time.monotonic()))

    async def stop(self) -> None:
        self.log.append(("stop", self.term.node_id, self.term.epoch, None, time.monotonic()))


class Ledger:
    def __init__(self) -> None:
        self.entries = []

    def append(self, entry, received_at: float) -> None:
        self.entries.append(entry)


async def _until(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def _service(url: str, node_id: str, log: list, ledger: Ledger, fail: bool = False) -> ElectedService:
    lease = PgLease(url, "asterisk@pbx1", node_id, ttl_s=SETTINGS.lease_ttl_s, statement_timeout_s=0.5)

    async def build(term: Term) -> Listener:
        return Listener(term, log, fail)

    holder: dict[str, ElectedService] = {}
    node = HaNode(SETTINGS, lease, lambda change: holder["s"].on_change(change))
    service = holder["s"] = ElectedService(node, build, ledger)
    return service


async def test_the_standby_takes_over_when_the_active_node_goes_silent(pg_url):
    log: list = []
    ledger = Ledger()
    a = _service(pg_url, "a", log, ledger)
    await a.node.start()
    await _until(lambda: any(e[0] == "start" and e[1] == "a" for e in log))
    b = _service(pg_url, "b", log, ledger)
    await b.node.start()
    await asyncio.sleep(0.5)
    assert not any(e[1] == "b" for e in log), "b acted while a held the lease"

    a.node._stop.set()  # a's renewals stop, as when its process hangs: no release, no goodbye
    await _until(lambda: any(e[0] == "abandon" and e[1] == "a" for e in log))
    await _until(lambda: any(e[0] == "start" and e[1] == "b" for e in log))
    abandoned = next(e for e in log if e[0] == "abandon")
    started_b = next(e for e in log if e[0] == "start" and e[1] == "b")
    assert abandoned[3] is False, "a still considered itself allowed to act when it abandoned"
    assert abandoned[4] <= started_b[4]
    assert started_b[2] == 2 and started_b[3] == "a"
    kinds = [(e.call_id, e.kind, e.data.get("node")) for e in ledger.entries]
    assert kinds == [("ha:asterisk@pbx1", "ha-term-started", "a"), ("ha:asterisk@pbx1", "ha-term-ended", "a"),
                     ("ha:asterisk@pbx1", "ha-term-started", "b")]
    await b.stop()
    assert log[-1][0] == "stop" and ledger.entries[-1].kind == "ha-term-ended"
    a.node.lease.close()


async def test_a_node_that_cannot_start_gives_the_lease_to_another(pg_url):
    log: list = []
    ledger = Ledger()
    broken = _service(pg_url, "broken", log, ledger, fail=True)
    await broken.node.start()
    await _until(lambda: any(e.kind == "ha-term-ended" for e in ledger.entries))
    healthy = _service(pg_url, "healthy", log, ledger)
    await healthy.node.start()
    await _until(lambda: any(e[0] == "start" and e[1] == "healthy" for e in log), timeout=10)
    ended = next(e for e in ledger.entries if e.kind == "ha-term-ended")
    assert "start failed: PBX refused the login" in ended.data["reason"]
    await healthy.stop()
    await broken.stop()
