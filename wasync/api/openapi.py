"""`/openapi.json` and `/docs`: the HTTP API described from its own route definitions.

`spec()` walks the app's routes: each route that declared an `Op` (`wasync.api.doc`) becomes
an operation per method (HEAD aside), its path parameters read from the route's convertors,
its schemas from `wasync.api.schemas`. Nothing about a route is written twice. `/docs` renders
that document as one self-contained HTML page (no script, no CDN).
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Iterator
from typing import Any

from starlette.convertors import FloatConvertor, IntegerConvertor
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute

from wasync import __version__
from wasync.api.doc import Op, Param, documented, op_of
from wasync.api.schemas import Json, components, ref

TITLE = "wasync HTTP API"
STATUS_TEXT = {
    200: "OK",
    201: "Created",
    101: "Switching Protocols",
    302: "Redirect",
    400: "Malformed request",
    401: "Missing, bad or expired credentials",
    403: "Forbidden",
    404: "Not found (or not visible to the caller)",
    409: "Conflict",
    413: "Body too large",
    422: "Refused value",
    429: "Too many requests (Retry-After)",
    503: "Store unavailable",
}


def openapi_routes() -> list[BaseRoute]:
    """`GET /openapi.json` and `GET /docs`."""
    return [
        documented(
            Route("/openapi.json", _json, methods=["GET"]),
            Op(summary="This document (OpenAPI 3.1)", tag="docs", auth="none", response=None),
        ),
        documented(
            Route("/docs", _page, methods=["GET"]),
            Op(
                summary="This document as an HTML page",
                tag="docs",
                auth="none",
                media_type="text/html",
            ),
        ),
    ]


async def _json(request: Request) -> Response:
    return JSONResponse(spec(request.app.routes))


async def _page(request: Request) -> Response:
    return HTMLResponse(render(spec(request.app.routes)))


def spec(routes: Iterable[BaseRoute]) -> Json:
    """The OpenAPI 3.1 document of every documented route in `routes`."""
    paths: dict[str, dict[str, Json]] = {}
    for path, methods, params, op in walk(routes):
        item = paths.setdefault(path, {})
        for method in methods:
            item[method.lower()] = _operation(op, params, method)
    return {
        "openapi": "3.1.0",
        "info": {"title": TITLE, "version": __version__},
        "paths": paths,
        "components": {
            "schemas": components(),
            "securitySchemes": {"jwt": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
    }


def walk(routes: Iterable[BaseRoute]) -> Iterator[tuple[str, list[str], list[Json], Op]]:
    """(OpenAPI path, methods, path parameters, Op) of each documented route; Mounts are
    walked into (a Mount of files is one `{path}` operation when it declared one)."""
    for route in routes:
        op = op_of(route)
        if isinstance(route, Mount) and op is None:
            for path, methods, params, inner in walk(route.routes):
                yield route.path + path, methods, params, inner
            continue
        if op is None:
            continue
        if isinstance(route, Route):
            methods = sorted(m for m in (route.methods or {"GET"}) if m != "HEAD")
            path, params = _template(route.path_format, route.param_convertors)
            yield path, methods, params, op
        elif isinstance(route, Mount):
            yield route.path + "/{path}", ["GET"], [_path_param("path", "string")], op
        elif isinstance(route, WebSocketRoute):
            yield route.path, ["GET"], [], op


def every_route(routes: Iterable[BaseRoute]) -> Iterator[tuple[str, str]]:
    """(path, method) of every route, documented or not: what the document must list."""
    for route in routes:
        if isinstance(route, Mount) and op_of(route) is None:
            yield from ((route.path + p, m) for p, m in every_route(route.routes))
        elif isinstance(route, Route):
            path = _template(route.path_format, route.param_convertors)[0]
            yield from ((path, m) for m in sorted(route.methods or {"GET"}) if m != "HEAD")
        elif isinstance(route, Mount):
            yield route.path + "/{path}", "GET"
        elif isinstance(route, WebSocketRoute):
            yield route.path, "GET"


def _template(path_format: str, convertors: dict[str, Any]) -> tuple[str, list[Json]]:
    params = []
    for name, convertor in convertors.items():
        kind = "integer" if isinstance(convertor, IntegerConvertor) else "string"
        kind = "number" if isinstance(convertor, FloatConvertor) else kind
        params.append(_path_param(name, kind))
    return path_format, params


def _path_param(name: str, kind: str) -> Json:
    return {"name": name, "in": "path", "required": True, "schema": {"type": kind}}


def _operation(op: Op, path_params: list[Json], method: str) -> Json:
    out: Json = {
        "summary": op.summary,
        "tags": [op.tag],
        "operationId": f"{method.lower()}_{op.summary}".replace(" ", "_")[:80],
        "responses": _responses(op),
    }
    params = [*path_params, *(_param(p) for p in op.params)]
    if params:
        out["parameters"] = params
    if op.body is not None:
        content = {"application/json": {"schema": ref(op.body)}}
        out["requestBody"] = {"required": True, "content": content}
    if op.auth == "jwt":
        out["security"] = [{"jwt": []}]
    return out


def _param(p: Param) -> Json:
    return {"name": p.name, "in": p.where, "description": p.description,
            "schema": {"type": p.type}}  # fmt: skip


def _responses(op: Op) -> Json:
    body: Json = {"schema": ref(op.response)} if op.response else {}
    ok: Json = {"description": STATUS_TEXT.get(op.status, "OK")}
    if op.status != 101:
        ok["content"] = {op.media_type: body}
    out: Json = {str(op.status): ok}
    errors = (*op.errors, *((401,) if op.auth in ("jwt", "webhook") else ()))
    for code in sorted(set(errors)):
        content = {"application/json": {"schema": ref("Error")}}
        out[str(code)] = {"description": STATUS_TEXT.get(code, "Error"), "content": content}
    return out


def render(doc: Json) -> str:
    """The document as one HTML page: each operation with its parameters, body and answers,
    then the schemas as JSON."""
    rows = []
    for path, item in doc["paths"].items():
        for method, op in item.items():
            params = ", ".join(f"{p['name']} ({p['in']})" for p in op.get("parameters", []))
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {})
            answers = ", ".join(f"{code} {r['description']}" for code, r in op["responses"].items())
            cells = [method.upper(), path, op["summary"], params, _name(body.get("schema")),
                     "JWT" if op.get("security") else "", answers]  # fmt: skip
            rows.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    head = "".join(f"<th>{h}</th>" for h in
                   ("method", "path", "what", "parameters", "body", "auth", "answers"))  # fmt: skip
    schemas = html.escape(json.dumps(doc["components"]["schemas"], indent=2))
    return (
        "<!doctype html><html lang=en><meta charset=utf-8>"
        f"<title>{TITLE}</title><style>body{{font:14px sans-serif;margin:2em}}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px;"
        "text-align:left;vertical-align:top}pre{background:#f6f6f6;padding:1em}</style>"
        f"<h1>{TITLE} {html.escape(doc['info']['version'])}</h1>"
        '<p>Machine-readable: <a href="/openapi.json">/openapi.json</a>.</p>'
        f"<table><tr>{head}</tr>{''.join(rows)}</table><h2>Schemas</h2><pre>{schemas}</pre>"
    )


def _name(schema: Json | None) -> str:
    if not schema:
        return ""
    return str(schema.get("$ref", "")).rsplit("/", 1)[-1]
