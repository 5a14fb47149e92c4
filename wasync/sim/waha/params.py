"""Reading WAHA request parameters as its NestJS validation does: numbers, booleans, a
`{chatId}`, and the query of `GET …/messages`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from starlette.requests import Request

from wasync.sim.base import Json
from wasync.sim.directory import digits_of
from wasync.sim.waha.guard import bad_request
from wasync.sim.waha.session import ACK_NAMES, cus

_N = TypeVar("_N", int, float)


def chat_param(raw: str) -> str:
    """`{chatId}`: `all`, a jid (`%40` already decoded) or a bare phone number."""
    if raw == "all":
        return raw
    if "@" not in raw:
        return f"{digits_of(raw)}@c.us"
    return cus(raw)


def int_param(request: Request, name: str, default: int) -> int:
    """An integer query parameter (`default` when absent); a 400 when it is not a number."""
    value = _number_param(request, name, int)
    return default if value is None else value


def bool_param(request: Request, name: str) -> bool | None:
    """A boolean query parameter (`true`/`1`, `false`/`0`, None when absent); else a 400."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    if raw.lower() in ("true", "1"):
        return True
    if raw.lower() in ("false", "0"):
        return False
    raise bad_request(f"{name} must be a boolean value")


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageQuery:
    """The query of `GET …/messages` (waha.md §3)."""

    limit: int
    offset: int
    descending: bool
    download: bool
    gte: float | None
    lte: float | None
    from_me: bool | None
    ack: int | None

    @classmethod
    def parse(cls, request: Request, *, sorts: bool = True) -> MessageQuery:
        """The query of `request`; a 400 with NestJS' message for a bad value. Before WAHA
        2025.10.5 (`sorts` False) the query knew no `sortBy`/`sortOrder` and its whitelist
        dropped them: newest first, always (NOWEB's store forced `SortOrder.DESC`)."""
        params = request.query_params
        order = params.get("sortOrder", "desc").lower() if sorts else "desc"
        if order not in ("asc", "desc"):
            raise bad_request("sortOrder must be one of the following values: desc, asc")
        ack_name = params.get("filter.ack")
        acks = {name: value for value, name in ACK_NAMES.items()}
        if ack_name is not None and ack_name not in acks:
            raise bad_request("filter.ack must be one of the following values: " + ", ".join(acks))
        return cls(
            limit=int_param(request, "limit", 10),
            offset=int_param(request, "offset", 0),
            descending=order == "desc",
            download=bool_param(request, "downloadMedia") is not False,
            gte=float_param(request, "filter.timestamp.gte"),
            lte=float_param(request, "filter.timestamp.lte"),
            from_me=bool_param(request, "filter.fromMe"),
            ack=acks[ack_name] if ack_name is not None else None,
        )

    def in_window(self, msg: Json) -> bool:
        """Inclusive timestamp bounds (seconds)."""
        ts = msg["timestamp"]
        return (self.gte is None or ts >= self.gte) and (self.lte is None or ts <= self.lte)

    def accepts(self, msg: Json) -> bool:
        """Inclusive timestamp bounds (seconds), fromMe and ack filters."""
        if not self.in_window(msg):
            return False
        if self.from_me is not None and msg["fromMe"] is not self.from_me:
            return False
        return self.ack is None or msg["ack"] == self.ack


def float_param(request: Request, name: str) -> float | None:
    """A numeric query parameter (None when absent); a 400 when it is not a number."""
    return _number_param(request, name, float)


def _number_param(request: Request, name: str, parse: Callable[[str], _N]) -> _N | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        return parse(raw)
    except ValueError:
        raise bad_request(
            f"{name} must be a number conforming to the specified constraints"
        ) from None
