"""Media that does not vanish: every attachment fetched, stored and served.

By seam: `job` (a claimed job, files sent inline), `fetch` (one job to its outcome: source,
retries, size and type checks, store), `worker` (claims, concurrency, outcomes), `store`
(the content-addressed store interface and the local directory), `s3` (the S3 bucket),
`backends` (the store the config names),
`sniff` (the mimetype checked against the bytes), `stream` (HTTP responses with `Range`).
"""

from wasync.media.backends import open_store
from wasync.media.job import InlineFiles, MediaJob
from wasync.media.store import LocalStore, MediaStore
from wasync.media.worker import MediaWorker

__all__ = ["InlineFiles", "LocalStore", "MediaJob", "MediaStore", "MediaWorker", "open_store"]
