"""Storage: the SQLModel tables and the `Store` that owns the database engines."""

from wasync.store.db import Store, is_conflict, is_unavailable

__all__ = ["Store", "is_conflict", "is_unavailable"]
