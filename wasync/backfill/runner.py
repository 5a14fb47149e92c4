"""The backfill run: every selected session walked concurrently, chats in flight per session,
and the composition (store, pipeline, HTTP client) around it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
from sqlalchemy import select
from sqlalchemy.engine import make_url

from wasync import httpclient, phones
from wasync.backfill.batch import Batch, DryRunSink, Sink, StoreSink
from wasync.backfill.checkpoints import Window, has_table, load_checkpoints
from wasync.backfill.options import Options, selected
from wasync.backfill.present import LogObserver
from wasync.backfill.report import BackfillReport, Observer, SessionStats
from wasync.backfill.walk import ChatWalk, list_chats
from wasync.config import Settings
from wasync.errors import (
    FatalProviderError,
    ProviderError,
    StoreUnavailable,
    TransientProviderError,
)
from wasync.events import ChatKind
from wasync.pipeline import Pipeline
from wasync.providers.base import ChatHead, Provider
from wasync.registry import Registry, SessionRef, provider_for, sync
from wasync.store import Store
from wasync.store import models as m

log = logging.getLogger(__name__)

T_SESSIONS = m.Session.__table__  # type: ignore[attr-defined]
T_IDENTITIES = m.Identity.__table__  # type: ignore[attr-defined]


class Backfill:
    """One backfill run over several sessions; a session's errors end up in its stats."""

    def __init__(
        self,
        settings: Settings,
        options: Options,
        *,
        client: httpx.AsyncClient,
        sink: Sink,
        store: Store | None,
        observer: Observer,
        stop: asyncio.Event | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.settings = settings
        self.options = options
        self.client = client
        self.sink = sink
        self.store = store
        self.observer = observer
        self.stop = stop or asyncio.Event()
        self.clock = clock
        self.stopped: str | None = None
        self.seen = 0

    @property
    def stopping(self) -> bool:
        """True once Ctrl-C, SIGTERM or `--max-messages` asked the walk to stop."""
        return self.stop.is_set()

    def halt(self, reason: str) -> None:
        """Stop after the pages in flight; the first reason is the one reported."""
        self.stopped = self.stopped or reason
        self.stop.set()

    def count(self, n: int) -> None:
        """Messages seen; stops the run at `--max-messages`."""
        self.seen += n
        limit = self.options.max_messages
        if limit is not None and self.seen >= limit:
            self.halt(f"--max-messages {limit} reached")

    async def run(self, refs: Sequence[SessionRef]) -> BackfillReport:
        """Walk every session concurrently."""
        report = BackfillReport(dry_run=self.options.dry_run or self.options.fetch_only)
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(self.session(ref)) for ref in refs]
        report.sessions = [t.result() for t in tasks]
        wanted = self.options.chat
        if wanted is not None and not any(s.chats for s in report.sessions):
            report.problem = f"no chat matches --chat {wanted.text!r}"
        if self.stopped is None and self.stop.is_set():
            self.stopped = "interrupted"
        report.stopped = self.stopped
        return report

    async def session(self, ref: SessionRef) -> SessionStats:
        """Backfill one session; provider and store errors end up in its stats."""
        stats = SessionStats(label=ref.label)
        started = self.clock()
        provider = provider_for(ref, self.client, self.settings.poll)
        try:
            await self._session(ref, provider, stats)
        except* ProviderError as group:  # Unauthorized, SessionNotWorking, or a failed list
            stats.error = str(group.exceptions[0])
        except* StoreUnavailable as group:
            stats.error = str(group.exceptions[0])
            self.halt("database unavailable")
        stats.requests = provider.requests
        stats.elapsed_s = self.clock() - started
        self.observer.finished(stats)
        return stats

    async def _session(self, ref: SessionRef, provider: Provider, stats: SessionStats) -> None:
        state = await provider.state()
        if not state.working:
            stats.error = f"session is {state.status}, not working"
            return
        heads = await self._chats(ref, provider)
        done = await load_checkpoints(self.store, ref.id)
        stats.chats = len(heads)
        self.observer.started(stats)
        queue = deque(heads)
        workers = max(1, min(self.options.chats_in_flight, len(heads)))
        batch = Batch(
            self.sink, self.observer, ref.id, stats, flush_events=self.options.flush_events
        )
        async with batch, asyncio.TaskGroup() as tg:
            for _ in range(workers):
                tg.create_task(self._worker(ref, provider, queue, done, batch))

    async def _worker(
        self,
        ref: SessionRef,
        provider: Provider,
        queue: deque[ChatHead],
        done: Mapping[str, Sequence[Window]],
        batch: Batch,
    ) -> None:
        stats = batch.stats
        while queue and not self.stopping:
            head = queue.popleft()
            walk = ChatWalk(self, ref, provider, head, batch)
            try:
                await walk.run_chat(done.get(head.chat_id, ()))
            except (TransientProviderError, FatalProviderError) as exc:
                stats.chats_failed += 1
                log.warning("backfill %s chat %s failed: %s", ref.label, head.chat_id, exc)
                continue
            stats.chats_done += walk.complete
            self.observer.progressed(stats)

    async def _chats(self, ref: SessionRef, provider: Provider) -> list[ChatHead]:
        """The chat list, without chats quiet since `--since`, unwanted kinds, other chats."""
        heads = await list_chats(provider, self.options.page_size)
        crm = self.settings.crm
        dropped = {
            ChatKind.BROADCAST: not crm.keep_status_broadcast,
            ChatKind.NEWSLETTER: not crm.keep_newsletters,
        }
        heads = [
            h
            for h in heads
            if not dropped.get(phones.kind_of(h.chat_id), False)
            and (h.last_ts is None or h.last_ts >= self.options.since)
        ]
        wanted = self.options.chat
        if wanted is None:
            return heads
        lids = await lid_phones(self.store, ref.tenant_id) if wanted.phone else {}
        return [h for h in heads if wanted.matches(h.chat_id, lids)]


