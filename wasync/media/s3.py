"""The S3 media store (`[media] backend = "s3"`): one bucket shared by every node, through
aiobotocore (botocore's own request signing and retries, on asyncio).

Objects are `<prefix><ab>/<key>`; files above `PART_BYTES` go up as a multipart upload, so
memory stays at one part whatever the size; reads are ranged GETs streamed in chunks.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from wasync.errors import MediaStoreUnavailable
from wasync.media.store import CHUNK, check_key

if TYPE_CHECKING:
    from types_aiobotocore_s3.client import S3Client
    from types_aiobotocore_s3.type_defs import CompletedPartTypeDef

PART_BYTES = 8 * 1024 * 1024  # S3's smallest part is 5 MiB
_MISSING = frozenset({"404", "NoSuchKey", "NotFound"})


class S3Store:
    """A bucket (any S3-compatible server: AWS, MinIO, moto) as the media store."""

    def __init__(
        self,
        *,
        bucket: str,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        scratch: Path,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self.scratch = scratch
        self._options: dict[str, Any] = {
            "region_name": region or "us-east-1",
            "endpoint_url": endpoint_url,
            "aws_access_key_id": access_key_id,
            "aws_secret_access_key": secret_access_key,
            "config": AioConfig(s3={"addressing_style": "path"}, retries={"mode": "standard"}),
        }
        self._stack = AsyncExitStack()
        self._client: S3Client | None = None

    async def __aenter__(self) -> Self:
        await asyncio.to_thread(self.scratch.mkdir, parents=True, exist_ok=True)
        client = get_session().create_client("s3", **self._options)
        self._client = await self._stack.enter_async_context(client)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._client = None
        await self._stack.aclose()

    @property
    def client(self) -> S3Client:
        """The open client (inside `async with`)."""
        if self._client is None:
            raise RuntimeError("S3Store is not open: use `async with`")
        return self._client

    def object_key(self, key: str) -> str:
        """The object name of a media key."""
        check_key(key)
        return f"{self.prefix}{key[:2]}/{key}"

    async def has(self, key: str) -> bool:
        """HEAD the object."""
        try:
            await self.client.head_object(Bucket=self.bucket, Key=self.object_key(key))
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return False
            raise MediaStoreUnavailable(f"S3 HEAD: {_code(exc)}") from None
        except BotoCoreError as exc:
            raise MediaStoreUnavailable(f"S3 HEAD: {type(exc).__name__}") from None
        return True

    async def put(self, key: str, path: Path, *, content_type: str) -> bool:
        """Upload the file (one PUT, or parts above `PART_BYTES`), then delete it locally."""
        try:
            if await self.has(key):
                return False
            size = (await asyncio.to_thread(path.stat)).st_size
            if size <= PART_BYTES:
                body = await asyncio.to_thread(path.read_bytes)
                name = self.object_key(key)
                await self.client.put_object(
                    Bucket=self.bucket, Key=name, Body=body, ContentType=content_type
                )
            else:
                await self._multipart(self.object_key(key), path, content_type)
            return True
        except (ClientError, BotoCoreError) as exc:
            raise MediaStoreUnavailable(f"S3 PUT: {type(exc).__name__}") from None
        finally:
            await asyncio.to_thread(path.unlink, missing_ok=True)

    async def _multipart(self, name: str, path: Path, content_type: str) -> None:
        client, bucket = self.client, self.bucket
        upload = await client.create_multipart_upload(
            Bucket=bucket, Key=name, ContentType=content_type
        )
        upload_id = upload["UploadId"]
        parts: list[CompletedPartTypeDef] = []
        try:
            with path.open("rb") as handle:
                while part := await asyncio.to_thread(handle.read, PART_BYTES):
                    number = len(parts) + 1
                    done = await client.upload_part(
                        Bucket=bucket, Key=name, UploadId=upload_id, PartNumber=number, Body=part
                    )
                    parts.append({"ETag": done["ETag"], "PartNumber": number})
            await client.complete_multipart_upload(
                Bucket=bucket, Key=name, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        except BaseException:
            await client.abort_multipart_upload(Bucket=bucket, Key=name, UploadId=upload_id)
            raise

    async def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """A ranged GET, streamed in chunks."""
        span = f"bytes={start}-{'' if end is None else end}"
        try:
            resp = await self.client.get_object(
                Bucket=self.bucket, Key=self.object_key(key), Range=span
            )
        except (ClientError, BotoCoreError) as exc:
            raise MediaStoreUnavailable(f"S3 GET: {type(exc).__name__}") from None
        async with resp["Body"] as body:
            while chunk := await body.read(CHUNK):
                yield chunk


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
