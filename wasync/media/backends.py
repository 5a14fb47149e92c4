"""The media store `[media] backend` names: `local` (a directory) or `s3` (a bucket)."""

from __future__ import annotations

from wasync.config import MediaConfig
from wasync.media.store import LocalStore, MediaStore


def open_store(cfg: MediaConfig, database_url: str) -> MediaStore:
    """The store `[media] backend` names (not yet entered)."""
    root = cfg.resolved_dir(database_url)
    if cfg.backend == "local":
        return LocalStore(root)
    from wasync.media.s3 import S3Store  # aiobotocore is only imported when it is used

    key, secret = cfg.s3_credentials()
    assert cfg.s3_bucket is not None  # checked by MediaConfig
    return S3Store(
        bucket=cfg.s3_bucket,
        prefix=cfg.s3_prefix,
        endpoint_url=cfg.s3_endpoint_url,
        region=cfg.s3_region,
        access_key_id=key,
        secret_access_key=secret,
        scratch=root / "incoming",
    )
