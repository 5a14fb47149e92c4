"""`config.load()`: TOML plus `WASYNC_*` overrides, secrets from the environment, errors that
name the key; and `wasync db upgrade` exiting 2 on a bad config, 0 on a good one."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from wasync import config
from wasync.errors import ConfigError

# The skeleton of config.example.toml: a public contract.
SKELETON = """\
[database]
url = "sqlite+aiosqlite:///wasync.db"
[poll]
interval_s = 5
[http]
host = "127.0.0.1"
port = 8080
[webhook]
enabled = false
[auth]
jwt_secret_env = "WASYNC_JWT_SECRET"
[[tenants]]
id = "acme"
admins = ["user-1"]
[[tenants.sessions]]
name = "default"
provider = "waha"
base_url = "http://127.0.0.1:3000"
api_key_env = "WAHA_API_KEY"
webhook_secret_env = "WAHA_HMAC_KEY"
"""

SECOND_SESSION = """
[[tenants.sessions]]
name = "default"
provider = "evolution"
base_url = "http://127.0.0.1:8081"
"""

API_KEY = "waha-key-d41d8cd98f00"
HMAC_KEY = "hmac-key-0cc175b9c0f1"
JWT_SECRET = "jwt-secret-92eb5ffee6ae"


def write(tmp_path: Path, text: str = SKELETON) -> Path:
    """Write a config file into `tmp_path` and return its path."""
    path = tmp_path / "wasync.toml"
    path.write_text(text, encoding="utf-8")
    return path


def load_error(path: Path, env: dict[str, str] | None = None) -> ConfigError:
    """The ConfigError that loading `path` raises."""
    with pytest.raises(ConfigError) as info:
        config.load(path, env={} if env is None else env)
    return info.value


def clean_env() -> dict[str, str]:
    """The process environment without any WASYNC_* variable (for the CLI subprocess)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("WASYNC_")}


# --- loading ---------------------------------------------------------------------------------


def test_skeleton_loads_with_its_values(tmp_path: Path) -> None:
    """Every value of the skeleton file lands in the settings, typed."""
    settings = config.load(write(tmp_path), env={})
    assert settings.database.url == "sqlite+aiosqlite:///wasync.db"
    assert settings.poll.interval_s == 5.0
    assert (settings.http.host, settings.http.port) == ("127.0.0.1", 8080)
    assert settings.webhook.enabled is False
    assert settings.auth.jwt_secret_env == "WASYNC_JWT_SECRET"
    [tenant] = settings.tenants
    assert (tenant.id, tenant.admins) == ("acme", ["user-1"])
    [session] = tenant.sessions
    assert (session.name, session.provider) == ("default", "waha")
    assert (session.base_url, session.api_key_env) == ("http://127.0.0.1:3000", "WAHA_API_KEY")


def test_sections_left_out_take_their_defaults(tmp_path: Path) -> None:
    """A file with only a tenant gets the CRM's default lead and notification texts."""
    settings = config.load(write(tmp_path, '[[tenants]]\nid = "acme"\n'), env={})
    assert settings.crm.lead.first_name == "Lead"
    assert settings.crm.notification.title == "Nova mensagem de {phone}"
    assert settings.database.url == "sqlite+aiosqlite:///wasync.db"


def test_config_path_from_wasync_config(tmp_path: Path) -> None:
    """Without a path argument, `WASYNC_CONFIG` names the file."""
    path = write(tmp_path)
    settings = config.load(None, env={"WASYNC_CONFIG": str(path)})
    assert settings.tenants[0].id == "acme"


# --- environment overrides -------------------------------------------------------------------


def test_env_overrides_poll_interval_as_a_float(tmp_path: Path) -> None:
    """`WASYNC_POLL_INTERVAL_S=10` replaces the file's `[poll] interval_s` with 10.0."""
    settings = config.load(write(tmp_path), env={"WASYNC_POLL_INTERVAL_S": "10"})
    assert settings.poll.interval_s == 10.0
    assert isinstance(settings.poll.interval_s, float)


def test_env_overrides_database_url(tmp_path: Path) -> None:
    """`WASYNC_DATABASE_URL` replaces the file's database url."""
    url = "postgresql+asyncpg://crm@db.internal:5432/crm"
    settings = config.load(write(tmp_path), env={"WASYNC_DATABASE_URL": url})
    assert settings.database.url == url


def test_env_overrides_nested_sections(tmp_path: Path) -> None:
    """`WASYNC_CRM_LEAD_FIRST_NAME` reaches `[crm.lead] first_name`, absent from the file."""
    env = {"WASYNC_CRM_LEAD_FIRST_NAME": "Contato", "WASYNC_CRM_LEAD_SCORE": "70"}
    settings = config.load(write(tmp_path), env=env)
    assert settings.crm.lead.first_name == "Contato"
    assert settings.crm.lead.score == 70
    assert settings.crm.lead.source == "WHATSAPP_CAMPAIGN"


def test_unrelated_env_variables_are_ignored(tmp_path: Path) -> None:
    """Variables that name no setting change nothing."""
    env = {"WASYNC_POLL_NOPE": "1", "POLL_INTERVAL_S": "99", "WASYNC_TENANTS": "x"}
    assert config.load(write(tmp_path), env=env) == config.load(write(tmp_path), env={})


