"""JWTs for REST and WebSocket clients, and the one scoping predicate.

Tokens are HS256 with the `[auth]` secret; claims `tenant_id`, `sub`, `role` (`ADMIN` |
`USER`) and `exp`. `ADMIN` sees every chat of its tenant, `USER` only chats assigned to it:
`can_see()` says so for one chat, `visible_chats()` is the same rule as SQL.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import jwt
from jwt.warnings import InsecureKeyLengthWarning
from sqlalchemy import ColumnElement, and_, true

from wasync.errors import WasyncError

Role = Literal["ADMIN", "USER"]
ROLES: tuple[Role, ...] = ("ADMIN", "USER")


class AuthError(WasyncError):
    """A missing, malformed, badly signed or expired token (HTTP 401)."""


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


def issue_token(
    secret: str,
    *,
    tenant_id: str,
    user_id: str,
    role: Role,
    ttl_s: float,
    now: float | None = None,
) -> str:
    """A signed HS256 JWT for `user_id` of `tenant_id`."""
    if role not in ROLES:
        raise AuthError(f"role must be one of {', '.join(ROLES)}")
    issued = int(now if now is not None else time.time())
    claims = {
        "tenant_id": tenant_id,
        "sub": user_id,
        "role": role,
        "iat": issued,
        "exp": issued + int(ttl_s),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureKeyLengthWarning)
        return jwt.encode(claims, secret, algorithm="HS256")


def verify_token(secret: str, token: str) -> Principal:
    """The principal of a valid token; AuthError otherwise (the reason, never the token)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", InsecureKeyLengthWarning)
            claims = jwt.decode(
                token, secret, algorithms=["HS256"], options={"require": ["exp", "sub"]}
            )
    except jwt.ExpiredSignatureError:
        raise AuthError("token expired") from None
    except jwt.PyJWTError:
        raise AuthError("invalid token") from None
    return _principal(claims)


def _principal(claims: Mapping[str, Any]) -> Principal:
    tenant, user, role = claims.get("tenant_id"), claims.get("sub"), claims.get("role")
    if not isinstance(tenant, str) or not tenant or not isinstance(user, str) or not user:
        raise AuthError("token lacks tenant_id or sub")
    if role not in ROLES:
        raise AuthError("token role must be ADMIN or USER")
    return Principal(tenant_id=tenant, user_id=user, role=role)


def bearer(headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
    """The token from `Authorization: Bearer …` or `?token=…`."""
    auth = headers.get("authorization", "")
    if auth[:7].lower() == "bearer " and auth[7:].strip():
        return auth[7:].strip()
    return query.get("token") or None


def can_see(principal: Principal, *, tenant_id: str, assigned_user_id: str | None) -> bool:
    """The scoping rule: own tenant only; USER only chats assigned to it."""
    if tenant_id != principal.tenant_id:
        return False
    return principal.is_admin or assigned_user_id == principal.user_id


def visible_chats(principal: Principal, chats: Any) -> ColumnElement[bool]:
    """`can_see()` as a SQL condition on the `chats` table."""
    same_tenant = chats.c.tenant_id == principal.tenant_id
    if principal.is_admin:
        return and_(same_tenant, true())
    return and_(same_tenant, chats.c.assigned_user_id == principal.user_id)
