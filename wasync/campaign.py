"""`wasync send`: one message, or a CSV campaign, through the same outbox and rate limits.

The command queues with the daemon's rules (number check, media check, idempotency key) and,
unless `--no-wait`, runs a sender restricted to its own rows until they are SENT or FAILED.
The rows are claimed in the database, so when a daemon is running too, exactly one of them
sends each row. A campaign's idempotency keys are derived from the message and the phone, so
running the same command again never messages anyone twice.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import string
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import select

from wasync import recipients
from wasync.config import Settings
from wasync.outbox import (
    FINAL,
    NotOnWhatsApp,
    Outbox,
    Queued,
    SendRejected,
    SendRequest,
    media_request,
    parse_to,
    text_request,
)
from wasync.pipeline import Pipeline
from wasync.registry import sync
from wasync.sender import own_sender, wait_final
from wasync.store import Store
from wasync.store import models as m

LEAD_FIELDS = ("first_name", "last_name", "email", "phone", "source", "status", "score")


@dataclass(frozen=True, slots=True, kw_only=True)
class SendOptions:
    """What `wasync send` was asked: the text (a template with `--csv`) or one media."""

    tenant: str
    session: str | None = None
    to: str | None = None
    csv_path: Path | None = None
    phone_column: str = "phone"
    text: str | None = None
    media_kind: str | None = None
    media: str | None = None
    caption: str | None = None
    filename: str | None = None
    idempotency_key: str | None = None
    wait: bool = True
    timeout_s: float | None = None


@dataclass(slots=True)
class Summary:
    """How a campaign went."""

    queued: int = 0
    already: int = 0
    sent: int = 0
    failed: int = 0
    pending: int = 0
    not_on_whatsapp: int = 0
    invalid: int = 0
    duplicates: list[str] = field(default_factory=list)

    def line(self) -> str:
        """One line for the terminal."""
        return (
            f"queued={self.queued} already_queued={self.already} sent={self.sent} "
            f"failed={self.failed} not_sent_yet={self.pending} "
            f"skipped_not_on_whatsapp={self.not_on_whatsapp} invalid={self.invalid}"
            + (f" skipped_duplicate={len(self.duplicates)}" if self.duplicates else "")
        )

    def duplicates_line(self) -> str | None:
        """The phones that appeared more than once (each was messaged once), or None."""
        if not self.duplicates:
            return None
        shown = ", ".join(f"+{p}" for p in self.duplicates[:10])
        more = f" and {len(self.duplicates) - 10} more" if len(self.duplicates) > 10 else ""
        return f"rows repeating a phone, skipped: {shown}{more}"


@asynccontextmanager
async def open_outbox(settings: Settings) -> AsyncIterator[Outbox]:
    """Store (migrated), registry, pipeline, HTTP client and outbox of a CLI process."""
    db = settings.database
    async with Store.from_config(db) as store:
        await store.upgrade()
        registry = await sync(store, settings)
        async with (
            Pipeline.from_settings(store, settings) as pipeline,
            httpx.AsyncClient(follow_redirects=False) as client,
            Outbox(settings, store, registry, pipeline, client) as outbox,
        ):
            yield outbox


async def send_one(settings: Settings, opts: SendOptions) -> Queued:
    """Queue one message and (unless `wait` is off) see it through; returns its row."""
    if opts.to is None:
        raise SendRejected("give --to PHONE (or --csv FILE)")
    async with open_outbox(settings) as outbox:
        row = await outbox.find(opts.tenant, opts.idempotency_key) if opts.idempotency_key else None
        if row is None:
            outbox.session(opts.tenant, opts.session)  # a bad tenant or session fails first
            request = build_request(opts, outbox.cfg.max_media_bytes, {})
            target = await recipients.resolve(outbox, opts.tenant, opts.session, opts.to)
            row = await outbox.enqueue(target, request, opts.idempotency_key)
        if not opts.wait or row.status in FINAL:
            return row
        rows = await _see_through(outbox, [row], _timeout(outbox, opts), None)
        return rows.get(row.id, row)


def build_request(opts: SendOptions, max_bytes: int, variables: Mapping[str, Any]) -> SendRequest:
    """The SendRequest of the options; text and caption are filled from `variables`."""
    text = render(opts.text, variables) if opts.text is not None else None
    caption = render(opts.caption, variables) if opts.caption is not None else None
    if opts.media_kind is None:
        if text is None:
            raise SendRejected("give the message: --text, or a media option")
        return text_request(text)
    if opts.media is None:
        raise SendRejected(f"--{opts.media_kind} needs a file path or URL")
    return media_request(
        opts.media_kind,
        opts.media,
        caption=caption or text,
        filename=opts.filename,
        max_bytes=max_bytes,
        allow_files=True,
    )


def render(template: str, variables: Mapping[str, Any]) -> str:
    """`str.format` with named fields only; a missing one is a SendRejected naming it."""
    try:
        return template.format_map(variables)
    except KeyError as exc:
        raise SendRejected(f"no value for {{{exc.args[0]}}}") from None
    except (IndexError, ValueError) as exc:
        raise SendRejected(f"bad template: {exc}") from None


def placeholders(template: str | None) -> set[str]:
    """The field names a template uses."""
    if not template:
        return set()
    try:
        return {name for _, name, _, _ in string.Formatter().parse(template) if name}
    except ValueError as exc:
        raise SendRejected(f"bad template: {exc}") from None


# --- campaigns --------------------------------------------------------------------------------


def read_rows(path: Path, phone_column: str) -> tuple[list[str], list[dict[str, str]]]:
    """Header and rows of a CSV file (UTF-8, BOM tolerated)."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            rows = [dict(r) for r in reader]
            header = list(reader.fieldnames or [])
    except OSError as exc:
        raise SendRejected(f"{path}: {exc.strerror}") from None
    if phone_column not in header:
        raise SendRejected(f"{path}: no {phone_column!r} column in the header {header}")
    return header, rows


