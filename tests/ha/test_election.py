"""The lease decision on its own: every transition, on a hand-driven clock."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callguard.ha.election import Activated, Deactivated, Election, LeaseView, Role

TTL, MARGIN = 1.5, 0.3


def make(node: str = "a") -> Election:
    return Election(node, ttl_s=TTL, margin_s=MARGIN)


def test_grant_makes_active_until_sent_plus_ttl_minus_margin():
    e = make()
    changes = e.granted(10.0, LeaseView("a", 1), now=10.05)
    assert changes == [Activated(1, None)]
    assert e.may_act(11.19) and not e.may_act(10.0 + TTL - MARGIN)


def test_deadline_counts_from_when_the_renewal_was_sent_not_answered():
    e = make()
    e.granted(10.0, LeaseView("a", 1), now=10.0)
    # a renewal sent at 10.5 and answered 0.9 s later only extends to 10.5 + 1.2
    e.granted(10.5, LeaseView("a", 1), now=11.4)
    assert e.may_act(11.69) and not e.may_act(11.7)


def test_answer_arriving_after_its_own_deadline_does_not_activate():
    e = make()
    assert e.granted(10.0, LeaseView("a", 1), now=11.3) == []
    assert e.role is Role.STANDBY


def test_hanging_renewal_fences_on_time_without_any_answer():
    e = make()
    e.granted(0.0, LeaseView("a", 1), now=0.0)
    assert e.tick(1.1) == []
    [change] = e.tick(1.2)
    assert isinstance(change, Deactivated) and "not renewed in time" in change.reason
    assert not e.may_act(1.2)


def test_refused_while_active_stops_at_once_and_names_the_new_holder():
    e = make()
    e.granted(0.0, LeaseView("a", 1), now=0.0)
    [change] = e.refused(LeaseView("b", 2, "a"), now=0.5)
    assert change == Deactivated(1, "lease taken over by b")
    assert e.holder == "b"


def test_new_term_after_expiry_is_a_fresh_activation():
    e = make()
    e.granted(0.0, LeaseView("a", 1), now=0.0)
    changes = e.granted(0.5, LeaseView("a", 2, "a"), now=0.6)
    assert [type(c) for c in changes] == [Deactivated, Activated]
    assert changes[1].epoch == 2 and not changes[1].resumed


def test_same_term_after_a_local_fence_is_marked_resumed():
    e = make()
    e.granted(0.0, LeaseView("a", 1), now=0.0)
    e.tick(1.3)
    [change] = e.granted(1.3, LeaseView("a", 1), now=1.31)
    assert change == Activated(1, None, resumed=True)


def test_standby_seeing_another_holder_stays_standby():
    e = make("b")
    assert e.refused(LeaseView("a", 4), now=1.0) == []
    assert e.role is Role.STANDBY and e.holder == "a"


def test_margin_must_be_shorter_than_the_lease():
    with pytest.raises(ValueError, match="shorter than the lease"):
        Election("a", ttl_s=1.0, margin_s=1.0)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["grant", "refuse", "fail", "tick"]),
                          st.floats(min_value=0.0, max_value=2.0),
                          st.floats(min_value=0.0, max_value=2.0)), max_size=40))
def test_never_acts_past_sent_plus_ttl_minus_margin_of_a_granted_renewal(steps):
    """Whatever happens, may_act(t) implies some renewal granted at sent_at with t < sent_at + ttl - margin."""
    e = make()
    now = 0.0
    grants: list[float] = []
    for op, advance, latency in steps:
        now += advance
        sent = now
        answered = now + latency
        if op == "grant":
            e.granted(sent, LeaseView("a", 1), now=answered)
            grants.append(sent)
        elif op == "refuse":
            e.refused(LeaseView("b", 2), now=answered)
            grants.clear()
        elif op == "fail":
            e.failed(answered)
        else:
            e.tick(answered)
        now = answered
        for probe in (now, now + 0.1, now + 1.0):
            if e.may_act(probe):
                assert any(probe < g + TTL - MARGIN for g in grants)
