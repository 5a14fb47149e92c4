"""`PgListener`: a dedicated asyncpg connection LISTENing for other nodes' event-log rows.

Ingest commits with `pg_notify(CHANNEL, <last id>)` (`Store.run_write`, the payload from
`wasync.eventlog.notify_payload`); the hub of
every node listens, so a client connected to node B sees what node A ingested.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import asyncpg
from sqlalchemy.engine import URL

from wasync.outage import Outage

log = logging.getLogger(__name__)

CHANNEL = "wasync_events"  # the event log's `pg_notify` channel
LISTEN_APP_NAME = "wasync-hub-listen"


def asyncpg_dsn(url: URL) -> str:
    """The store's SQLAlchemy URL as a plain asyncpg DSN."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


class PgListener:
    """A dedicated asyncpg connection LISTENing on `wasync_events`, reconnecting with backoff.

    `on_event` runs for every notification, with its payload (the commit's last event id),
    and after every (re)connect with None, since notifications sent while disconnected are
    lost; a `SELECT 1` every `check_s` finds silent drops.
    """

    def __init__(
        self,
        dsn: str,
        *,
        on_event: Callable[[str | None], None],
        retry_s: float = 0.5,
        max_retry_s: float = 5.0,
        check_s: float = 10.0,
        channel: str = CHANNEL,
        app_name: str = LISTEN_APP_NAME,
        label: str = "hub: LISTEN connection",
    ) -> None:
        self.dsn = dsn
        self.channel, self.app_name = channel, app_name
        self.on_event = on_event
        self.retry_s, self.max_retry_s, self.check_s = retry_s, max_retry_s, check_s
        self.connects = 0  # successful connections so far
        self._task: asyncio.Task[None] | None = None
        self._outage = Outage(log, label)  # one line per outage

    async def __aenter__(self) -> PgListener:
        self._task = asyncio.create_task(self._run(), name="wasync-hub-listen")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        delay = self.retry_s
        while True:
            connects = self.connects
            try:
                await self._session()
            except Exception as exc:  # reconnect whatever went wrong
                if self.connects > connects:
                    delay = self.retry_s
                self._outage.failed(exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_retry_s)

    async def _session(self) -> None:
        """One connection's life; returns only by raising."""
        conn = await asyncpg.connect(
            self.dsn, timeout=10, server_settings={"application_name": self.app_name}
        )
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: lost.set())
        try:
            await conn.add_listener(self.channel, lambda *args: self.on_event(args[-1]))
            self.connects += 1
            self._outage.ok()
            self.on_event(None)
            while True:
                try:
                    await asyncio.wait_for(lost.wait(), self.check_s)
                    raise ConnectionError("connection closed")
                except TimeoutError:
                    await asyncio.wait_for(conn.fetchval("SELECT 1"), self.check_s)
        finally:
            conn.terminate()