def test_bad_env_value_names_the_key(tmp_path: Path) -> None:
    """An override that is not a valid value is reported under the setting's key."""
    error = load_error(write(tmp_path), env={"WASYNC_HTTP_PORT": "eighty"})
    assert error.key == "http.port"
    assert str(error).startswith("http.port: ")


# --- secrets ---------------------------------------------------------------------------------


def test_secrets_come_from_the_named_env_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`api_key_env`, `webhook_secret_env` and `jwt_secret_env` are read from the environment."""
    monkeypatch.setenv("WAHA_API_KEY", API_KEY)
    monkeypatch.setenv("WAHA_HMAC_KEY", HMAC_KEY)
    monkeypatch.setenv("WASYNC_JWT_SECRET", JWT_SECRET)
    settings = config.load(write(tmp_path))
    session = settings.tenants[0].sessions[0]
    assert session.resolved_api_key() == API_KEY
    assert session.resolved_webhook_secret() == HMAC_KEY
    assert settings.auth.secret() == JWT_SECRET
    for text in (repr(settings), str(settings), repr(session), str(settings.model_dump())):
        for secret in (API_KEY, HMAC_KEY, JWT_SECRET):
            assert secret not in text


def test_secrets_written_in_the_file_are_masked(tmp_path: Path) -> None:
    """A key written in the file or given by `WASYNC_AUTH_JWT_SECRET` never shows in repr."""
    text = SKELETON.replace('api_key_env = "WAHA_API_KEY"', f'api_key = "{API_KEY}"')
    settings = config.load(write(tmp_path, text), env={"WASYNC_AUTH_JWT_SECRET": JWT_SECRET})
    assert settings.tenants[0].sessions[0].resolved_api_key() == API_KEY
    assert settings.auth.secret() == JWT_SECRET
    for shown in (repr(settings), str(settings)):
        assert API_KEY not in shown
        assert JWT_SECRET not in shown


def test_missing_secret_names_the_session_and_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unset `api_key_env` raises ConfigError naming the session and the variable."""
    monkeypatch.delenv("WAHA_API_KEY", raising=False)
    session = config.load(write(tmp_path), env={}).tenants[0].sessions[0]
    with pytest.raises(ConfigError, match="WAHA_API_KEY") as info:
        session.resolved_api_key()
    assert info.value.key == "session 'default' api_key"


def test_session_without_key_settings_needs_no_key(tmp_path: Path) -> None:
    """A session with neither `api_key` nor `api_key_env` has no key (a local WAHA)."""
    text = SKELETON.replace('api_key_env = "WAHA_API_KEY"\n', "")
    session = config.load(write(tmp_path, text), env={}).tenants[0].sessions[0]
    assert session.resolved_api_key() is None


def test_secrets_resolve_from_the_env_given_to_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The mapping passed as `env=` is the environment for secrets too."""
    monkeypatch.delenv("WAHA_API_KEY", raising=False)
    settings = config.load(write(tmp_path), env={"WAHA_API_KEY": API_KEY})
    assert settings.tenants[0].sessions[0].resolved_api_key() == API_KEY


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("interval_s = 5", "intervl_s = 5", "poll.intervl_s: unknown key"),
        ("port = 8080", 'port = "eighty"', "http.port: Input should be a valid integer"),
        ("enabled = false", 'enabled = "maybe"', "webhook.enabled: Input should be a valid"),
        ("interval_s = 5", "interval_s = 0", "poll.interval_s: Input should be greater than 0"),
        ('provider = "waha"', 'provider = "wppconnect"', "tenants[0].sessions[0].provider: "),
        ('provider = "waha"', "", "tenants[0].sessions[0].provider: required key is missing"),
        ('"http://127.0.0.1:3000"', '"127.0.0.1:3000"', "tenants[0].sessions[0].base_url: "),
        ('admins = ["user-1"]', 'admins = "user-1"', "tenants[0].admins: "),
        ("[webhook]", "[webhooks]", "webhooks: unknown key"),
    ],
)
def test_invalid_values_name_the_key(tmp_path: Path, old: str, new: str, message: str) -> None:
    """Unknown keys, wrong types, bad providers and missing keys raise ConfigError with the key."""
    assert old in SKELETON
    error = load_error(write(tmp_path, SKELETON.replace(old, new, 1)))
    assert str(error).startswith(message)
    assert "\n" not in str(error)


def test_bad_provider_lists_the_choices(tmp_path: Path) -> None:
    """An unknown provider says which providers exist."""
    error = load_error(write(tmp_path, SKELETON.replace('"waha"', '"wppconnect"')))
    assert error.key == "tenants[0].sessions[0].provider"
    assert "'waha'" in error.problem
    assert "'evolution'" in error.problem


def test_duplicate_session_name_names_the_tenant(tmp_path: Path) -> None:
    """Two sessions of one tenant with the same name are refused, naming the tenant's key."""
    error = load_error(write(tmp_path, SKELETON + SECOND_SESSION))
    assert error.key == "tenants[0]"
    assert str(error) == "tenants[0]: session name 'default' appears twice"


