"""`wasync token` and `wasync tail`: real-time clients' tokens and a terminal client."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

import typer

from wasync.cli.base import ConfigOpt, fail, load_settings, run_async
from wasync.errors import ConfigError
from wasync.untrusted import parse_int

_TTL_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_TTL_S = 10 * 365 * 86400  # a JWT `exp` stays a sane date


def _ttl_seconds(ttl: str) -> int:
    """`30m`, `1h`, `2d`, `45s` or plain seconds; exit 2 otherwise."""
    number, unit = (ttl[:-1], ttl[-1]) if ttl[-1:] in _TTL_UNITS else (ttl, "s")
    count = parse_int(number, lo=1, hi=MAX_TTL_S) if number.isdigit() else None  # not "²h"
    if count is None or count * _TTL_UNITS[unit] > MAX_TTL_S:
        raise fail(f"--ttl must look like 30m, 1h, 2d or a number of seconds, not {ttl!r}", 2)
    return count * _TTL_UNITS[unit]


def token(
    tenant: Annotated[str, typer.Option(help="Tenant id (the token's tenant_id claim).")],
    user: Annotated[str, typer.Option(help="User id (the token's sub claim).")],
    role: Annotated[str, typer.Option(help="ADMIN (whole tenant) or USER (assigned chats).")],
    ttl: Annotated[str, typer.Option(help="Lifetime: 30m, 1h, 2d or seconds.")] = "1h",
    url: Annotated[
        bool, typer.Option("--url", help="Print the attendance page's login URL instead.")
    ] = False,
    base_url: Annotated[
        str | None,
        typer.Option(help="The daemon's address for --url (default: from [http] host and port)."),
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Print a JWT for REST and /ws, signed with the [auth] secret (or, with --url, the
    attendance page's login URL: `<base>/atendimento#token=<JWT>`)."""
    from typing import cast

    from wasync.api.web import login_url
    from wasync.auth import issue_token
    from wasync.principal import ROLES, Role

    if role.upper() not in ROLES:
        raise fail(f"--role must be ADMIN or USER, not {role!r}", 2)
    seconds = _ttl_seconds(ttl)
    settings = load_settings(config)
    try:
        secret = settings.auth.secret()
    except ConfigError as exc:
        raise fail(f"config error: {exc}", 2) from None
    role_ = cast(Role, role.upper())
    jwt = issue_token(secret, tenant_id=tenant, user_id=user, role=role_, ttl_s=seconds)
    if not url:
        typer.echo(jwt)
        return
    http = settings.http
    host = "127.0.0.1" if http.host in ("0.0.0.0", "::", "") else http.host
    base = (base_url or f"http://{host}:{http.port}").rstrip("/")
    typer.echo(login_url(base, jwt))


def tail(
    url: Annotated[str, typer.Option(help="The daemon's base URL (http://host:port) or ws URL.")],
    token: Annotated[str, typer.Option(help="A JWT (see `wasync token`).", envvar="WASYNC_TOKEN")],
    since: Annotated[
        int | None, typer.Option(min=0, help="Replay the events after this id first.")
    ] = None,
    max_retries: Annotated[
        int | None,
        typer.Option(
            "--max-retries",
            "--retries",
            min=0,
            help="Give up after N failed reconnects in a row (default: never, for scripts).",
        ),
    ] = None,
    max_backoff: Annotated[
        float, typer.Option(min=0.1, help="Longest wait between reconnects (s).")
    ] = 30.0,
) -> None:
    """Print live events, one JSON line each; after a drop reconnect with `since` (capped
    exponential backoff with jitter) until Ctrl-C."""
    from wasync.api.ws import tail as tail_events

    if urlsplit(url).scheme not in ("http", "https", "ws", "wss") or not urlsplit(url).netloc:
        raise fail(f"--url must look like http://host:port, not {url!r}", 2)

    def note(line: str) -> None:
        typer.echo(f"wasync: {line}", err=True)

    try:
        run_async(
            tail_events(
                url,
                token,
                out=typer.echo,
                since=since,
                attempts=max_retries,
                max_backoff_s=max_backoff,
                note=note,
            )
        )
    except KeyboardInterrupt:
        raise typer.Exit(0) from None
