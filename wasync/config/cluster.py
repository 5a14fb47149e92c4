"""`[cluster]`: several `wasync run` nodes on one Postgres, each holding leases on a share of
the sessions (`wasync.leases`)."""

from __future__ import annotations

import os
import socket

from pydantic import Field, model_validator

from wasync.config.sections import Section


class ClusterConfig(Section):
    """`[cluster]`: this node's name and the session leases' timing (Postgres only).

    A lease not renewed within `lease_ttl_s` is free for another node: that is how long the
    sessions of a node that died wait. `renew_interval_s` (default a third of the TTL) is the
    heartbeat; it must leave room for two missed renewals before the lease expires.
    """

    node_id: str = Field(default="", max_length=200)  # default: hostname:pid
    lease_ttl_s: float = Field(default=15, gt=0)
    renew_interval_s: float = Field(default=0, ge=0)  # 0: lease_ttl_s / 3

    @model_validator(mode="after")
    def _renew_before_expiry(self) -> ClusterConfig:
        if self.renew_interval_s and self.renew_interval_s * 2 > self.lease_ttl_s:
            raise ValueError("renew_interval_s must be at most half of lease_ttl_s")
        return self

    def resolved_node_id(self) -> str:
        """`node_id`, else `hostname:pid` (unique per process on a machine)."""
        return self.node_id or f"{socket.gethostname()}:{os.getpid()}"

    def resolved_renew_s(self) -> float:
        """The heartbeat: `renew_interval_s`, else a third of the TTL."""
        return self.renew_interval_s or self.lease_ttl_s / 3
