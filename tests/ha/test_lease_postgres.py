"""The leader lease on a real PostgreSQL, between real processes.

Each node runs in its own process (tests/ha/lease_node.py) and reports on
one machine-wide monotonic clock when it became active, when it stopped,
and every moment it considered itself allowed to act.  A kill -9 and a
network partition (a proxy that silently drops packets) are real.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from callguard.ha.lease import PgLease
from callguard.testing.netfault import PartitionProxy
from tests.ledger.conftest import pg_base_url, pg_schema

pytestmark = pytest.mark.postgres

NODE = Path(__file__).with_name("lease_node.py")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def pg_url():
    with pg_schema(pg_base_url()) as url:
        yield url


class Node:
    """A lease_node.py process and the lines it printed."""

    def __init__(self, url: str, scope: str, node_id: str) -> None:
        self.node_id = node_id
        env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        self.proc = subprocess.Popen([sys.executable, str(NODE), url, scope, node_id], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=env)
        self.lines: list[dict] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(json.loads(line))

    def events(self, kind: str) -> list[dict]:
        return [line for line in list(self.lines) if line["event"] == kind]

    def wait_for(self, kind: str, timeout: float = 20.0, after: float = 0.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [e for e in self.events(kind) if e["t"] >= after]
            if found:
                return found[0]
            if self.proc.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.02)
        err = self.proc.stderr.read() if self.proc.poll() is not None and self.proc.stderr else ""
        raise AssertionError(f"{self.node_id}: no {kind!r} within {timeout}s; lines={self.lines[-5:]} {err}")

    def kill(self, sig: int = signal.SIGKILL) -> float:
        at = time.monotonic()
        self.proc.send_signal(sig)
        return at

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)


@pytest.fixture
def nodes():
    started: list[Node] = []
    yield started
    for node in started:
        node.close()


def test_one_grant_per_term_and_the_next_term_names_who_held_it_before(pg_url):
    a = PgLease(pg_url, "asterisk@pbx1", "a", ttl_s=0.6, statement_timeout_s=1)
    b = PgLease(pg_url, "asterisk@pbx1", "b", ttl_s=0.6, statement_timeout_s=1)
    try:
        granted, view = a.try_acquire()
        assert granted and view.holder == "a" and view.epoch == 1
        granted, view = b.try_acquire()
        assert not granted and view.holder == "a"
        assert a.try_acquire()[1].epoch == 1  # renewal keeps the term
        time.sleep(0.7)
        granted, view = b.try_acquire()
        assert granted and (view.holder, view.epoch, view.previous_holder) == ("b", 2, "a")
        assert not a.try_acquire()[0]
        b.release(2)
        granted, view = a.try_acquire()
        assert granted and view.epoch == 3 and view.previous_holder == "b"
    finally:
        a.close()
        b.close()


def test_lease_refuses_sqlite_with_what_to_do(tmp_path):
    with pytest.raises(Exception, match="needs the ledger on PostgreSQL"):
        PgLease(f"sqlite:///{tmp_path}/x.sqlite", "s", "a", ttl_s=1, statement_timeout_s=1)


def test_kill_9_of_the_active_node_standby_acts_within_3_s(pg_url, nodes):
    a = Node(pg_url, "pbx1", "a")
    nodes.append(a)
    a.wait_for("activated")
    b = Node(pg_url, "pbx1", "b")
    nodes.append(b)
    b.wait_for("started")
    time.sleep(0.5)
    assert not b.events("activated"), "a standby became active while the active node was healthy"
    killed_at = a.kill()
    took_over = b.wait_for("activated", after=killed_at)
    assert took_over["t"] - killed_at < 3.0
    assert "epoch=2" in took_over["detail"] and "previous_holder='a'" in took_over["detail"]


def test_partitioned_active_node_stops_acting_before_the_standby_starts(pg_url, nodes):
    url = make_url(pg_url)
    with PartitionProxy(url.host or "127.0.0.1", url.port or 5432) as proxy:
        via_proxy = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        a = Node(via_proxy, "pbx1", "a")
        nodes.append(a)
        a.wait_for("activated")
        b = Node(pg_url, "pbx1", "b")
        nodes.append(b)
        b.wait_for("started")
        time.sleep(0.5)
        cut_at = time.monotonic()
        proxy.partition()
        stopped = a.wait_for("deactivated", after=cut_at)
        took_over = b.wait_for("activated", after=cut_at)
        assert "not renewed in time" in stopped["detail"]
        first_act_b = b.wait_for("act", after=cut_at)["t"]
        last_act_a = max(e["t"] for e in a.events("act"))
        assert last_act_a < stopped["t"] <= took_over["t"] < first_act_b
        assert took_over["t"] - cut_at < 3.0
        # healing the link must not make a active again while b holds the lease
        proxy.heal()
        time.sleep(1.0)
        assert not [e for e in a.events("activated") if e["t"] > cut_at]
        assert not [e for e in a.events("act") if e["t"] > stopped["t"]]


def test_graceful_stop_hands_over_at_once(pg_url, nodes):
    a = Node(pg_url, "pbx1", "a")
    nodes.append(a)
    a.wait_for("activated")
    b = Node(pg_url, "pbx1", "b")
    nodes.append(b)
    b.wait_for("started")
    asked = a.kill(signal.SIGTERM)
    a.wait_for("stopped", after=asked)
    took_over = b.wait_for("activated", after=asked)
    assert took_over["t"] - asked < 1.5
