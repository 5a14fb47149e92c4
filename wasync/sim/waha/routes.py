"""The WAHA route table: every endpoint the simulator serves, its name (what `requests` and
the faults count by) and the API key check in front."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from wasync.sim.waha.chats import ChatRoutes
from wasync.sim.waha.contacts import ContactRoutes
from wasync.sim.waha.guard import check_key
from wasync.sim.waha.send import SendRoutes
from wasync.sim.waha.sessions import SessionRoutes
from wasync.sim.waha.state import WahaState


def routes(state: WahaState) -> list[Route]:
    """The routes of `state`'s app, in matching order."""
    server, chats = SessionRoutes(state), ChatRoutes(state)
    contacts, send = ContactRoutes(state), SendRoutes(state)

    def api(
        path: str,
        handler: Callable[[Request], Awaitable[Response]],
        method: str,
        name: str,
    ) -> Route:
        async def endpoint(request: Request) -> Response:
            check_key(state, request)
            return await handler(request)

        return Route(path, endpoint, methods=[method], name=name)

    return [
        Route("/ping", server.ping, methods=["GET"], name="ping"),
        api("/api/server/version", server.version, "GET", "server.version"),
        api("/api/version", server.version, "GET", "version"),
        api("/api/sessions", server.sessions_list, "GET", "sessions.list"),
        api("/api/sessions/{session}", server.session_get, "GET", "sessions.get"),
        api("/api/sessions/{session}", server.session_put, "PUT", "sessions.update"),
        api("/api/sessions/{session}/me", server.session_me, "GET", "sessions.me"),
        api("/api/sessions/{session}/start", server.session_start, "POST", "sessions.start"),
        api("/api/sessions/{session}/stop", server.session_stop, "POST", "sessions.stop"),
        api("/api/sessions/{session}/restart", server.restart, "POST", "sessions.restart"),
        api("/api/contacts/check-exists", contacts.check_exists, "GET", "contacts.check_exists"),
        api("/api/sendText", send.send_text, "POST", "send.text"),
        api("/api/sendImage", send.send_media("sendImage"), "POST", "send.image"),
        api("/api/sendFile", send.send_media("sendFile"), "POST", "send.file"),
        api("/api/sendVoice", send.send_media("sendVoice"), "POST", "send.voice"),
        api("/api/sendVideo", send.send_media("sendVideo"), "POST", "send.video"),
        api("/api/sendSeen", send.send_seen, "POST", "send.seen"),
        api("/api/files/{session}/{filename}", chats.file, "GET", "files"),
        api("/api/{session}/chats/overview", chats.overview_get, "GET", "chats.overview"),
        api("/api/{session}/chats/overview", chats.overview_post, "POST", "chats.overview.post"),
        api("/api/{session}/chats/{chat_id}/messages", chats.messages, "GET", "chats.messages"),
        api(
            "/api/{session}/chats/{chat_id}/messages/{message_id}",
            chats.message_get,
            "GET",
            "chats.message",
        ),
        api("/api/{session}/lids", contacts.lids, "GET", "lids.list"),
        api("/api/{session}/lids/count", contacts.lids_count, "GET", "lids.count"),
        api("/api/{session}/lids/pn/{phone}", contacts.lid_by_pn, "GET", "lids.pn"),
        api("/api/{session}/lids/{lid}", contacts.lid_get, "GET", "lids.get"),
    ]