async def lid_phones(store: Store | None, tenant_id: str) -> dict[str, str]:
    """Known `lid -> phone` pairs of a tenant (read-only), to match `--chat` on LID chats."""
    if store is None:
        return {}
    c = T_IDENTITIES.c
    async with store.read() as conn:
        if not await has_table(conn, T_IDENTITIES.name):
            return {}
        rows = await conn.execute(select(c.lid, c.phone).where(c.tenant_id == tenant_id))
        return {r.lid.lower(): r.phone for r in rows}


# --- composition --------------------------------------------------------------------------------


async def known_sessions(store: Store | None, settings: Settings) -> Registry:
    """The configured sessions with their database ids, read-only (dry run): a session the
    database does not know yet gets a negative id and nothing counts as stored for it."""
    ids: dict[tuple[str, str], int] = {}
    if store is not None:
        async with store.read() as conn:
            if await has_table(conn, T_SESSIONS.name):
                c = T_SESSIONS.c
                rows = await conn.execute(select(c.id, c.tenant_id, c.name))
                ids = {(r.tenant_id, r.name): int(r.id) for r in rows}
    refs: dict[int, SessionRef] = {}
    for tenant in settings.tenants:
        for cfg in tenant.sessions:
            sid = ids.get((tenant.id, cfg.name), -(len(refs) + 1))
            refs[sid] = SessionRef(id=sid, tenant_id=tenant.id, config=cfg)
    return Registry(refs)


def _sqlite_file_missing(url: str) -> bool:
    """A dry run must not create the SQLite file it would read."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return False
    return not Path(parsed.database).expanduser().exists()


async def _open_store(stack: AsyncExitStack, settings: Settings, options: Options) -> Store | None:
    if options.fetch_only or (options.dry_run and _sqlite_file_missing(settings.database.url)):
        return None
    db = settings.database
    store = Store.from_config(db)
    return await stack.enter_async_context(store)


async def run_backfill(
    settings: Settings,
    options: Options,
    *,
    observer: Observer | None = None,
    stop: asyncio.Event | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> BackfillReport:
    """Open what a backfill needs (store, pipeline, HTTP client), walk, close; the report."""
    async with AsyncExitStack() as stack:
        store = await _open_store(stack, settings, options)
        sink: Sink
        if store is None or options.dry_run:
            registry = await known_sessions(store, settings)
            sink = DryRunSink(store)
        else:
            await store.upgrade()
            registry = await sync(store, settings)
            sink = StoreSink(await _pipeline(stack, store, settings), store, notify=options.notify)
        client = await stack.enter_async_context(
            httpclient.client(transport, limits=httpx.Limits(max_connections=100))
        )
        run = Backfill(
            settings,
            options,
            client=client,
            sink=sink,
            store=store,
            observer=observer or LogObserver(),
            stop=stop,
        )
        refs = selected(registry, options)
        report = await run.run(refs)
        if options.media and isinstance(sink, StoreSink) and store is not None:
            report.media = dict(await _media(settings, options, registry, store, refs, transport))
        return report


async def _media(
    settings: Settings,
    options: Options,
    registry: Registry,
    store: Store,
    refs: Sequence[SessionRef],
    transport: httpx.AsyncBaseTransport | None,
) -> dict[str, int]:
    """`--media`: the history's media, fetched here within `--media-budget` files."""
    from wasync.media.requeue import fetch_history  # the media worker, only when asked

    outcomes = await fetch_history(
        settings,
        registry,
        store,
        refs,
        since=options.since,
        until=options.until,
        budget=options.media_budget,
        transport=transport,
    )
    return dict(outcomes)


async def _pipeline(stack: AsyncExitStack, store: Store, settings: Settings) -> Pipeline:
    return await stack.enter_async_context(Pipeline.from_settings(store, settings))
