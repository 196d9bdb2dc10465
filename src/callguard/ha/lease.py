"""The leader lease, stored in the ledger's PostgreSQL (no extra coordination service).

One row per scope (normally one per PBX) in ``ha_leases``.  Taking and
renewing is one atomic statement against the database's own clock, so two
nodes can never both be granted the same unexpired lease, whatever their
clocks say::

    INSERT .. ON CONFLICT (scope) DO UPDATE .. WHERE holder = me OR expires_at <= clock_timestamp()

Every change of holder (or a holder coming back after its lease expired)
starts a new *term*: ``epoch`` goes up by one, and the node records the
term in the ledger so the evidence says who took over and when.

Why not ``pg_advisory_lock``: a session lock is released when the server
notices the session is gone, which on a network partition can take minutes
(TCP keepalive); meanwhile the partitioned node cannot know whether it
still holds it.  A lease with an expiry on one clock gives both sides a
deadline they can compute on their own (see :mod:`callguard.ha.election`).
"""

from __future__ import annotations

from sqlalchemy import DateTime, Engine, Integer, String, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Mapped, mapped_column

from callguard.ha.election import LeaseView
from callguard.ledger.db import LedgerError, describe_url
from callguard.ledger.models import ID_LEN, Base


class HaLease(Base):
    """The leader lease of one scope (one PBX)."""

    __tablename__ = "ha_leases"

    scope: Mapped[str] = mapped_column(String(ID_LEN), primary_key=True)
    holder: Mapped[str] = mapped_column(String(ID_LEN))
    previous_holder: Mapped[str | None] = mapped_column(String(ID_LEN))
    #: The term: +1 every time the lease changes hands or is re-taken after expiring.
    epoch: Mapped[int] = mapped_column(Integer)
    acquired_at = mapped_column(DateTime(timezone=True))
    renewed_at = mapped_column(DateTime(timezone=True))
    expires_at = mapped_column(DateTime(timezone=True))


_ACQUIRE = text("""
INSERT INTO ha_leases AS l (scope, holder, previous_holder, epoch, acquired_at, renewed_at, expires_at)
VALUES (:scope, :holder, NULL, 1, clock_timestamp(), clock_timestamp(),
        clock_timestamp() + make_interval(secs => :ttl))
ON CONFLICT (scope) DO UPDATE SET
    epoch = CASE WHEN l.holder = EXCLUDED.holder AND l.expires_at > clock_timestamp()
                 THEN l.epoch ELSE l.epoch + 1 END,
    previous_holder = CASE WHEN l.holder = EXCLUDED.holder AND l.expires_at > clock_timestamp()
                           THEN l.previous_holder ELSE l.holder END,
    acquired_at = CASE WHEN l.holder = EXCLUDED.holder AND l.expires_at > clock_timestamp()
                       THEN l.acquired_at ELSE clock_timestamp() END,
    holder = EXCLUDED.holder,
    renewed_at = clock_timestamp(),
    expires_at = clock_timestamp() + make_interval(secs => :ttl)
WHERE l.holder = EXCLUDED.holder OR l.expires_at <= clock_timestamp()
RETURNING holder, epoch, previous_holder
""")

_CURRENT = text("SELECT holder, epoch, previous_holder FROM ha_leases WHERE scope = :scope")

_RELEASE = text("""
UPDATE ha_leases SET expires_at = clock_timestamp()
WHERE scope = :scope AND holder = :holder AND epoch = :epoch
""")


class PgLease:
    """Blocking lease operations; run them off the event loop (:class:`callguard.ha.node.HaNode` does)."""

    def __init__(self, url: str, scope: str, node_id: str, *, ttl_s: float, statement_timeout_s: float) -> None:
        parsed = make_url(url)
        if parsed.get_backend_name() != "postgresql":
            raise LedgerError(
                f"[ha] needs the ledger on PostgreSQL (the lease lives there); {describe_url(url)} is "
                f"{parsed.get_backend_name()}. Point [ledger] url at PostgreSQL or set [ha] enabled = false")
        timeout_ms = max(1, int(statement_timeout_s * 1000))
        options = " ".join(filter(None, [str(parsed.query.get("options", "")),
                                         f"-c statement_timeout={timeout_ms}"]))
        # connect_timeout and statement_timeout bound what the server side can make us wait for;
        # a partition that swallows packets is handled by the election's deadline, not here.
        self.engine: Engine = create_engine(
            url, pool_size=1, max_overflow=0, pool_pre_ping=False, isolation_level="AUTOCOMMIT",
            connect_args={"connect_timeout": max(1, int(statement_timeout_s + 0.999)),
                          "options": options,
                          "keepalives": 1, "keepalives_idle": 1, "keepalives_interval": 1,
                          "keepalives_count": 2})
        self.scope = scope
        self.node_id = node_id
        self.ttl_s = ttl_s
        HaLease.__table__.create(self.engine, checkfirst=True)

    def try_acquire(self) -> tuple[bool, LeaseView | None]:
        """Take or renew the lease; (granted, who holds it now)."""
        with self.engine.connect() as conn:
            row = conn.execute(_ACQUIRE, {"scope": self.scope, "holder": self.node_id, "ttl": self.ttl_s}).first()
            if row is not None:
                return True, LeaseView(row.holder, row.epoch, row.previous_holder)
            row = conn.execute(_CURRENT, {"scope": self.scope}).first()
            return False, LeaseView(row.holder, row.epoch, row.previous_holder) if row is not None else None

    def release(self, epoch: int) -> None:
        """Let a standby take over at once (graceful stop)."""
        with self.engine.connect() as conn:
            conn.execute(_RELEASE, {"scope": self.scope, "holder": self.node_id, "epoch": epoch})

    def close(self) -> None:
        self.engine.dispose()
