"""The composition root: one AsyncExitStack owns every resource; SIGTERM drains and exits.

Order of start: store (on SQLite, the one-node file lock; migrated) → registry → session
leases → hub → pipeline → HTTP client → outbox and its sender → media store and worker → HTTP
app → pollers on the scheduler. Polling, sending and media fetching of a session run only
while this node holds its lease; webhooks are taken for every session. Stop runs in reverse:
no new poll cycles, cycles in flight finish, the pipeline commits what is queued, connections
close.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack, suppress
from dataclasses import dataclass, field
from functools import partial

import httpx

from wasync import httpclient, logs, systemd
from wasync.api.app import AppContext, create_app
from wasync.api.server import serve
from wasync.config import Settings, checks
from wasync.eventlog import prune_job
from wasync.healthwatch import HealthWatch, PollBeats
from wasync.hub import Hub
from wasync.leases import Leases
from wasync.media import MediaStore, MediaWorker, open_store
from wasync.metrics import Metrics
from wasync.nodelock import node_lock
from wasync.outbox import Outbox
from wasync.pipeline import Pipeline, Subscriber
from wasync.poller import Poller
from wasync.readiness import Readiness
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
    leases: Leases | None = None


async def run(
    settings: Settings,
    *,
    stop: asyncio.Event | None = None,
    on_ready: Callable[[Daemon], None] | None = None,
    subscribers: list[Subscriber] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    duties: bool = True,
    reuse_port: bool = False,
) -> None:
    """Run until `stop` is set or SIGTERM/SIGINT arrives, then drain and return.

    `duties=False` is an HTTP worker of `wasync run --workers N` (`wasync.workers`): webhooks,
    REST and `/ws` with its own pipeline and hub, but no polling, sending or media downloads,
    which stay with worker 0. `reuse_port` binds the port with SO_REUSEPORT beside them."""
    stop = stop or asyncio.Event()
    for finding in checks.check(settings):  # the first failure raises (`wasync doctor` too)
        log.warning("config %s: %s", finding.key, finding.problem, extra={"event": "config"})
    async with AsyncExitStack() as stack:
        store = await stack.enter_async_context(Store.from_config(settings.database))
        node_id = settings.cluster.resolved_node_id()
        stack.enter_context(node_lock(store, node_id))  # SQLite: one `wasync run` per file
        await store.upgrade()
        registry = await sync(store, settings)
        refs = [r for r in registry if r.config.enabled]
        # An HTTP worker of `--workers N` holds no leases (it would count as a node sharing
        # the sessions): worker 0 is this machine's node.
        leases = (
            await stack.enter_async_context(Leases(store, settings.cluster, [r.id for r in refs]))
            if duties
            else None
        )
        hub = await stack.enter_async_context(
            Hub(store, queue_frames=settings.http.ws_queue_frames)
        )  # real-time fan-out; on Postgres it also LISTENs for other nodes' commits
        pipeline = await stack.enter_async_context(
            Pipeline.from_settings(store, settings, subscribers=[hub, *(subscribers or [])])
        )
        client = await stack.enter_async_context(_client(transport, node_id))
        metrics = Metrics()
        outbox = await stack.enter_async_context(  # the send queue
            Outbox(settings, store, registry, pipeline, client, metrics=metrics)
        )
        if leases is not None:
            sender = await stack.enter_async_context(Sender(outbox, refs, leases=leases))
            leases.listeners.append(sender.wake_all)
        daemon = Daemon(
            settings=settings, store=store, registry=registry, pipeline=pipeline, metrics=metrics
        )
        daemon.leases = leases
        daemon.outbox = outbox
        daemon.hub = hub
        media_store: MediaStore = await stack.enter_async_context(
            open_store(settings.media, settings.database.url)
        )
        if settings.media.enabled and duties:
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
            if leases is not None and not store.is_sqlite:  # only the sessions this node holds
                daemon.media.own(leases.held)
                leases.listeners.append(daemon.media.own)
        # `/readyz`: the scheduler is added once it runs; on Postgres a node must also have
        # completed a lease round within the TTL (it holds its share of the sessions).
        readiness = Readiness(store, required=("scheduler",) if duties else ())
        if leases is not None and not store.is_sqlite:
            readiness.add("leases", partial(_leases_ready, leases))
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
                readiness=readiness,
            )
        )
        daemon.base_url = await stack.enter_async_context(
            serve(
                app,
                host=settings.http.host,
                port=settings.http.port,
                ws_ping_interval=settings.http.ws_ping_interval_s,
                ws_ping_timeout=settings.http.ws_ping_timeout_s,
                reuse_port=reuse_port,
            )
        )
        if duties:
            beats = PollBeats(pipeline)  # idle cycles' heartbeats, written after the last cycle
            stack.push_async_callback(beats.aclose)
            scheduler = _schedule(daemon, client, beats)
            notifier = _systemd(stack, scheduler, daemon)
            stack.push_async_callback(scheduler.stop)
            scheduler.start()
            readiness.add("scheduler", scheduler.readiness)
            ready = asyncio.ensure_future(
                systemd.when_ready(notifier, scheduler.ran_once("poll:"), partial(_status, daemon))
            )
            stack.callback(ready.cancel)
        _on_signals(stop)
        freeze_startup(stack)
        log.info(
            "%s: %d session(s), polling every %ss, node %s, database %s, http %s%s",
            "wasync running" if duties else "wasync http worker serving",
            len(daemon.pollers),
            _interval(settings),
            node_id,
            store.dialect,
            daemon.base_url,
            " (webhooks on)" if settings.webhook.enabled else "",
            extra={"event": "daemon.running"},
        )
        if on_ready is not None:
            on_ready(daemon)
        await stop.wait()
        notifier.stopping()
        if leases is not None:
            leases.leave()  # idle sessions to the other nodes now, busy ones as they finish
        log.info("stopping: finishing work in flight", extra={"event": "daemon.stopping"})
    log.info("stopped", extra={"event": "daemon.stopped"})


# Poll cycles at once: under the HTTP pool's 200 connections (`_client`). With 1,000 sessions
# a burst of cycles used to queue its requests in httpcore's pool, which rescans every queued
# request on each change: the daemon spent its CPU there and never caught up (bench_memory).
POLLS_RUNNING = 100


def freeze_startup(stack: AsyncExitStack) -> None:
    """Move what start-up built (modules, metadata, compiled statements, the app: it lives
    as long as the process) out of the collector's sight, so that a full collection no longer
    walks it in the middle of a request (bench_webhook, SQLite: p99 at half rate 52-68 ms ->
    13-27 ms). Garbage is collected first, so only live objects are frozen; they are handed
    back at stop (a daemon run inside a longer process, such as a test, leaks nothing)."""
    gc.collect()
    gc.freeze()
    stack.callback(gc.unfreeze)


def _interval(settings: Settings) -> float:
    """Polling is reconciliation when webhooks are on."""
    poll = settings.poll
    return poll.reconcile_interval_s if settings.webhook.enabled else poll.interval_s


def _client(transport: httpx.AsyncBaseTransport | None, node_id: str) -> httpx.AsyncClient:
    """The one client to the providers (`wasync.httpclient`); `X-Wasync-Node` says which
    node asked (in the providers' access logs, and the simulators' request logs)."""
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=100)
    return httpclient.client(transport, limits=limits, headers={"X-Wasync-Node": node_id})


def _schedule(daemon: Daemon, client: httpx.AsyncClient, beats: PollBeats) -> Scheduler:
    settings = daemon.settings
    scheduler = Scheduler(
        interval_s=_interval(settings), jitter_s=settings.poll.jitter_s, max_running=POLLS_RUNNING
    )
    jobs = []
    for ref in daemon.registry:
        if not ref.config.enabled:
            continue
        provider = provider_for(ref, client, settings.poll)
        health = HealthWatch(
            daemon.pipeline,
            label=ref.label,
            reconciling=settings.webhook.enabled,
            silence_s=settings.health.silence_s,
            metrics=daemon.metrics.health,
            heartbeat_s=settings.health.write_interval_s,
            beats=beats,
        )
        poller = Poller(
            provider,
            daemon.pipeline,
            daemon.store,
            settings.poll,
            label=ref.label,
            metrics=daemon.metrics,
            reconciling=settings.webhook.enabled,
            health=health,
        )
        daemon.pollers.append(poller)
        leased = partial(_leased, daemon.leases, ref.id, poller.cycle)
        cycle = logs.scoped(leased, session=ref.config.name, tenant=ref.tenant_id)
        jobs.append((f"poll:{ref.id}", cycle))
    scheduler.add_all(jobs)
    events = settings.events
    if events.retain_days > 0:
        prune = partial(prune_job, daemon.store, events)
        scheduler.add("events:prune", prune, interval_s=events.prune_interval_s)
    return scheduler


def _systemd(stack: AsyncExitStack, scheduler: Scheduler, daemon: Daemon) -> systemd.Notifier:
    """The notify socket, and the watchdog's heartbeat as a job on the event loop: a wedged
    loop stops pinging, and systemd restarts it (`WatchdogSec=`)."""
    notifier = systemd.Notifier()
    stack.callback(notifier.close)
    if notifier.watchdog_s is not None:
        beat = partial(systemd.heartbeat, notifier, partial(_status, daemon))
        scheduler.add("systemd:watchdog", beat, interval_s=notifier.watchdog_s)
    return notifier


def _status(daemon: Daemon) -> str:
    """systemd's STATUS= line."""
    settings = daemon.settings
    mode = f"polling every {_interval(settings):g}s"
    if settings.webhook.enabled:
        mode = f"webhooks on, reconciling every {_interval(settings):g}s"
    return systemd.status_line(daemon.metrics.registry, len(daemon.pollers), mode)


async def _leases_ready(leases: Leases) -> str | None:
    """`/readyz`: a node whose lease rounds fail holds nothing (it stops at 0.9 TTL)."""
    return None if leases.current else "no lease round succeeded within the TTL"


async def _leased(
    leases: Leases | None, session_id: int, cycle: Callable[[], Awaitable[object]]
) -> None:
    """One poll cycle, when this node holds the session's lease (its release waits for it)."""
    if leases is None:
        await cycle()
        return
    await leases.run(session_id, cycle)


def _on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with suppress(NotImplementedError, RuntimeError):  # not the main thread (tests)
            loop.add_signal_handler(sig, stop.set)
