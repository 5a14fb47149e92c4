"""`wasync sim`: both provider simulators with live traffic, and a config to run the daemon
against them: `wasync sim --write-config wasync.toml` here, `wasync run -c wasync.toml` in
another terminal (polling mode); add `--webhooks` for webhook mode with reconciliation."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated
from urllib.parse import urlsplit

import typer

from wasync.cli.base import fail, run_async

if TYPE_CHECKING:
    from wasync.sim.live import Traffic
    from wasync.sim.playground import World


def sim(
    write_config: Annotated[
        Path | None,
        typer.Option(
            "--write-config",
            help="Write a ready config for `wasync run` here (mode 0600, secrets included).",
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite a file `wasync sim` did not write.")
    ] = False,
    webhooks: Annotated[
        bool,
        typer.Option(
            "--webhooks",
            help="Register webhooks at --public-url and fire each change there, signed.",
        ),
    ] = False,
    public_url: Annotated[
        str, typer.Option(help="Where `wasync run` listens (its port goes in the config).")
    ] = "http://127.0.0.1:8080",
    waha_port: Annotated[int, typer.Option(min=1, max=65535)] = 3000,
    evolution_port: Annotated[int, typer.Option(min=1, max=65535)] = 8081,
    engine: Annotated[str, typer.Option(help="WAHA engine: WEBJS, NOWEB or GOWS.")] = "WEBJS",
    rate: Annotated[float, typer.Option(min=0, help="Changes per minute (0: none).")] = 20,
    media_share: Annotated[float, typer.Option(min=0, max=1, help="Share of media.")] = 0.2,
    edit_share: Annotated[float, typer.Option(min=0, max=1, help="Share of edits.")] = 0.1,
    ack_share: Annotated[float, typer.Option(min=0, max=1, help="Share of acks.")] = 0.5,
    new_numbers: Annotated[
        float, typer.Option(min=0, max=1, help="Share of messages from a new number.")
    ] = 0.2,
    drop_webhooks: Annotated[
        float,
        typer.Option(min=0, max=1, help="Share of webhooks lost on purpose (polling repairs)."),
    ] = 0.1,
    seed: Annotated[int, typer.Option(help="Seed of the simulated world.")] = 1,
    duration: Annotated[
        float | None, typer.Option(min=0, help="Stop after this many seconds.")
    ] = None,
) -> None:
    """Serve both simulators with live traffic (customers writing, acks, edits, media),
    optionally firing signed webhooks, until Ctrl-C."""
    from wasync.sim.live import Traffic
    from wasync.sim.playground import World

    if engine.upper() not in ("WEBJS", "NOWEB", "GOWS"):
        raise fail(f"--engine must be WEBJS, NOWEB or GOWS, not {engine!r}", 2)
    port = _port_of(public_url)
    if write_config is not None:
        _check_writable(write_config, force)
    world = World(waha_port=waha_port, evolution_port=evolution_port, engine=engine.upper(),
                  seed=seed)  # fmt: skip
    traffic = Traffic(
        per_minute=rate, media_share=media_share, edit_share=edit_share, ack_share=ack_share,
        new_number_share=new_numbers, webhooks=webhooks, drop_share=drop_webhooks,
    )  # fmt: skip
    run_async(_serve(world, traffic, write_config, public_url, port, duration))
    typer.echo("sim stopped")


async def _serve(
    world: World,
    traffic: Traffic,
    path: Path | None,
    public_url: str,
    port: int,
    duration: float | None,
) -> None:
    from wasync.sim.playground import Playground

    stop = _stop_event(duration)
    async with Playground(world, traffic, typer.echo) as ground:
        typer.echo(f"wasync sim: {ground.summary()}")
        if path is not None:
            text = ground.config_text(
                db_path=db_path(path), public_url=public_url, port=port, webhooks=traffic.webhooks
            )
            _write_private(path, text)
            typer.echo(f"config written to {path} (mode 0600); in another terminal:")
            typer.echo(f"  wasync run --config {path}")
            if traffic.webhooks:
                await _register(path, public_url, traffic.drop_share)
        else:
            typer.echo("no config written: pass --write-config wasync.toml for `wasync run`")
        typer.echo(f"traffic: {traffic.per_minute:g} changes a minute - Ctrl-C to stop")
        await stop.wait()


async def _register(path: Path, public_url: str, drop_share: float) -> None:
    """Register the webhooks with the simulators as `wasync webhooks register` does."""
    from wasync import config
    from wasync.webhooks import run_all

    states = await run_all(config.load(path), public_url=public_url)
    for state in states:
        if isinstance(state, str):
            raise fail(f"webhook registration failed: {state}")
        signed = "signed" if state.signed else "UNSIGNED"
        typer.echo(f"webhook {state.session}: {state.url} [{signed}]")
    typer.echo(f"{drop_share:.0%} of the webhooks are lost on purpose: polling repairs them")


def db_path(config_path: Path) -> Path:
    """The SQLite file of the written config: beside it, absolute (any working directory)."""
    return config_path.absolute().parent / "wasync-sim.db"


def _stop_event(duration: float | None) -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    if duration is not None:
        loop.call_later(duration, stop.set)
    return stop


def _port_of(public_url: str) -> int:
    parts = urlsplit(public_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise fail(f"--public-url must be an http(s) URL, not {public_url!r}", 2)
    try:
        return parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise fail(f"--public-url has a bad port: {public_url!r}", 2) from None


def _check_writable(path: Path, force: bool) -> None:
    """Refuse to overwrite a file the user wrote (exit 2), unless `--force`."""
    from wasync.sim.playground import MARKER

    if not path.exists() or force:
        return
    try:
        first = path.read_text(encoding="utf-8").split("\n", 1)[0]
    except (OSError, UnicodeDecodeError):
        first = ""
    if not first.startswith(MARKER):
        raise fail(f"{path} exists and was not written by `wasync sim`: pass --force", 2)


def _write_private(path: Path, text: str) -> None:
    """Write `text` readable by its owner only (it holds API keys and secrets)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        os.fchmod(fh.fileno(), 0o600)
        fh.write(text)
