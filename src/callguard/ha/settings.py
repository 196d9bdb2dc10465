"""``[ha]``: leader election between listeners of one PBX (off by default)."""

from __future__ import annotations

from typing import Annotated

import pydantic

from callguard.config_schema import rule, section


@section
class HaConfig:
    """Two or more listeners per PBX against one PostgreSQL; exactly one acts.

    Why these defaults: a standby must be active within 3 s of the active
    one dying.  It takes over once the lease has expired on the database's
    clock (``lease_ttl_s``) and it has seen that (``poll_interval_s``), then
    adopts the live calls; 1.5 + 0.25 leaves more than a second for adoption.
    The active node stops acting ``safety_margin_s`` before its lease could
    have expired, measured from when its last successful renewal was *sent*.
    """

    enabled: bool = False
    #: This node's name in the lease and the ledger; empty: ``<hostname>:<pid>``.
    node_id: str = ""
    #: What the lease is for; empty: the listener's chain id (one lease per PBX).
    scope: str = ""
    lease_ttl_s: Annotated[float, rule(lambda v: 0.5 <= v <= 60, "must be between 0.5 and 60 seconds")] = 1.5
    renew_interval_s: Annotated[float, rule(lambda v: v > 0, "must be positive")] = 0.25
    poll_interval_s: Annotated[float, rule(lambda v: v > 0, "must be positive")] = 0.25
    safety_margin_s: Annotated[float, rule(lambda v: v >= 0, "must not be negative")] = pydantic.Field(
        default=0.3, validate_default=True)

    @pydantic.field_validator("safety_margin_s")
    @classmethod
    def _timings(cls, margin: float, info: pydantic.ValidationInfo) -> float:
        ttl, renew = info.data.get("lease_ttl_s"), info.data.get("renew_interval_s")
        if ttl is not None and renew is not None and renew + margin >= ttl:
            raise ValueError(
                f"renew_interval_s ({renew}) + safety_margin_s ({margin}) must be less than lease_ttl_s ({ttl}), "
                "or the active node stops acting between two renewals")
        return margin
