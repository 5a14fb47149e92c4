"""One configured session polled into a fresh store: what the polling tests share."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager

import httpx

from wasync.config import Settings
from wasync.pipeline import Pipeline, Subscriber
from wasync.poller import Poller
from wasync.registry import provider_for, sync
from wasync.store import Store


@asynccontextmanager
async def polled(
    settings: Settings,
    client: httpx.AsyncClient,
    *,
    clock: Callable[[], float] = time.time,
    subscribers: Sequence[Subscriber] = (),
) -> AsyncIterator[tuple[Store, Poller]]:
    """The store (upgraded, the settings' one session synced) and a Poller of that session
    through `client`, on `clock`; the pipeline runs until the block ends."""
    async with Store(settings.database.url) as store:
        await store.upgrade()
        (ref,) = list(await sync(store, settings))
        async with Pipeline(store, subscribers=subscribers) as pipeline:
            provider = provider_for(ref, client, settings.poll)
            yield store, Poller(provider, pipeline, store, settings.poll, clock=clock)
