"""`[media]`: the media worker and the media store."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from wasync.config.sections import Section


class MediaConfig(Section):
    """`[media]`: the media worker (fetch, retry, deadlines) and the media store.

    `dir` (default: `media` under the state directory, see `resolved_dir`) holds the files of
    the local backend and downloads in progress for both. The S3 backend's credentials are
    read from the environment variables named here (else botocore's own chain).
    """

    enabled: bool = True
    backend: Literal["local", "s3"] = "local"
    dir: str = ""
    max_bytes: int = Field(default=100 * 1024 * 1024, ge=1)
    concurrency: int = Field(default=8, ge=1)  # downloads in flight per node
    per_session: int = Field(default=2, ge=1)  # ... and per provider session
    timeout_s: float = Field(default=60, gt=0)  # one HTTP request (between bytes)
    url_lifetime_s: float = Field(default=150, ge=0)  # WAHA deletes files after 180 s
    tries: int = Field(default=6, ge=1)  # requests per attempt (transient errors)
    backoff_s: float = Field(default=0.5, ge=0)
    max_backoff_s: float = Field(default=30, ge=0)
    max_attempts: int = Field(default=5, ge=1)  # attempts before FAILED (or EXPIRED)
    retry_delay_s: float = Field(default=60, ge=0)  # before the next attempt, doubling
    lease_s: float = Field(default=600, gt=0)  # a claim left by a crash is taken over then
    poll_interval_s: float = Field(default=1, gt=0)  # look for media other nodes queued
    convert_voice: bool = False  # Evolution `convertToMp4` for voice notes
    s3_bucket: str | None = None
    s3_prefix: str = ""
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    s3_access_key_id_env: str = "AWS_ACCESS_KEY_ID"
    s3_secret_access_key_env: str = "AWS_SECRET_ACCESS_KEY"

    @model_validator(mode="after")
    def _complete(self) -> MediaConfig:
        if self.backend == "s3" and not self.s3_bucket:
            raise ValueError("backend s3 needs s3_bucket")
        if self.lease_s <= self.timeout_s:
            raise ValueError("lease_s must be longer than timeout_s (a download keeps it)")
        return self

    def resolved_dir(self, database_url: str) -> Path:
        """`dir`, else `media` under the state directory: systemd's `$STATE_DIRECTORY`, else
        the SQLite database's directory, else `./state`."""
        if self.dir:
            return Path(self.dir).expanduser()
        state = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
        if state:
            return Path(state) / "media"
        prefix = "sqlite+aiosqlite:///"
        path = database_url[len(prefix) :] if database_url.startswith(prefix) else ""
        if path and path != ":memory:":
            return Path(path).expanduser().parent / "media"
        return Path("state") / "media"

    def s3_credentials(self) -> tuple[str | None, str | None]:
        """(access key id, secret) from the environment; (None, None) for botocore's chain."""
        key = os.environ.get(self.s3_access_key_id_env) or None
        secret = os.environ.get(self.s3_secret_access_key_env) or None
        return (key, secret) if key and secret else (None, None)
