"""Faults injected into a Redis backend, each behind a name that says what it plays."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

from app.backends.redis import RedisBackend


def stop_heartbeats(backend: RedisBackend) -> None:
    """As if the process had hung: it sends no more heartbeats, and says no goodbye."""
    heart = backend._heart
    assert heart is not None, "the backend sends no heartbeats"
    heart.cancel()
    backend._heart = None


def start_heartbeats(backend: RedisBackend) -> None:
    """The hung process wakes up again."""
    assert backend._heart is None
    backend._heart = asyncio.get_running_loop().create_task(backend._beat_forever())


@contextlib.contextmanager
def writes_held(backend: RedisBackend) -> Iterator[None]:
    """What the process writes meanwhile reaches Redis only after the block: another
    process's writes overtake it."""
    writer = backend.writer
    start = writer.start
    writer.start = lambda: None  # type: ignore[method-assign]
    try:
        yield
    finally:
        del writer.start
        start()