async def run_campaign(settings: Settings, opts: SendOptions, console: Console) -> Summary:
    """Queue one message per CSV row (variables from the row and the lead), then follow them."""
    assert opts.csv_path is not None
    header, rows = read_rows(opts.csv_path, opts.phone_column)
    unknown = placeholders(opts.text) | placeholders(opts.caption)
    unknown -= set(header) | set(LEAD_FIELDS)
    if unknown:
        raise SendRejected(f"the template uses {sorted(unknown)}: not CSV columns nor lead fields")
    summary = Summary()
    async with open_outbox(settings) as outbox:
        queued = await _queue_rows(outbox, opts, rows, summary, console)
        if opts.wait and queued:
            timeout = _timeout(outbox, opts, len(queued))
            final = await _see_through(outbox, queued, timeout, console)
        else:
            final = {r.id: r for r in queued}
    for row in final.values():
        if row.status == "SENT":
            summary.sent += 1
        elif row.status == "FAILED":
            summary.failed += 1
        else:
            summary.pending += 1
    return summary


@dataclass(slots=True, kw_only=True)
class _Queuer:
    """Queues a campaign's rows one by one on one session, counting what happened."""

    outbox: Outbox
    opts: SendOptions
    summary: Summary
    leads: Mapping[str, Mapping[str, Any]]
    prefix: str

    async def row(self, row: Mapping[str, str], phone: str | None) -> Queued | None:
        """Queue one row; None when it was skipped (counted in the summary)."""
        if phone is None:
            self.summary.invalid += 1
            return None
        given = {k: v for k, v in row.items() if v}
        variables = {**self.leads.get(phone, {"phone": phone}), **given}
        try:
            request = build_request(self.opts, self.outbox.cfg.max_media_bytes, variables)
            ref = self.outbox.session(self.opts.tenant, self.opts.session)
            target = await self.outbox.target_phone(ref, phone)
        except NotOnWhatsApp:
            self.summary.not_on_whatsapp += 1
            return None
        except SendRejected as exc:
            if exc.status >= 500:  # the provider cannot be asked: stop, a rerun resumes
                raise
            self.summary.invalid += 1
            return None
        got = await self.outbox.enqueue(target, request, f"{self.prefix}:{phone}")
        self.summary.queued += got.created
        self.summary.already += not got.created
        return got


