"""The two baselines `scripts/bench_webhook.py` measures wasync's webhook endpoint against, each
run as its own process on the same HTTP stack as `wasync run` (`wasync.api.server.serve`, the
same uvicorn settings and event loop):

- `empty`: a Starlette app whose one POST route reads the body and answers `{"ok": true}`
  (the HTTP stack's own limit);
- `plan`: the CRM plan's per-request handler, written the plain way with sqlmodel: parse the
  WAHA body, find the chat by phone, create lead and chat if none, insert the message, commit,
  answer. One transaction per request, through sqlmodel's `AsyncSession` and the engine's pool.

Usage: python scripts/bench_webhook_servers.py empty|plan [--db URL]
Prints `listening http://127.0.0.1:PORT` on stdout, then serves until SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlmodel import Field, SQLModel, select
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from wasync.api.server import new_event_loop, serve

PATH = "/api/webhooks/whatsapp"


class Lead(SQLModel, table=True):
    """The CRM plan's lead: created the first time a number writes."""

    __tablename__ = "plan_leads"
    id: int | None = Field(default=None, primary_key=True)
    phone: str = Field(index=True)
    first_name: str = "Lead"
    last_name: str = ""
    email: str = ""
    source: str = "WHATSAPP_CAMPAIGN"
    status: str = "NEW"
    score: int = 50


class Chat(SQLModel, table=True):
    """The CRM plan's chat, one per phone."""

    __tablename__ = "plan_chats"
    id: int | None = Field(default=None, primary_key=True)
    phone: str = Field(unique=True)
    lead_id: int = Field(foreign_key="plan_leads.id")
    status: str = "OPEN"
    last_message_at: datetime | None = None


class Message(SQLModel, table=True):
    """The CRM plan's message row."""

    __tablename__ = "plan_messages"
    id: int | None = Field(default=None, primary_key=True)
    chat_id: int = Field(foreign_key="plan_chats.id", index=True)
    provider_message_id: str = Field(unique=True)
    from_me: bool = False
    body: str = ""
    sent_at: datetime | None = None


def empty_app() -> Starlette:
    """The HTTP limit: read the body, answer."""

    async def hook(request: Request) -> Response:
        await request.body()
        return JSONResponse({"ok": True})

    return Starlette(routes=[Route(PATH, hook, methods=["POST"])])


def plan_app(engine: AsyncEngine) -> Starlette:
    """The CRM plan's handler: one transaction per request."""

    async def hook(request: Request) -> Response:
        body = json.loads(await request.body())
        payload = body["payload"]
        phone = payload["from"].split("@")[0]
        sent = datetime.fromtimestamp(payload["timestamp"], UTC)
        async with AsyncSession(engine) as session:
            chat = (await session.exec(select(Chat).where(Chat.phone == phone))).first()
            if chat is None:
                lead = Lead(phone=phone, last_name=phone[-4:], email=f"{phone}@whatsapp.com")
                session.add(lead)
                await session.flush()
                assert lead.id is not None
                chat = Chat(phone=phone, lead_id=lead.id)
                session.add(chat)
                await session.flush()
            assert chat.id is not None
            chat.last_message_at = sent
            session.add(
                Message(
                    chat_id=chat.id,
                    provider_message_id=payload["id"],
                    from_me=payload["fromMe"],
                    body=payload["body"],
                    sent_at=sent,
                )
            )
            await session.commit()
        return JSONResponse({"ok": True})

    return Starlette(routes=[Route(PATH, hook, methods=["POST"])])


def plan_engine(url: str) -> AsyncEngine:
    """The plan's engine; SQLite in WAL with wasync's own pragmas (same durability)."""
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    return create_async_engine(url)


async def main(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    engine = None
    if args.kind == "plan":
        engine = plan_engine(args.db)
        async with engine.begin() as conn:
            await conn.run_sync(SQLModel.metadata.create_all)
        app = plan_app(engine)
    else:
        app = empty_app()
    async with serve(app, host="127.0.0.1", port=0) as base:
        print(f"listening {base}", flush=True)
        await stop.wait()
    if engine is not None:
        await engine.dispose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=["empty", "plan"])
    parser.add_argument("--db", default="")
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(main(parser.parse_args()))
