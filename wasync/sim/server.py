"""The simulators' HTTP plumbing under its old name; it lives in `wasync.sim.base`."""

from wasync.sim.base import (
    Delivery,
    DeliveryAttempt,
    Json,
    SentRequest,
    SimError,
    build_app,
    compact_json,
    post_with_retries,
    read_json,
    serve,
)

__all__ = [
    "Delivery",
    "DeliveryAttempt",
    "Json",
    "SentRequest",
    "SimError",
    "build_app",
    "compact_json",
    "post_with_retries",
    "read_json",
    "serve",
]
