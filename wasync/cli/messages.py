"""`wasync send`, `replay` and `backfill`: messages in and out, outside the daemon."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from wasync import config as config_mod
from wasync.cli.base import (
    ConfigOpt,
    SessionOpt,
    TenantOpt,
    check_selection,
    fail,
    load_settings,
    run_async,
    setup_logging,
)


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
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise fail(f"no such file: {', '.join(missing)}", 2)
    check_selection(settings, tenant, session)
    report = run_async(replay_cli(settings, files, session, tenant, dead_letters))
    for error in report.errors:
        typer.echo(f"rejected: {error}", err=True)
    typer.echo(
        f"new={report.new} duplicate={report.duplicate} ignored={report.ignored} "
        f"rejected={report.rejected}"
    )
    if report.rejected:
        raise typer.Exit(1)


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
    media: Annotated[
        bool, typer.Option("--media", help="Then fetch the media of that history.")
    ] = False,
    media_budget: Annotated[
        int, typer.Option(min=1, help="With --media: at most this many files, newest first.")
    ] = 500,
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
            media=media,
            media_budget=media_budget,
        )
    except bf.BackfillUsageError as exc:
        raise fail(str(exc), 2) from None
    setup_logging(settings.log_level, settings.secret_values(), settings.log_format)
    raise typer.Exit(bf.exit_code(run_async(bf.backfill_cli(settings, options))))


def send(
    tenant: Annotated[str, typer.Option(help="Tenant id.")],
    to: Annotated[
        str | None,
        typer.Option(help="A phone (+55 11 98765-4321), a jid, or a chat id (123, chat:123)."),
    ] = None,
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
    duplicates = summary.duplicates_line()
    if duplicates:
        typer.echo(duplicates, err=True)
    typer.echo(summary.line())
    if summary.failed:
        raise typer.Exit(1)
