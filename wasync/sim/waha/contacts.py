"""WAHA's contact lookups: the LID <-> phone mapping (`/api/{session}/lids/...`) and
`check-exists`."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from wasync.sim.base import Json, SimError
from wasync.sim.directory import digits_of
from wasync.sim.waha.guard import Handlers, bad_request, nest
from wasync.sim.waha.params import int_param


class ContactRoutes(Handlers):
    """`/api/{session}/lids/...` and `/api/contacts/check-exists`."""

    async def lids(self, request: Request) -> Response:
        """The known LID -> phone pairs, sorted, paged by `limit` and `offset`."""
        session = self.working(request.path_params["session"])
        limit = int_param(request, "limit", 100)
        offset = int_param(request, "offset", 0)
        known = sorted((lid, pn) for lid, pn in session.lids.items() if pn)
        page = known[offset : offset + limit]
        return JSONResponse([{"lid": lid, "pn": pn} for lid, pn in page])

    async def lids_count(self, request: Request) -> Response:
        """How many LIDs have a known phone."""
        session = self.working(request.path_params["session"])
        return JSONResponse({"count": sum(1 for pn in session.lids.values() if pn)})

    async def lid_get(self, request: Request) -> Response:
        """waha.md §8: a bare number gets `@lid`; any other server is a 422."""
        session = self.working(request.path_params["session"])
        lid = request.path_params["lid"]
        if "@" not in lid:
            lid = f"{lid}@lid"
        if not lid.endswith("@lid"):
            raise SimError(422, nest(422, f"Invalid LID '{lid}'", "Unprocessable Entity"))
        return JSONResponse({"lid": lid, "pn": session.lids.get(lid)})

    async def lid_by_pn(self, request: Request) -> Response:
        """The LID of a phone number (null when unknown)."""
        session = self.working(request.path_params["session"])
        pn = f"{digits_of(request.path_params['phone'])}@c.us"
        return JSONResponse({"lid": session.pn_lids.get(pn), "pn": pn})

    async def check_exists(self, request: Request) -> Response:
        """waha.md §6: absent numbers have no `chatId` (WEBJS, NOWEB) or `chatId: null` (GOWS)."""
        phone = request.query_params.get("phone")
        name = request.query_params.get("session")
        if not phone or not name:
            raise bad_request("phone should not be empty", "session should not be empty")
        session = self.working(name)
        registered = self.state.directory.lookup(digits_of(phone))
        if registered:
            return JSONResponse({"numberExists": True, "chatId": f"{registered}@c.us"})
        absent: Json = {"numberExists": False}
        if session.engine == "GOWS":
            absent["chatId"] = None
        return JSONResponse(absent)
