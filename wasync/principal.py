"""`Principal`: who a request, a WebSocket or a command speaks for (a JWT's claims)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Role = Literal["ADMIN", "USER"]
ROLES: tuple[Role, ...] = ("ADMIN", "USER")


@dataclass(frozen=True, slots=True, kw_only=True)
class Principal:
    """Who a request or WebSocket speaks for."""

    tenant_id: str
    user_id: str
    role: Role

    @property
    def is_admin(self) -> bool:
        """True for tenant admins."""
        return self.role == "ADMIN"


__all__ = ["ROLES", "Principal", "Role"]
