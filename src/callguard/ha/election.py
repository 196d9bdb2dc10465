"""Who may act: the leader-lease decision, free of I/O (times are passed in).

The rule that keeps two listeners from ever acting on one PBX at once:

* The database grants a lease until ``db_now + ttl`` (its own clock), and a
  standby takes over only once the database says it has expired.
* The holder may act only until ``sent_at + ttl - margin`` on its *own*
  monotonic clock, where ``sent_at`` is when the renewal that the database
  granted was sent.  The grant was made after it was sent, so the holder's
  deadline falls at least ``margin`` before the database's expiry, whatever
  the network or the database did in between.  A renewal that hangs (a
  partition) simply never extends the deadline: the holder stops acting on
  time without waiting for any answer.

Inputs are :meth:`Election.granted`, :meth:`Election.refused`,
:meth:`Election.failed` and :meth:`Election.tick`; each returns the role
changes it causes (:class:`Activated`, :class:`Deactivated`) for the runner
to carry out.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Role(Enum):
    STANDBY = "standby"
    ACTIVE = "active"


@dataclass(frozen=True, slots=True)
class LeaseView:
    """What the database says about the lease after a renewal attempt."""

    holder: str
    epoch: int
    previous_holder: str | None = None


@dataclass(frozen=True, slots=True)
class Activated:
    """This node now holds the lease: adopt the live calls, then act."""

    epoch: int
    previous_holder: str | None
    #: True when the same term resumes after a stall fenced it (nobody else held the lease).
    resumed: bool = False


@dataclass(frozen=True, slots=True)
class Deactivated:
    """Stop acting on the PBX now (fail safe); ``reason`` is for the log and the ledger."""

    epoch: int
    reason: str


Change = Activated | Deactivated


class Election:
    """One node's view of the lease for one scope."""

    def __init__(self, node_id: str, *, ttl_s: float, margin_s: float) -> None:
        if margin_s >= ttl_s:
            raise ValueError(f"safety margin {margin_s}s must be shorter than the lease {ttl_s}s")
        self.node_id = node_id
        self.ttl_s = ttl_s
        self.margin_s = margin_s
        self.role = Role.STANDBY
        self.epoch = 0
        self.holder: str | None = None  #: who holds the lease, as last seen
        self.active_until = float("-inf")
        self._fenced_epoch: int | None = None

    def may_act(self, now: float) -> bool:
        """True only while this node is active and inside its deadline (checked before every PBX action)."""
        return self.role is Role.ACTIVE and now < self.active_until

    def granted(self, sent_at: float, view: LeaseView, now: float) -> list[Change]:
        """The database answered a renewal sent at ``sent_at``: ``view`` holds the lease now."""
        if view.holder != self.node_id:
            return self.refused(view, now)
        self.holder = view.holder
        deadline = sent_at + self.ttl_s - self.margin_s
        changes: list[Change] = []
        if self.role is Role.ACTIVE and view.epoch != self.epoch:
            # Our term ended (expired in the database) and a new one began: start over.
            changes.append(self._deactivate(f"lease term {self.epoch} ended; re-acquired as term {view.epoch}"))
        if deadline <= now:
            return changes  # granted, but too late to use: the answer took longer than the lease
        self.active_until = max(self.active_until, deadline) if view.epoch == self.epoch else deadline
        if self.role is Role.STANDBY:
            resumed = view.epoch == self._fenced_epoch
            self.role, self.epoch = Role.ACTIVE, view.epoch
            self._fenced_epoch = None
            changes.append(Activated(view.epoch, view.previous_holder, resumed=resumed))
        return changes

    def refused(self, view: LeaseView | None, now: float) -> list[Change]:
        """Another node holds the lease (``view``), or the answer said nothing about it (None)."""
        if view is not None:
            self.holder = view.holder
        if self.role is Role.ACTIVE:
            who = view.holder if view is not None else "another node"
            return [self._deactivate(f"lease taken over by {who}")]
        return self.tick(now)

    def failed(self, now: float) -> list[Change]:
        """A renewal failed (database unreachable, timeout): nothing is extended."""
        return self.tick(now)

    def tick(self, now: float) -> list[Change]:
        """Time passed: an active node whose deadline has come stops acting."""
        if self.role is Role.ACTIVE and now >= self.active_until:
            self._fenced_epoch = self.epoch
            return [self._deactivate("lease not renewed in time (database unreachable or slow)")]
        return []

    def released(self) -> list[Change]:
        """This node is giving the lease up (graceful stop)."""
        if self.role is Role.ACTIVE:
            return [self._deactivate("released at shutdown")]
        return []

    def _deactivate(self, reason: str) -> Deactivated:
        epoch = self.epoch
        self.role = Role.STANDBY
        self.active_until = float("-inf")
        return Deactivated(epoch, reason)
