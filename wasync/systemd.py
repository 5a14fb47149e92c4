"""systemd's notify protocol: READY, WATCHDOG pings, STOPPING and a STATUS line.

The protocol is a few lines (sd_notify(3)): one AF_UNIX datagram of `KEY=value` lines to the
socket named by `$NOTIFY_SOCKET` (a leading `@` names an abstract socket), and
`$WATCHDOG_USEC` (for `$WATCHDOG_PID`, when set) is how often systemd wants a `WATCHDOG=1`.
Written here rather than taken from a library: `sdnotify` (PyPI) is unmaintained since 2017
and `systemd-python` needs libsystemd's headers to build; both would wrap these same lines.

Without `$NOTIFY_SOCKET` (not under systemd, or `Type=` other than notify) every call does
nothing. A failed send is logged once and never stops the daemon.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Awaitable, Callable, Mapping

from prometheus_client import CollectorRegistry

log = logging.getLogger(__name__)

WATCHDOG_FRACTION = 0.5  # ping at half the interval systemd asked for, as sd_watchdog_enabled(3)


class Notifier:
    """Sends notify messages to systemd (or nowhere, outside systemd)."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self.address = _address(env.get("NOTIFY_SOCKET", ""))
        self.watchdog_s = _watchdog_s(env)
        self._sock: socket.socket | None = None
        self._failed = False

    @property
    def enabled(self) -> bool:
        """Whether a notify socket was given."""
        return self.address is not None

    def notify(self, **fields: str) -> None:
        """One datagram of `KEY=value` lines (`READY="1"`, `STATUS="..."`)."""
        if self.address is None:
            return
        text = "\n".join(f"{key}={' '.join(str(value).split())}" for key, value in fields.items())
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)  # never wait on systemd from the event loop
            self._sock.sendto(text.encode(), self.address)
        except OSError as exc:
            if not self._failed:
                self._failed = True
                log.warning("systemd notify socket refused a message: %s", exc)

    def ready(self, status: str) -> None:
        """`READY=1`: the store is migrated and the first cycles ran."""
        self.notify(READY="1", STATUS=status)

    def watchdog(self, status: str | None = None) -> None:
        """`WATCHDOG=1` (with a fresh STATUS line when given)."""
        if status is None:
            self.notify(WATCHDOG="1")
        else:
            self.notify(WATCHDOG="1", STATUS=status)

    def stopping(self) -> None:
        """`STOPPING=1`: the drain has begun."""
        self.notify(STOPPING="1", STATUS="stopping: finishing work in flight")

    def close(self) -> None:
        """Close the socket."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None


async def when_ready(notifier: Notifier, ready: Awaitable[None], status: Callable[[], str]) -> None:
    """`READY=1` once `ready` is done (every session's first poll cycle ran)."""
    await ready
    notifier.ready(status())
    log.debug("systemd: READY=1")


async def heartbeat(notifier: Notifier, status: Callable[[], str]) -> None:
    """The watchdog job: one `WATCHDOG=1` with the current STATUS line."""
    notifier.watchdog(status())


def status_line(registry: CollectorRegistry, sessions: int, mode: str) -> str:
    """`STATUS=`'s one line: sessions, mode, messages stored and poll cycles from the
    daemon's own metrics."""
    stored = _total(registry, "wasync_messages_ingested_total")
    ok = _total(registry, "wasync_poll_cycles_total", outcome="ok")
    failed = _total(registry, "wasync_poll_cycles_total", outcome="error")
    return (
        f"{sessions} session(s), {mode}; {stored} messages stored; "
        f"poll cycles {ok} ok, {failed} failed"
    )


def _total(registry: CollectorRegistry, name: str, **labels: str) -> int:
    """The sum of a counter's samples whose labels include `labels`."""
    total = 0.0
    for family in registry.collect():
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                total += sample.value
    return int(total)


def _address(raw: str) -> str | None:
    """`$NOTIFY_SOCKET` as a socket address: a path, or `@name` for the abstract namespace."""
    if not raw:
        return None
    if raw.startswith("@"):
        return "\0" + raw[1:]
    return raw if raw.startswith("/") else None  # vsock (systemd 253+) is not for us


def _watchdog_s(env: Mapping[str, str]) -> float | None:
    """How often to ping, or None when systemd asked for no watchdog (or for another pid)."""
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid.isdigit() and int(pid) != os.getpid():
        return None
    return int(usec) / 1e6 * WATCHDOG_FRACTION
