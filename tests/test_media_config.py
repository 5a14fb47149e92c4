"""`[media]`: validated once at start, the directory resolved under the state directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from wasync.config import MediaConfig, parse
from wasync.errors import ConfigError


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"backend": "s3"}, "media: backend s3 needs s3_bucket"),
        ({"backend": "ftp"}, "media.backend: Input should be 'local' or 's3'"),
        ({"max_bytes": 0}, "media.max_bytes: Input should be greater than or equal to 1"),
        ({"lease_s": 10, "timeout_s": 60}, "media: lease_s must be longer than timeout_s"),
        ({"bucket": "x"}, "media.bucket: unknown key"),
    ],
)
def test_a_bad_media_section_is_one_line_naming_the_key(section: dict[str, object], message: str):
    """Each mistake is one ConfigError that names the key."""
    with pytest.raises(ConfigError) as err:
        parse({"media": section})
    assert str(err.value).startswith(message)


def test_the_media_dir_defaults_under_the_state_directory(monkeypatch: pytest.MonkeyPatch):
    """`$STATE_DIRECTORY` (systemd), else beside the SQLite file, else ./state; `dir` wins."""
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    cfg = MediaConfig()
    assert cfg.resolved_dir("sqlite+aiosqlite:////var/lib/wasync/wasync.db") == Path(
        "/var/lib/wasync/media"
    )
    assert cfg.resolved_dir("postgresql+asyncpg://db/x") == Path("state/media")
    monkeypatch.setenv("STATE_DIRECTORY", "/srv/wasync")
    assert cfg.resolved_dir("postgresql+asyncpg://db/x") == Path("/srv/wasync/media")
    assert MediaConfig(dir="/data/m").resolved_dir("x") == Path("/data/m")


def test_s3_credentials_come_from_the_named_environment_variables(
    monkeypatch: pytest.MonkeyPatch,
):
    """Both set: used; either missing: botocore's own chain (None, None)."""
    cfg = MediaConfig(s3_access_key_id_env="K", s3_secret_access_key_env="S")
    monkeypatch.setenv("K", "key")
    monkeypatch.delenv("S", raising=False)
    assert cfg.s3_credentials() == (None, None)
    monkeypatch.setenv("S", "secret")
    assert cfg.s3_credentials() == ("key", "secret")
