"""README.md and config.example.toml checked against the code where that is cheap: every config
key documented (the pydantic models), the example's keys real and its commented values the
defaults, every route and metric listed, every command's `--help` clean and in the CLI table.
"""

from __future__ import annotations

import re
import tomllib
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer.main
from pydantic import BaseModel
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from typer.testing import CliRunner

from tests.conftest import settings_for
from wasync import config
from wasync.api.app import AppContext, create_app
from wasync.cli import app as cli_app
from wasync.hub import Hub
from wasync.metrics import Metrics
from wasync.outbox import Outbox
from wasync.pipeline import Pipeline
from wasync.registry import sync
from wasync.store import Store

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
EXAMPLE = ROOT / "config.example.toml"
# Commented example values that are suggestions rather than the defaults.
SUGGESTED = {
    "events.retain_days",
    "webhook.public_url",
    "crm.quick_replies",
    "media.s3_bucket",
    "media.s3_endpoint_url",
    "media.s3_region",
}


def keys(model: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Every leaf key of a settings model as `section.key` (lists as `name[]`) and its
    field info."""
    for name, field in model.model_fields.items():
        ann = field.annotation
        args = typing.get_args(ann)
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            yield from keys(ann, f"{prefix}{name}.")
        elif typing.get_origin(ann) is list and args and _is_model(args[0]):
            yield from keys(args[0], f"{prefix}{name}[].")
        else:
            yield f"{prefix}{name}", field


def _is_model(value: Any) -> bool:
    return isinstance(value, type) and issubclass(value, BaseModel)


def documented(key: str) -> bool:
    """The key is in the README in backticks, itself or by its section's `section.*`."""
    section = key.rsplit(".", 1)[0]
    return f"`{key}`" in README or f"`{section}.*`" in README


def test_every_config_key_is_in_the_readme():
    """Each setting of `wasync.config.Settings` has its row in the configuration table."""
    missing = [key for key, _ in keys(config.Settings) if not documented(key)]
    assert not missing


def example_entries() -> Iterator[tuple[str, str, bool]]:
    """(dotted key, TOML value text, commented) of each `key = value` line of the example."""
    section = ""
    for raw in EXAMPLE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        commented = line.startswith("#")
        body = line.lstrip("#").strip()
        if header := re.fullmatch(r"\[\[?([a-z_.]+)\]\]?(\s+#.*)?", body):
            section = header[1]
            continue
        if entry := re.fullmatch(r"([a-z_]+)\s*=\s*(.+?)(\s+#.*)?", body):
            yield (f"{section}.{entry[1]}" if section else entry[1]), entry[2], commented


def test_config_example_keys_exist_and_comments_show_the_defaults():
    """The example loads; every key in it (commented or not) is a real one; a commented
    `key = value` outside the tenants shows the code's default."""
    config.load(EXAMPLE, env={"WAHA_API_KEY": "k", "WAHA_HMAC_KEY": "h"})
    fields = {k.replace("[]", ""): f for k, f in keys(config.Settings)}
    for key, value, commented in example_entries():
        assert key in fields, f"config.example.toml names {key}, which is not a setting"
        if not commented or key.startswith("tenants") or key in SUGGESTED:
            continue
        default = fields[key].get_default(call_default_factory=True)
        parsed = tomllib.loads(f"v = {value}")["v"]
        assert parsed == default, f"config.example.toml: {key} = {value}, the default is {default}"


async def test_every_route_is_in_the_readme(tmp_path: Path):
    """Each route of the daemon's app (webhooks on, WebSocket and sends served) is listed."""
    settings = settings_for(
        f"sqlite+aiosqlite:///{tmp_path / 'docs.db'}", webhook={"enabled": True}
    )
    async with Store(settings.database.url) as store:
        await store.upgrade()
        registry = await sync(store, settings)
        async with Pipeline(store) as pipeline, Hub(store) as hub, httpx.AsyncClient() as http:
            outbox = Outbox(settings, store, registry, pipeline, http)
            ctx = AppContext(
                settings=settings, store=store, registry=registry, pipeline=pipeline, hub=hub,
                outbox=outbox,
            )  # fmt: skip
            routes = create_app(ctx).routes
    listed = {_shape(p) for p in re.findall(r"`(?:[A-Z]+ )?(/[^`\s]*)`", README)}
    listed |= {_shape(p) for p in re.findall(r"(?<=[`, ])(/api/[^`\s,]*)", README)}
    paths = [_path(r) for r in routes]
    assert "/api/webhooks/whatsapp" in paths and "/ws" in paths and "/api/messages" in paths
    assert [p for p in paths if _shape(p) not in listed] == []


def _path(route: BaseRoute) -> str:
    assert isinstance(route, Route | WebSocketRoute | Mount)
    return route.path


def _shape(path: str) -> str:
    """`/api/chats/{chat_id:int}` and `/api/chats/{id}` are the same route."""
    return re.sub(r"\{[^}]*\}", "{}", path.split("?")[0])


def test_every_metric_is_in_the_readme():
    """Each metric family the daemon exports is listed in the HTTP table."""
    families = [m.name for m in Metrics().registry.collect()]
    assert families
    assert [name for name in families if name not in README] == []


def commands() -> list[list[str]]:
    """Every command path of the CLI (`["run"]`, `["db", "upgrade"]`, ...)."""
    group = typer.main.get_command(cli_app)
    out: list[list[str]] = []
    for name, cmd in group.commands.items():  # type: ignore[attr-defined]
        subs = getattr(cmd, "commands", None)
        out += [[name, sub] for sub in subs] if subs else [[name]]
    return out


@pytest.mark.parametrize("command", commands(), ids=" ".join)
def test_every_command_has_clean_help_and_a_readme_row(command: list[str]):
    """`--help` runs, keeps bracketed names (`[auth]`), shows no `<bool>` metavar on a flag,
    and the README's CLI table has the command."""
    result = CliRunner().invoke(cli_app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "<bool>" not in result.output
    assert "Usage: wasync " + " ".join(command) in result.output
    assert f"`wasync {' '.join(command)}" in README


def test_help_keeps_bracketed_names():
    """Help texts naming config sections keep their brackets (rich markup swallowed them)."""
    token = CliRunner().invoke(cli_app, ["token", "--help"]).output
    register = CliRunner().invoke(cli_app, ["webhooks", "register", "--help"]).output
    assert "signed with the [auth] secret" in token
    assert "[webhook] public_url" in " ".join(register.split())


def test_version():
    """`wasync --version` prints the package version."""
    from wasync import __version__

    result = CliRunner().invoke(cli_app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"wasync {__version__}"
