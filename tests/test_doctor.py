"""`wasync doctor`: each check against real loopback simulators and a real database."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.test_cli import env
from wasync.config import parse
from wasync.doctor import diagnose
from wasync.sim import EvolutionSim, WahaSim, serve
from wasync.store import Store

SECRET = "doctor-tests-jwt-secret-0123456789abcdef"


def settings(db_url: str, waha_url: str, evo_url: str, **webhook: Any) -> Any:
    """Three sessions: a working WAHA one, an Evolution one with a wrong key, and one whose
    provider is not there."""
    return parse(
        {
            "database": {"url": db_url},
            "auth": {"jwt_secret": SECRET},
            "webhook": webhook,
            "tenants": [
                {
                    "id": "acme",
                    "sessions": [
                        {
                            "name": "default",
                            "provider": "waha",
                            "base_url": waha_url,
                            "api_key": "waha-key",
                        },
                        {
                            "name": "vendas",
                            "provider": "evolution",
                            "base_url": evo_url,
                            "api_key": "not-the-key",
                        },
                        {"name": "gone", "provider": "waha", "base_url": "http://127.0.0.1:9"},
                    ],
                }
            ],
        }
    )


async def test_each_check_reports_what_it_found(db_url: str) -> None:
    """Schema at head, the secret set, a working session ok; a rejected key and an absent
    provider fail with one line each; without a registered webhook, a warning."""
    waha, evo = WahaSim(api_key="waha-key"), EvolutionSim(api_key="evo-key")
    waha.add_session("default", engine="NOWEB")
    evo.add_instance("vendas")
    async with Store(db_url) as store:
        await store.upgrade()
    async with serve(waha.app) as waha_url, serve(evo.app) as evo_url:
        checks = await diagnose(settings(db_url, waha_url, evo_url, enabled=True))
    got = {c.subject: (c.level, c.detail) for c in checks}
    assert got["database"][0] == "ok" and "0002" in got["database"][1]
    assert got["auth"] == ("ok", "JWT secret set")
    assert got["acme/default"] == ("ok", f"waha {waha_url}: WORKING, engine NOWEB")
    assert got["acme/default webhook"][0] == "warn"
    assert got["acme/vendas"] == ("fail", f"evolution {evo_url}: API key rejected (401)")
    assert got["acme/gone"][0] == "fail"
    assert all("waha-key" not in c.detail and "not-the-key" not in c.detail for c in checks)


async def test_without_webhooks_what_polling_cannot_see_is_a_warning(db_url: str) -> None:
    """Webhooks off: an Evolution 2.3.7 instance (a delete for everyone leaves no row polling
    reads) and a WAHA GOWS session (no edits, deletes nor reactions listed) are warned of;
    Evolution 2.3.6 and WAHA NOWEB are not; with webhooks on, nothing is said of it."""
    key = "not-the-key"  # the key `settings` gives the Evolution session
    waha, evo = WahaSim(api_key="waha-key"), EvolutionSim(api_key=key, version="2.3.7")
    waha.add_session("default", engine="GOWS")
    evo.add_instance("vendas")
    older_waha, older_evo = WahaSim(api_key="waha-key"), EvolutionSim(api_key=key, version="2.3.6")
    older_waha.add_session("default", engine="NOWEB")
    older_evo.add_instance("vendas")
    async with Store(db_url) as store:
        await store.upgrade()
    for (waha_sim, evo_sim), warned in (((waha, evo), True), ((older_waha, older_evo), False)):
        async with serve(waha_sim.app) as waha_url, serve(evo_sim.app) as evo_url:
            off = settings(db_url, waha_url, evo_url)
            polling = {c.subject: c for c in await diagnose(off) if "polling" in c.subject}
            on = settings(db_url, waha_url, evo_url, enabled=True, public_url="https://crm.test")
            on_checks = [c for c in await diagnose(on) if "polling" in c.subject]
        assert on_checks == []
        if not warned:
            assert polling == {}
            continue
        assert set(polling) == {"acme/default polling", "acme/vendas polling"}
        assert all(c.level == "warn" for c in polling.values())
        assert "GOWS" in polling["acme/default polling"].detail
        assert "2.3.7" in polling["acme/vendas polling"].detail
        assert "delete" in polling["acme/vendas polling"].detail


async def test_an_empty_database_is_a_warning(db_url: str) -> None:
    """A database without the schema yet is a warning naming the command (run applies it too);
    a SQLite file that does not exist is not created by the check."""
    waha, evo = WahaSim(api_key="waha-key"), EvolutionSim(api_key="evo-key")
    async with serve(waha.app) as waha_url, serve(evo.app) as evo_url:
        (config, database, *_rest) = await diagnose(settings(db_url, waha_url, evo_url))
    assert (config.subject, config.level) == ("config", "ok")
    assert database.level == "warn" and "wasync" in database.detail
    assert not sqlite_file_exists(db_url)


def sqlite_file_exists(db_url: str) -> bool:
    """Whether the URL is SQLite and its file exists."""
    return db_url.startswith("sqlite") and Path(db_url.split("///", 1)[1]).exists()


def test_cli_prints_one_line_per_check_and_exits_1_on_a_failure(tmp_path: Path) -> None:
    """`wasync doctor` prints LEVEL subject: detail lines; any FAIL makes the exit code 1."""
    config = tmp_path / "config.toml"
    config.write_text(
        f"""
[database]
url = "sqlite+aiosqlite:///{tmp_path / "wasync.db"}"
[auth]
jwt_secret = "{SECRET}"
[[tenants]]
id = "acme"
[[tenants.sessions]]
name = "default"
provider = "waha"
base_url = "http://127.0.0.1:9"
"""
    )
    done = subprocess.run(
        [sys.executable, "-m", "wasync", "doctor", "--config", str(config)],
        env=env(),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 1, done.stderr
    lines = done.stdout.strip().splitlines()
    assert [line.split()[0] for line in lines] == ["OK", "WARN", "OK", "FAIL"]
    assert lines[3].startswith("FAIL  acme/default: waha http://127.0.0.1:9")
