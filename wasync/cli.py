"""The `wasync` command line (typer): parse, load config, call one function; no logic here."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from wasync import config as config_mod
from wasync.errors import ConfigError, WasyncError

app = typer.Typer(
    name="wasync",
    help="Keep WhatsApp conversations from WAHA and Evolution API in sync with a CRM database.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema commands.", no_args_is_help=True)
app.add_typer(db_app, name="db")

T = TypeVar("T")
ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="TOML config file (default: $WASYNC_CONFIG or config.example.toml)."
    ),
]


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print one clear line to stderr and return the Exit to raise."""
    typer.echo(f"wasync: {message}", err=True)
    return typer.Exit(code)


def load_settings(path: Path | None) -> config_mod.Settings:
    """Load and validate the config; exit 2 with one line naming the bad key."""
    try:
        return config_mod.load(path)
    except ConfigError as exc:
        raise fail(f"config error: {exc}", 2) from None


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine; turn wasync errors into one line and exit 1."""
    try:
        return asyncio.run(coro)
    except ConfigError as exc:
        raise fail(f"config error: {exc}", 2) from None
    except WasyncError as exc:
        raise fail(str(exc)) from None


def setup_logging(level: str) -> None:
    """One line per record on stderr."""
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("httpx", "httpcore", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # "skipped: maximum number of running instances reached" is the designed behaviour
    # (max_instances=1) while a long first sync runs; not worth a line every interval.
    logging.getLogger("apscheduler").setLevel(logging.ERROR)


@db_app.command("upgrade")
def db_upgrade(config: ConfigOpt = None) -> None:
    """Apply the schema migrations (the daemon also does this at start)."""
    from wasync.store import Store

    settings = load_settings(config)

    async def go() -> None:
        async with Store.from_config(settings.database) as store:
            await store.upgrade()

    run_async(go())
    typer.echo("database schema is up to date")


def main() -> None:
    """Console-script entry point."""
    app()


@app.command()
def run(config: ConfigOpt = None) -> None:
    """Poll every configured session (and serve webhooks when enabled) until SIGTERM/SIGINT."""
    from wasync import daemon

    settings = load_settings(config)
    setup_logging(settings.log_level)
    run_async(daemon.run(settings))


@app.command()
def replay(
    files: Annotated[
        list[Path], typer.Argument(help="JSON files: webhook bodies or messages.")
    ] = [],  # noqa: B006
    config: ConfigOpt = None,
    session: Annotated[
        str | None, typer.Option(help="Session for bare message lists (provider from config).")
    ] = None,
    tenant: Annotated[
        str | None, typer.Option(help="Tenant, when a session name is ambiguous.")
    ] = None,
    dead_letters: Annotated[
        bool, typer.Option("--dead-letters", help="Re-run the rows of dead_letters.")
    ] = False,
) -> None:
    """Feed captured provider JSON through the pipeline; print new, duplicate and rejected."""
    from wasync.replay import replay_cli

    settings = load_settings(config)
    setup_logging("WARNING")
    if not files and not dead_letters:
        raise fail("give JSON files to replay, or --dead-letters", 2)
    report = run_async(replay_cli(settings, files, session, tenant, dead_letters))
    for error in report.errors:
        typer.echo(f"rejected: {error}", err=True)
    typer.echo(
        f"new={report.new} duplicate={report.duplicate} ignored={report.ignored} "
        f"rejected={report.rejected}"
    )
    if report.rejected:
        raise typer.Exit(1)


@app.command()
def demo(
    state_dir: Annotated[
        Path | None, typer.Option(help="Where the demo's SQLite file goes (default ./state/demo).")
    ] = None,
    duration: Annotated[
        float | None, typer.Option(help="Stop after this many seconds (default: until Ctrl-C).")
    ] = None,
) -> None:
    """Both simulators, two tenants, live conversations: the daemon syncing them, printed live."""
    from wasync.demo import default_state_dir, run_demo

    setup_logging("WARNING")
    synced = run_async(run_demo(state_dir or default_state_dir(), duration_s=duration))
    typer.echo(f"demo stopped: {synced} messages in the database")


webhooks_app = typer.Typer(help="Provider webhook registration.", no_args_is_help=True)
app.add_typer(webhooks_app, name="webhooks")
TenantOpt = Annotated[str | None, typer.Option(help="Only this tenant.")]
SessionOpt = Annotated[str | None, typer.Option(help="Only this session / instance.")]


@webhooks_app.command("register")
def webhooks_register(
    public_url: Annotated[
        str | None,
        typer.Option(help="This daemon's public base URL (default [webhook] public_url)."),
    ] = None,
    config: ConfigOpt = None,
    tenant: TenantOpt = None,
    session: SessionOpt = None,
) -> None:
    """Point every configured session's provider webhook at this daemon (idempotent)."""
    from wasync.webhooks import run_all

    settings = load_settings(config)
    url = public_url or settings.webhook.public_url
    if not url:
        raise fail("pass --public-url or set [webhook] public_url", 2)
    _print_webhooks(run_async(run_all(settings, public_url=url, tenant=tenant, session=session)))


