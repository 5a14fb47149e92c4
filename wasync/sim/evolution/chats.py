"""Evolution's reads: `findMessages` and `findChats` with their documented quirks, and
`whatsappNumbers`."""

from __future__ import annotations

import math
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from wasync.sim.base import Json, read_json, version_tuple
from wasync.sim.evolution.guard import Handlers, bad, bad_json, connected
from wasync.sim.evolution.instance import EvoInstance, create_jid, iso
from wasync.sim.evolution.params import as_object, js_date_s, js_int
from wasync.sim.evolution.render import FIND_MESSAGE_FIELDS, LAST_MESSAGE_FIELDS, project


class ChatRoutes(Handlers):
    """`/chat/findMessages`, `/chat/findChats` and `/chat/whatsappNumbers`."""

    async def find_messages(self, request: Request, inst: EvoInstance) -> Response:
        """evolution.md §5.2 with its quirks: `offset` is the page size, the time window needs
        both bounds (ISO or epoch ms), `fromMe:false` is ignored, equal timestamps come back in
        no stable order."""
        body = await read_json(request, bad_json)
        query: Json = body if isinstance(body, dict) else {}
        where = as_object(query.get("where"))
        page_size = js_int(query.get("offset")) or 50
        page = js_int(query.get("page")) or 1
        overflow = self._int4_overflow(where.get("messageTimestamp"))
        if overflow is not None:
            return JSONResponse(overflow, status_code=500)
        rows = [r for r in inst.messages if self._matches(r, where)]
        rows.sort(key=lambda r: (-r["messageTimestamp"], self.state.rng.random()))
        start = page_size * (page - 1)
        records = [project(r, FIND_MESSAGE_FIELDS) for r in rows[start : start + page_size]]
        total = len(rows)
        return JSONResponse(
            {
                "messages": {
                    "total": total,
                    "pages": math.ceil(total / page_size),
                    "currentPage": page,
                    "records": records,
                }
            }
        )

    def _matches(self, row: Json, where: Json) -> bool:
        key_filter = as_object(where.get("key"))
        key = row["key"]
        remote, alt = key_filter.get("remoteJid"), key_filter.get("remoteJidAlt")
        if remote or alt:  # 2.3.7: OR(key.remoteJid = X, key.remoteJidAlt = Y)
            if not (
                (remote and key["remoteJid"] == remote) or (alt and key.get("remoteJidAlt") == alt)
            ):
                return False
        elif self.state.empty_or_matches_nothing:
            return False
        if key_filter.get("fromMe") and not key["fromMe"]:
            return False
        for name in ("id", "participant"):
            if key_filter.get(name) and key.get(name) != key_filter[name]:
                return False
        for name in ("messageType", "source", "id"):
            if where.get(name) and row.get(name) != where[name]:
                return False
        return self._in_window(row["messageTimestamp"], where.get("messageTimestamp"))

    def _int4_overflow(self, window: Any) -> Json | None:
        """`messageTimestamp` is `Int @db.Integer` (prisma/postgresql-schema.prisma): a bound
        past 2038-01-19 does not fit, and Prisma's error is Evolution's 500 (`main.ts`)."""
        if not isinstance(window, dict) or not (window.get("gte") and window.get("lte")):
            return None
        for bound in (window["gte"], window["lte"]):
            value = js_date_s(bound, self.state.tz_offset_s)
            if value is not None and not -(2**31) <= math.floor(value) < 2**31:
                message = (
                    f"Unable to fit integer value '{math.floor(value)}' into an INT4 "
                    "(32-bit signed integer)."
                )
                return {
                    "status": 500,
                    "error": "Internal Server Error",
                    "response": {"message": message},
                }
        return None

    def _in_window(self, ts: int, window: Any) -> bool:
        """Applied only when both `gte` and `lte` are truthy; each read like JS `new Date(x)`."""
        if not isinstance(window, dict) or not (window.get("gte") and window.get("lte")):
            return True
        low = js_date_s(window["gte"], self.state.tz_offset_s)
        high = js_date_s(window["lte"], self.state.tz_offset_s)
        return low is not None and high is not None and low <= ts <= high

    async def find_chats(self, request: Request, inst: EvoInstance) -> Response:
        """evolution.md §5.3: one item per stored `remoteJid`, newest last message first."""
        body = await read_json(request, bad_json)
        query: Json = body if isinstance(body, dict) else {}
        where = as_object(query.get("where"))
        window = where.get("messageTimestamp")
        last: dict[str, Json] = {}
        for row in inst.messages:
            if not self._in_window(row["messageTimestamp"], window):
                continue
            jid = row["key"]["remoteJid"]
            # DISTINCT ON (remoteJid) ... ORDER BY messageTimestamp DESC: any row of the newest
            # second (evolution.md 5.3); the simulator keeps the first stored one, the row that
            # hides a later one of that second longest.
            if jid not in last or row["messageTimestamp"] > last[jid]["messageTimestamp"]:
                last[jid] = row
        wanted = where.get("remoteJid")
        if wanted:
            wanted = create_jid(str(wanted))
            last = {j: r for j, r in last.items() if j == wanted}
        ordered = sorted(last.items(), key=lambda item: -item[1]["messageTimestamp"])
        skip = js_int(query.get("skip")) or 0
        take: int | None = js_int(query.get("take"))
        version = version_tuple(self.state.version)
        if version < (2, 3, 0):  # 2.2.x: no LIMIT nor OFFSET, every chat on every page
            skip, take = 0, None
        chosen = ordered[skip : skip + take] if take else ordered[skip:]
        items = [self._chat_item(inst, jid, row) for jid, row in chosen]
        if version[:3] == (2, 3, 0):
            # Its quoted aliases read back lower-cased: no `remoteJid`, `updatedAt` nor
            # `profilePicUrl`; and a page past the first sliced again by skip: empty.
            for item in items:
                for name in ("remoteJid", "updatedAt", "profilePicUrl"):
                    item.pop(name)
            items = items[skip : skip + take] if skip and take else items
        return JSONResponse(items)

    def _chat_item(self, inst: EvoInstance, jid: str, row: Json) -> Json:
        incoming = [
            r for r in inst.messages if r["key"]["remoteJid"] == jid and not r["key"]["fromMe"]
        ]
        window_start = max((r["messageTimestamp"] for r in incoming), default=None)
        contact = inst.contacts.get(jid)
        expires = window_start + 86_400 if window_start is not None else None
        return {
            "id": contact["id"] if contact else None,
            "remoteJid": jid,
            "pushName": inst.chat_names.get(jid),
            "profilePicUrl": contact["profilePicUrl"] if contact else None,
            "updatedAt": iso(row["messageTimestamp"]),
            "windowStart": iso(window_start) if window_start is not None else None,
            "windowExpires": iso(expires) if expires is not None else None,
            "windowActive": expires is not None and expires > self.state.clock(),
            "lastMessage": project(row, LAST_MESSAGE_FIELDS),
            "unreadCount": sum(1 for r in incoming if r["status"] == "DELIVERY_ACK"),
            "isSaved": contact is not None and inst.chat_names.get(jid) is not None,
        }

    async def whatsapp_numbers(self, request: Request, inst: EvoInstance) -> Response:
        """evolution.md §6: `[{exists, jid, number}]`, both Brazilian variants accepted."""
        body = await read_json(request, bad_json)
        numbers = body.get("numbers") if isinstance(body, dict) else None
        valid = isinstance(numbers, list) and numbers and all(isinstance(n, str) for n in numbers)
        if not valid or len(set(numbers or [])) != len(numbers or []):
            raise bad("numbers must be a non-empty array of unique strings")
        connected(inst)
        answers = []
        for number in numbers or []:
            exists, jid = self.state.lookup(inst, number)
            answers.append({"exists": exists, "jid": jid, "number": number})
        return JSONResponse(answers)
