"""`sqlite:///path`: durable history for one process, the default (see backend.py)."""

from app.backends.sqlite.backend import SQLiteBackend

__all__ = ["SQLiteBackend"]