def test_same_session_name_in_two_tenants_is_fine(tmp_path: Path) -> None:
    """Session names are unique per tenant only (several tenants may use `default`)."""
    other = '\n[[tenants]]\nid = "globex"\n' + SECOND_SESSION
    settings = config.load(write(tmp_path, SKELETON + other), env={})
    assert [t.sessions[0].name for t in settings.tenants] == ["default", "default"]


def test_duplicate_tenant_id_names_the_tenants_key(tmp_path: Path) -> None:
    """Two tenants with one id are refused with an error under the `tenants` key."""
    error = load_error(write(tmp_path, SKELETON + '\n[[tenants]]\nid = "acme"\n'))
    assert str(error).startswith("tenants")
    assert "'acme' appears twice" in str(error)


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    """A config file that does not exist is a ConfigError naming the path."""
    path = tmp_path / "absent.toml"
    error = load_error(path)
    assert error.key == str(path)
    assert str(error) == f"{path}: config file not found"


def test_invalid_toml_names_the_path_and_the_line(tmp_path: Path) -> None:
    """A file that is not TOML is a ConfigError naming the path and where parsing stopped."""
    path = write(tmp_path, SKELETON.replace("port = 8080", "port = = 8080"))
    error = load_error(path)
    assert error.key == str(path)
    assert "not valid TOML" in error.problem
    assert "line 7" in error.problem
    assert "\n" not in str(error)


# --- the CLI ---------------------------------------------------------------------------------


def db_upgrade(path: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run `python -m wasync db upgrade --config <path>` in `cwd`."""
    return subprocess.run(
        [sys.executable, "-m", "wasync", "db", "upgrade", "--config", str(path)],
        cwd=cwd,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ("interval_s = 5", "intervl_s = 5", "poll.intervl_s"),
        ('provider = "waha"', 'provider = "wppconnect"', "tenants[0].sessions[0].provider"),
        ("port = 8080", "port = = 8080", "wasync.toml"),
    ],
)
def test_cli_bad_config_exits_2_with_one_line(tmp_path: Path, old: str, new: str, key: str) -> None:
    """`wasync db upgrade` with a bad config exits 2 and prints one stderr line naming the key."""
    result = db_upgrade(write(tmp_path, SKELETON.replace(old, new, 1)), tmp_path)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("wasync: config error: ")
    assert key in lines[0]
    assert not (tmp_path / "wasync.db").exists()


def test_cli_missing_config_exits_2(tmp_path: Path) -> None:
    """A config path that does not exist exits 2 with one line naming it."""
    result = db_upgrade(tmp_path / "absent.toml", tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"wasync: config error: {tmp_path / 'absent.toml'}: config file not found"
    ]


def test_cli_db_upgrade_creates_the_tables(tmp_path: Path) -> None:
    """With the skeleton config, `wasync db upgrade` exits 0 and creates the schema."""
    result = db_upgrade(write(tmp_path), tmp_path)
    assert result.returncode == 0, result.stderr
    assert "up to date" in result.stdout
    db = sqlite3.connect(tmp_path / "wasync.db")
    try:
        rows = db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
        version = db.execute("SELECT version_num FROM alembic_version").fetchall()
    finally:
        db.close()
    tables = {name for (name,) in rows}
    expected = {"tenants", "sessions", "chats", "messages", "leads", "notifications", "events"}
    assert expected | {"identities", "cursors", "outbox", "dead_letters"} <= tables
    assert len(version) == 1


def test_cli_db_upgrade_is_idempotent(tmp_path: Path) -> None:
    """Running `wasync db upgrade` twice succeeds both times."""
    path = write(tmp_path)
    assert db_upgrade(path, tmp_path).returncode == 0
    second = db_upgrade(path, tmp_path)
    assert second.returncode == 0, second.stderr


def test_the_config_search_path_and_its_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --config or $WASYNC_CONFIG: ./wasync.toml, then ~/.config/wasync/config.toml
    (then /etc/wasync/config.toml); with none, the error names every place looked at."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    if Path("/etc/wasync/config.toml").exists():
        pytest.skip("this machine has /etc/wasync/config.toml")
    with pytest.raises(ConfigError) as info:
        config.load(None, env={})
    err = info.value
    for place in ("--config", "$WASYNC_CONFIG", *config.SEARCH_PATH):
        assert place in str(err)
    user = tmp_path / "home" / ".config" / "wasync" / "config.toml"
    user.parent.mkdir(parents=True)
    user.write_text(SKELETON.replace('id = "acme"', 'id = "from-home"'))
    assert config.load(None, env={}).tenants[0].id == "from-home"
    write(tmp_path).rename(tmp_path / "wasync.toml")
    assert config.load(None, env={}).tenants[0].id == "acme"  # ./wasync.toml comes first
    other = tmp_path / "other.toml"
    other.write_text(SKELETON.replace('id = "acme"', 'id = "from-env"'))
    assert config.load(None, env={"WASYNC_CONFIG": str(other)}).tenants[0].id == "from-env"
