"""Faults injected into a Redis backend, each behind a name that says what it plays."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator

from app.backends.redis import RedisBackend


async def stop_heartbeats(backend: RedisBackend) -> None:
    """As if the process had hung: it sends no more heartbeats, and says no goodbye."""
    assert backend.heartbeat.beating, "the backend sends no heartbeats"
    await backend.heartbeat.stop()


def start_heartbeats(backend: RedisBackend) -> None:
    """The hung process wakes up again."""
    assert not backend.heartbeat.beating
    backend.heartbeat.start()


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


@contextlib.asynccontextmanager
async def reconnection_held(backend: RedisBackend) -> AsyncIterator[None]:
    """Its reader loses its connection to Redis and reconnects, but catches up only once the
    block ends: what other processes do meanwhile happens while it is away."""
    reader = backend.reader
    catch_up = reader._catch_up
    entered, gate = asyncio.Event(), asyncio.Event()

    async def held() -> None:
        entered.set()
        await gate.wait()
        await catch_up()

    reader._catch_up = held
    assert reader.connection_id is not None, "the reader is not connected"
    await backend.redis.client_kill_filter(_id=str(reader.connection_id))
    try:
        async with asyncio.timeout(10):
            await entered.wait()
        yield
    finally:
        reader._catch_up = catch_up
        gate.set()