@webhooks_app.command("status")
def webhooks_status(
    config: ConfigOpt = None, tenant: TenantOpt = None, session: SessionOpt = None
) -> None:
    """Show what each provider has registered."""
    from wasync.webhooks import run_all

    settings = load_settings(config)
    _print_webhooks(run_async(run_all(settings, public_url=None, tenant=tenant, session=session)))


def _print_webhooks(states: list[Any]) -> None:
    failed = False
    for state in states:
        if isinstance(state, str):
            typer.echo(f"error: {state}", err=True)
            failed = True
            continue
        verb = "updated" if state.changed else "ok"
        signed = "signed" if state.signed else "UNSIGNED"
        note = f" - {state.note}" if state.note else ""
        url = state.url or "(no webhook)"
        typer.echo(
            f"{state.session}: {verb} {url} [{signed}] events={','.join(state.events)}{note}"
        )
    if failed:
        raise typer.Exit(1)


@app.command()
def doctor(config: ConfigOpt = None) -> None:
    """Check the config against the world: database, auth, every session's provider and
    webhook. One line per check; exit 1 if any check fails."""
    from wasync.doctor import diagnose

    settings = load_settings(config)
    checks = run_async(diagnose(settings))
    for check in checks:
        typer.echo(f"{check.level.upper():4}  {check.subject}: {check.detail}")
    if any(check.level == "fail" for check in checks):
        raise typer.Exit(1)


@app.command()
def backfill(
    since: Annotated[
        str, typer.Option(help="Start: ISO date or date-time (UTC unless it has an offset).")
    ],
    config: ConfigOpt = None,
    tenant: TenantOpt = None,
    session: SessionOpt = None,
    chat: Annotated[
        str | None, typer.Option(help="Only this chat: a phone number or a jid.")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="End (default: now); a date means the end of that day.")
    ] = None,
    max_messages: Annotated[
        int | None, typer.Option(min=1, help="Stop after about N messages; rerun to continue.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Read the providers, write nothing, report.")
    ] = False,
    notify: Annotated[
        bool, typer.Option("--notify/--no-notify", help="Notify admins of leads from history.")
    ] = False,
) -> None:
    """Catch up history through the pipeline, resumably: the same command continues a run."""
    from wasync import backfill as bf

    settings = load_settings(config)
    try:
        options = bf.make_options(
            settings,
            since=since,
            until=until,
            tenant=tenant,
            session=session,
            chat=chat,
            max_messages=max_messages,
            dry_run=dry_run,
            notify=notify,
        )
    except bf.BackfillUsageError as exc:
        raise fail(str(exc), 2) from None
    setup_logging(settings.log_level)
    raise typer.Exit(bf.exit_code(run_async(bf.backfill_cli(settings, options))))


_TTL_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _ttl_seconds(ttl: str) -> int:
    """`30m`, `1h`, `2d`, `45s` or plain seconds; exit 2 otherwise."""
    number, unit = (ttl[:-1], ttl[-1]) if ttl[-1:] in _TTL_UNITS else (ttl, "s")
    if not number.isdigit() or int(number) == 0:
        raise fail(f"--ttl must look like 30m, 1h, 2d or a number of seconds, not {ttl!r}", 2)
    return int(number) * _TTL_UNITS[unit]


@app.command()
def token(
    tenant: Annotated[str, typer.Option(help="Tenant id (the token's tenant_id claim).")],
    user: Annotated[str, typer.Option(help="User id (the token's sub claim).")],
    role: Annotated[str, typer.Option(help="ADMIN (whole tenant) or USER (assigned chats).")],
    ttl: Annotated[str, typer.Option(help="Lifetime: 30m, 1h, 2d or seconds.")] = "1h",
    config: ConfigOpt = None,
) -> None:
    """Print a JWT for REST and /ws, signed with the [auth] secret."""
    from typing import cast

    from wasync.auth import issue_token
    from wasync.scopes import ROLES, Role

    if role.upper() not in ROLES:
        raise fail(f"--role must be ADMIN or USER, not {role!r}", 2)
    seconds = _ttl_seconds(ttl)
    settings = load_settings(config)
    try:
        secret = settings.auth.secret()
    except ConfigError as exc:
        raise fail(f"config error: {exc}", 2) from None
    role_ = cast(Role, role.upper())
    typer.echo(issue_token(secret, tenant_id=tenant, user_id=user, role=role_, ttl_s=seconds))