async def _queue_rows(
    outbox: Outbox,
    opts: SendOptions,
    rows: Sequence[Mapping[str, str]],
    summary: Summary,
    console: Console,
) -> list[Queued]:
    """Queue every row behind a progress bar."""
    outbox.session(opts.tenant, opts.session)  # a bad tenant/session fails before any row
    phones = [_phone(r.get(opts.phone_column) or "") for r in rows]
    leads = await _leads(outbox, opts.tenant, {p for p in phones if p})
    prefix = opts.idempotency_key or _campaign_id(opts)
    queuer = _Queuer(outbox=outbox, opts=opts, summary=summary, leads=leads, prefix=prefix)
    queued: list[Queued] = []
    seen: set[str] = set()
    with _progress(console) as bar:
        task = bar.add_task("checking and queueing", total=len(rows))
        for row, phone in zip(rows, phones, strict=True):
            if phone is not None and phone in seen:  # same key: one message per phone
                summary.duplicates.append(phone)
                bar.advance(task)
                continue
            seen.add(phone or "")
            got = await queuer.row(row, phone)
            if got is not None:
                queued.append(got)
            bar.advance(task)
    return queued


def _phone(value: str) -> str | None:
    try:
        return parse_to(value)
    except SendRejected:
        return None


def _campaign_id(opts: SendOptions) -> str:
    """A key prefix that is the same for the same message: reruns never send twice."""
    what = "\x00".join(
        str(v) for v in (opts.text, opts.media_kind, opts.media, opts.caption, opts.filename)
    )
    return "campaign-" + hashlib.sha256(what.encode()).hexdigest()[:16]


async def _leads(outbox: Outbox, tenant: str, phones: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Lead fields by phone, for the template."""
    wanted = sorted(phones)
    c = m.Lead.__table__.c  # type: ignore[attr-defined]
    out: dict[str, dict[str, Any]] = {}
    async with outbox.store.read() as conn:
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            q = select(*(c[f] for f in LEAD_FIELDS)).where(
                c.tenant_id == tenant, c.phone.in_(chunk)
            )
            for r in await conn.execute(q):
                out[r.phone] = {f: getattr(r, f) for f in LEAD_FIELDS if getattr(r, f) is not None}
    return out


async def _see_through(
    outbox: Outbox, rows: Sequence[Queued], timeout_s: float, console: Console | None
) -> dict[int, Queued]:
    """Send our rows (claim-guarded) until all are final or the time is up."""
    ids = list(dict.fromkeys(r.id for r in rows))  # distinct rows: each is waited on once
    async with own_sender(outbox, rows):
        if console is None:
            return await wait_final(outbox, ids, timeout_s=timeout_s)
        return await _follow(outbox, ids, timeout_s, console)


async def _follow(
    outbox: Outbox, ids: Sequence[int], timeout_s: float, console: Console
) -> dict[int, Queued]:
    """A progress bar over our rows until they are all SENT or FAILED."""
    deadline = time.monotonic() + timeout_s
    with _progress(console) as bar:
        task = bar.add_task("sending", total=len(ids))
        while True:
            rows = await outbox.statuses(ids)
            done = sum(1 for r in rows.values() if r.status in FINAL)
            bar.update(task, completed=done)
            if done == len(ids) or time.monotonic() >= deadline:
                return rows
            await asyncio.sleep(0.25)


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )


def _timeout(outbox: Outbox, opts: SendOptions, count: int = 1) -> float:
    """`--timeout`, else the configured wait plus the time the rate limit needs for `count`."""
    if opts.timeout_s is not None:
        return opts.timeout_s
    return outbox.cfg.wait_timeout_s + count * 60 / outbox.cfg.rate_per_minute
