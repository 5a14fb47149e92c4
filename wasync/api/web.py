"""The attendance page: `/atendimento` and its static files, and `/` redirecting there.

The page is plain ES modules shipped in the package (`wasync/web/`): nothing to build or
install. It is public (a login form); everything it shows comes from REST and `/ws` with the
agent's JWT, which it takes from the `#token=` fragment (never sent to the server, so never
in its logs) or the form, and keeps in `sessionStorage`. The page itself is served with a
strict Content-Security-Policy: its own scripts and styles only, connections only to this
origin (REST and `/ws`), media only from `blob:` URLs the page made from authenticated
fetches.
"""

from __future__ import annotations

import re
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from wasync.api.doc import Op, documented

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
PAGE = "/atendimento"
_HOST = re.compile(r"[A-Za-z0-9.\-]+(:\d{1,5})?|\[[0-9A-Fa-f:.]+\](:\d{1,5})?")
COMMON_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",  # revalidate: a new wasync serves new files at once
}


def login_url(base_url: str, token: str) -> str:
    """The page with the token in the fragment, which browsers never send to the server."""
    return f"{base_url.rstrip('/')}{PAGE}#token={token}"


def web_routes() -> list[BaseRoute]:
    """`/` → `/atendimento` (keeping the query), the page, and `/atendimento/<file>`."""

    def page(summary: str, status: int = 200) -> Op:
        return Op(summary=summary, tag="page", auth="none", media_type="text/html", status=status)

    files = Mount(PAGE, app=_Headers(StaticFiles(directory=WEB_DIR)))
    return [
        documented(Route("/", _home, methods=["GET", "HEAD"]), page("To the page", 302)),
        documented(Route(PAGE, _page, methods=["GET", "HEAD"]), page("The attendance page")),
        documented(files, page("The attendance page's static files")),
    ]


async def _home(request: Request) -> Response:
    query = request.url.query
    return RedirectResponse(PAGE + (f"?{query}" if query else ""), status_code=302)


async def _page(request: Request) -> Response:
    host = request.headers.get("host", "")
    # 'self' covers ws:// only in newer browsers; name this origin's WebSocket explicitly
    # (a Host that is not a plain host[:port] gets only 'self').
    sockets = f" ws://{host} wss://{host}" if _HOST.fullmatch(host) else ""
    policy = "; ".join(
        [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' blob: data:",
            "media-src 'self' blob:",
            f"connect-src 'self'{sockets}",
            "form-action 'self'",
            "base-uri 'none'",
            "frame-ancestors 'none'",
        ]
    )
    headers = {**COMMON_HEADERS, "Content-Security-Policy": policy}
    return FileResponse(WEB_DIR / "index.html", headers=headers, media_type="text/html")


class _Headers:
    """Add `COMMON_HEADERS` to every answer of an ASGI app."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = [(k.lower().encode(), v.encode()) for k, v in COMMON_HEADERS.items()]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, with_headers)