@app.command()
def tail(
    url: Annotated[str, typer.Option(help="The daemon's base URL (http://host:port) or ws URL.")],
    token: Annotated[str, typer.Option(help="A JWT (see `wasync token`).", envvar="WASYNC_TOKEN")],
    since: Annotated[
        int | None, typer.Option(min=0, help="Replay the events after this id first.")
    ] = None,
    retries: Annotated[
        int, typer.Option(min=0, help="Reconnect attempts in a row before giving up.")
    ] = 5,
) -> None:
    """Print live events, one JSON line each; after a drop reconnect with `since`; Ctrl-C ends."""
    from wasync.api.ws import tail as tail_events

    try:
        run_async(tail_events(url, token, out=typer.echo, since=since, attempts=retries))
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


@app.command()
def send(
    tenant: Annotated[str, typer.Option(help="Tenant id.")],
    to: Annotated[str | None, typer.Option(help="Phone, e.g. +55 11 98765-4321.")] = None,
    text: Annotated[str | None, typer.Option(help="Message text (a template with --csv).")] = None,
    image: Annotated[str | None, typer.Option(help="Image file or URL.")] = None,
    video: Annotated[str | None, typer.Option(help="Video file or URL.")] = None,
    audio: Annotated[str | None, typer.Option(help="Audio file or URL.")] = None,
    voice: Annotated[str | None, typer.Option(help="Voice note (PTT) file or URL.")] = None,
    document: Annotated[str | None, typer.Option(help="Document file or URL.")] = None,
    caption: Annotated[str | None, typer.Option(help="Media caption.")] = None,
    filename: Annotated[str | None, typer.Option(help="File name shown.")] = None,
    session: Annotated[str | None, typer.Option(help="Session (default: first).")] = None,
    csv_file: Annotated[Path | None, typer.Option("--csv", help="One message per row.")] = None,
    template: Annotated[str | None, typer.Option(help="Text with {fields} (CSV, lead).")] = None,
    phone_column: Annotated[str, typer.Option(help="CSV column of the phone.")] = "phone",
    idempotency_key: Annotated[str | None, typer.Option(help="Never send twice.")] = None,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="Only queue.")] = False,
    timeout: Annotated[float | None, typer.Option(min=0.1, help="Wait at most (s).")] = None,
    config: ConfigOpt = None,
) -> None:
    """Send through the outbox and print the provider's message id (or a campaign summary)."""
    from wasync import campaign

    media = {
        k: v
        for k, v in (
            ("image", image), ("video", video), ("audio", audio), ("voice", voice),
            ("document", document),
        )
        if v
    }  # fmt: skip
    if len(media) > 1 or (to is None) == (csv_file is None) or (text and template):
        raise fail("give --to or --csv, and one of --text/--template or a media option", 2)
    kind, source = next(iter(media.items()), (None, None))
    settings = load_settings(config)
    setup_logging("WARNING")
    opts = campaign.SendOptions(
        tenant=tenant, session=session, to=to, csv_path=csv_file, phone_column=phone_column,
        text=text or template, media_kind=kind, media=source, caption=caption, filename=filename,
        idempotency_key=idempotency_key, wait=not no_wait, timeout_s=timeout,
    )  # fmt: skip
    if csv_file is not None:
        _send_campaign(settings, opts)
        return
    row = run_async(campaign.send_one(settings, opts))
    if no_wait:
        typer.echo(f"queued: outbox id {row.id} ({row.status})")
    elif row.status == "SENT":
        typer.echo(row.provider_message_id)
    elif row.status == "FAILED":
        raise fail(f"send failed (outbox id {row.id}): {row.last_error}")
    else:
        raise fail(f"outbox id {row.id} is still {row.status}: `wasync run` will send it")


def _send_campaign(settings: config_mod.Settings, opts: Any) -> None:
    """Queue and follow a CSV campaign; the summary on stdout, exit 1 if any send failed."""
    from rich.console import Console

    from wasync import campaign

    summary = run_async(campaign.run_campaign(settings, opts, Console(stderr=True)))
    typer.echo(summary.line())
    if summary.failed:
        raise typer.Exit(1)
