"""WAHA's server and session endpoints: ping, version, list/get/update a session, its `me`,
start, stop and restart."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from wasync.sim.base import Json, SimError, read_json
from wasync.sim.waha.guard import Handlers, bad_request, nest
from wasync.sim.waha.hooks import webhook_problems
from wasync.sim.waha.session import WahaSession


class SessionRoutes(Handlers):
    """`/ping`, `/api/version`, `/api/server/version` and `/api/sessions/...`."""

    async def ping(self, _request: Request) -> Response:
        """`GET /ping`, the one route without the API key."""
        return JSONResponse({"message": "pong"})

    async def version(self, _request: Request) -> Response:
        """`GET /api/version` and `/api/server/version`: the default engine's environment."""
        return JSONResponse(self.state.environment(self.state.default_engine))

    def _session_info(self, session: WahaSession) -> Json:
        return {
            "name": session.name,
            "status": session.status,
            "config": session.config,
            "me": session.me(),
            "presence": "online" if session.status == "WORKING" else None,
            "timestamps": {"activity": session.activity_ms},
            "engine": {"engine": session.engine},
        }

    async def sessions_list(self, request: Request) -> Response:
        """waha.md §2: STOPPED sessions only with `all=true`."""
        everything = request.query_params.get("all", "").lower() in ("true", "1")
        listed = [
            self._session_info(s)
            for s in self.state.sessions.values()
            if everything or s.status != "STOPPED"
        ]
        return JSONResponse(listed)

    async def session_get(self, request: Request) -> Response:
        """`GET /api/sessions/{session}` (a plain 404 when unknown)."""
        name = request.path_params["session"]
        session = self.state.sessions.get(name)
        if session is None:
            raise SimError(404, nest(404, "Session not found", "Not Found"))
        return JSONResponse(self._session_info(session))

    async def session_me(self, request: Request) -> Response:
        """`GET /api/sessions/{session}/me`: the account, null unless WORKING."""
        return JSONResponse(self.known(request.path_params["session"]).me())

    async def session_put(self, request: Request) -> Response:
        """waha.md §2: PUT replaces the whole config; a running session stops and starts."""
        name = request.path_params["session"]
        body = await read_json(request, bad_request)
        if not isinstance(body, dict):
            raise bad_request("body must be an object")
        config = body.get("config") or {}
        if not isinstance(config, dict):
            raise bad_request("config must be an object")
        problems = webhook_problems(config.get("webhooks") or [], self.state.version)
        if problems:
            raise bad_request(*problems)
        session = self.state.sessions.get(name)
        if session is None:
            raise SimError(404, nest(404, "Session not found", "Not Found"))
        session.config = config
        if session.status != "STOPPED":
            session.restarted()
        return JSONResponse({"name": name, "status": session.status, "config": config})

    async def session_start(self, request: Request) -> Response:
        """A STOPPED or FAILED session starts (WORKING at once); others stay as they are."""
        session = self.known(request.path_params["session"])
        if session.status in ("STOPPED", "FAILED"):
            session.status = "WORKING"
        return JSONResponse({"name": session.name, "status": session.status})

    async def session_stop(self, request: Request) -> Response:
        """Any known session stops."""
        session = self.known(request.path_params["session"])
        session.status = "STOPPED"
        return JSONResponse({"name": session.name, "status": session.status})

    async def restart(self, request: Request) -> Response:
        """Counted in `restarts`; a STOPPED or FAILED session comes back WORKING."""
        session = self.known(request.path_params["session"])
        session.restarted()
        if session.status in ("STOPPED", "FAILED"):
            session.status = "WORKING"
        return JSONResponse({"name": session.name, "status": session.status})
