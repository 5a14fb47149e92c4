"""The composition root: one AsyncExitStack owns every resource; SIGTERM drains and exits.

Order of start: store (migrated) → registry → hub → pipeline → HTTP client → outbox and its
sender → media store and worker → HTTP app → pollers on the scheduler. Stop runs in reverse:
no new poll cycles, cycles in flight finish, the pipeline commits what is queued, connections
close.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from contextlib import AsyncExitStack, suppress
from dataclasses import dataclass, field
from functools import partial

import httpx

from wasync.api.app import AppContext, create_app
from wasync.api.server import serve
from wasync.config import Settings
from wasync.eventlog import prune_job
from wasync.hub import Hub
from wasync.media import MediaStore, MediaWorker, open_store
from wasync.metrics import Metrics
from wasync.outbox import Outbox
from wasync.pipeline import Pipeline, Subscriber
from wasync.poller import Poller
from wasync.registry import Registry, provider_for, sync
from wasync.scheduler import Scheduler
from wasync.sender import Sender
from wasync.store import Store

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Daemon:
    """What a running daemon holds; handed to `on_ready` (tests, demo)."""

    settings: Settings
    store: Store
    registry: Registry
    pipeline: Pipeline
    metrics: Metrics
    base_url: str = ""
    pollers: list[Poller] = field(default_factory=list)
    outbox: Outbox | None = None
    hub: Hub | None = None
    media: MediaWorker | None = None


async def run(
    settings: Settings,
    *,
    stop: asyncio.Event | None = None,
    on_ready: Callable[[Daemon], None] | None = None,
    subscribers: list[Subscriber] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> None:
    """Run until `stop` is set or SIGTERM/SIGINT arrives, then drain and return."""
    stop = stop or asyncio.Event()
    settings.check_secrets()
    if settings.poll.timeout_s <= 15:
        log.warning(
            "poll.timeout_s=%ss is not above WAHA's 15 s wait for a WORKING session: "
            "expect timeouts on sessions that are starting",
            settings.poll.timeout_s,
        )
    async with AsyncExitStack() as stack:
        store = await stack.enter_async_context(Store.from_config(settings.database))
        await store.upgrade()
        registry = await sync(store, settings)
        hub = await stack.enter_async_context(
            Hub(store, queue_frames=settings.http.ws_queue_frames)
        )  # real-time fan-out; on Postgres it also LISTENs for other nodes' commits
        pipeline = await stack.enter_async_context(
            Pipeline.from_settings(store, settings, subscribers=[hub, *(subscribers or [])])
        )
        client = await stack.enter_async_context(_client(transport))
        metrics = Metrics()
        outbox = await stack.enter_async_context(  # the send queue
            Outbox(settings, store, registry, pipeline, client, metrics=metrics)
        )
        refs = [r for r in registry if r.config.enabled]
        await stack.enter_async_context(Sender(outbox, refs))
        daemon = Daemon(
            settings=settings, store=store, registry=registry, pipeline=pipeline, metrics=metrics
        )
        daemon.outbox = outbox
        daemon.hub = hub
        media_store: MediaStore = await stack.enter_async_context(
            open_store(settings.media, settings.database.url)
        )
        if settings.media.enabled:
            daemon.media = await stack.enter_async_context(
                MediaWorker(
                    settings.media,
                    pipeline=pipeline,
                    store=store,
                    media=media_store,
                    registry=registry,
                    client=client,
                    poll=settings.poll,
                    metrics=metrics,
                )
            )
            pipeline.subscribers.append(daemon.media)  # new media: look at once
        app = create_app(
            AppContext(
                settings=settings,
                store=store,
                registry=registry,
                pipeline=pipeline,
                metrics=metrics,
                outbox=outbox,
                hub=hub,
                media_store=media_store,
                media_worker=daemon.media,
            )
        )
        daemon.base_url = await stack.enter_async_context(
            serve(
                app,
                host=settings.http.host,
                port=settings.http.port,
                ws_ping_interval=settings.http.ws_ping_interval_s,
                ws_ping_timeout=settings.http.ws_ping_timeout_s,
            )
        )
        scheduler = _schedule(daemon, client)
        stack.push_async_callback(scheduler.stop)
        scheduler.start()
        _on_signals(stop)
        log.info(
            "wasync running: %d session(s), polling every %ss, database %s, http %s%s",
            len(daemon.pollers),
            _interval(settings),
            store.dialect,
            daemon.base_url,
            " (webhooks on)" if settings.webhook.enabled else "",
        )
        if on_ready is not None:
            on_ready(daemon)
        await stop.wait()
        log.info("stopping: finishing work in flight")
    log.info("stopped")


# Poll cycles at once: under the HTTP pool's 200 connections (`_client`). With 1,000 sessions
# a burst of cycles used to queue its requests in httpcore's pool, which rescans every queued
# request on each change: the daemon spent its CPU there and never caught up (bench_memory).
POLLS_RUNNING = 100


def _interval(settings: Settings) -> float:
    """Polling is reconciliation when webhooks are on."""
    poll = settings.poll
    return poll.reconcile_interval_s if settings.webhook.enabled else poll.interval_s


def _client(transport: httpx.AsyncBaseTransport | None) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=100)
    return httpx.AsyncClient(transport=transport, limits=limits, follow_redirects=False)


def _schedule(daemon: Daemon, client: httpx.AsyncClient) -> Scheduler:
    settings = daemon.settings
    scheduler = Scheduler(
        interval_s=_interval(settings), jitter_s=settings.poll.jitter_s, max_running=POLLS_RUNNING
    )
    jobs = []
    for ref in daemon.registry:
        if not ref.config.enabled:
            continue
        provider = provider_for(ref, client, settings.poll)
        poller = Poller(
            provider,
            daemon.pipeline,
            daemon.store,
            settings.poll,
            label=ref.label,
            metrics=daemon.metrics,
            reconciling=settings.webhook.enabled,
        )
        daemon.pollers.append(poller)
        jobs.append((f"poll:{ref.id}", poller.cycle))
    scheduler.add_all(jobs)
    events = settings.events
    if events.retain_days > 0:
        prune = partial(prune_job, daemon.store, events)
        scheduler.add("events:prune", prune, interval_s=events.prune_interval_s)
    return scheduler


def _on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with suppress(NotImplementedError, RuntimeError):  # not the main thread (tests)
            loop.add_signal_handler(sig, stop.set)
