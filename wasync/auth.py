"""JWTs for REST and WebSocket clients.

Tokens are HS256 with the `[auth]` secret; claims `tenant_id`, `sub`, `role` (`ADMIN` |
`USER`) and `exp`. What a principal may then see is `wasync.scopes`.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping
from typing import Any

import jwt
from jwt.warnings import InsecureKeyLengthWarning

from wasync.errors import WasyncError
from wasync.principal import ROLES, Principal, Role


class AuthError(WasyncError):
    """A missing, malformed, badly signed or expired token (HTTP 401)."""


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


__all__ = ["AuthError", "Principal", "Role", "bearer", "issue_token", "verify_token"]
