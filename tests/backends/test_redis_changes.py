"""Changes of stored messages on Redis, against a real redis-server: every process sees them
live and reads them back; a deleted message's text is gone from Redis; retention takes
changes along; a reconnection catches up with what changed meanwhile."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from app.backends.redis import RedisBackend
from app.core.messages import Message
from app.core.protocol import typing_event
from app.settings import Settings
from tests.support.redis_faults import reconnection_held
from tests.support.subscriber import Delivered

pytestmark = pytest.mark.anyio


@pytest.fixture
async def open_backend(redis_url: str) -> AsyncIterator[Callable[..., Any]]:
    started: list[RedisBackend] = []

    async def start(**overrides: Any) -> tuple[RedisBackend, Delivered]:
        overrides.setdefault("presence_ttl", 1.0)
        backend = RedisBackend(redis_url, Settings(backend_url=redis_url, **overrides))
        delivered = Delivered()
        await backend.start(delivered)
        started.append(backend)
        return backend, delivered

    yield start
    for backend in started:
        await backend.stop()


async def everything_in(client: Any) -> bytes:
    """Every key and value in Redis (a redis.asyncio.Redis), as bytes, whatever its type."""
    found: list[Any] = []
    async for key in client.scan_iter():
        found.append(key)
        kind = (await client.type(key)).decode()
        if kind == "string":
            found.append(await client.get(key))
        elif kind == "hash":
            found.extend(part for pair in (await client.hgetall(key)).items() for part in pair)
        elif kind == "zset":
            found.extend(member for member, _ in await client.zrange(key, 0, -1, withscores=True))
        elif kind == "set":
            found.extend(await client.smembers(key))
        elif kind == "stream":
            found.extend(part for _, fields in await client.xrange(key) for pair in fields.items() for part in pair)
    return b"".join(part for part in found if isinstance(part, bytes))


async def test_a_change_reaches_every_process_and_a_process_opening_the_room_reads_it(
    open_backend: Callable[..., Any],
) -> None:
    (first, got_first), (second, got_second) = await open_backend(), await open_backend()
    for backend in (first, second):
        await backend.subscribe("den")
    message = await first.publish("den", "ann", "helo")
    edited = await second.changes.edit(message, "hello", 42)
    reacted = await first.changes.react("den", message.id, "bob", "👍")
    assert reacted is not None
    for got in (got_first, got_second):  # each process hears each change once, in one order
        await got.wait_for(lambda d: len(d.changes) == 2)
        assert got.changes == [("den", "edit", edited), ("den", "reactions", reacted)]
    third, _ = await open_backend()
    assert await third.subscribe("den") == [reacted]  # its latest state, edit and reactions


async def test_a_deleted_message_is_gone_from_redis(open_backend: Callable[..., Any]) -> None:
    backend, got = await open_backend()
    await backend.subscribe("den")
    secret = await backend.publish("den", "ann", "the secret is swordfish")
    after = await backend.publish("den", "ann", "after")
    await backend.changes.react("den", secret.id, "bob", "🙏")
    await backend.changes.edit(secret, "the secret is still swordfish", 1)
    assert b"swordfish" in await everything_in(backend.redis)
    tombstone = await backend.changes.delete(secret)
    assert tombstone is not None
    await got.wait_for(lambda d: len(d.changes) == 3)
    assert b"swordfish" not in await everything_in(backend.redis)  # neither the text nor its edits
    assert not await backend.redis.exists(b"chatroom:reactions:den\n%d" % secret.id)
    assert await backend.since("den", 0, after.id, 10) == ([tombstone, after], False)


async def test_trimming_takes_the_changes_of_what_it_trims_along(open_backend: Callable[..., Any]) -> None:
    backend, _ = await open_backend(retention_messages=100)
    await backend.subscribe("den")
    first = await backend.publish("den", "ann", "first")
    await backend.changes.react("den", first.id, "bob", "👍")
    deleted = await backend.publish("den", "ann", "deleted")
    await backend.changes.delete(deleted)
    await asyncio.gather(*[backend.publish("den", "ann", f"m{number}") for number in range(1000)])
    assert await backend.redis.zcard(b"chatroom:changes:den") == 0
    assert not await backend.redis.exists(b"chatroom:reactions:den\n%d" % first.id)
    kept, _ = await backend.history("den", None, 1000)
    assert kept[0].id > deleted.id  # no tombstone of a message retention let go
    _, gap = await backend.since("den", 0, kept[-1].id, 1000)
    assert gap


async def test_a_tombstone_at_the_start_stays_while_nothing_was_trimmed(open_backend: Callable[..., Any]) -> None:
    backend, _ = await open_backend(retention_messages=100)
    await backend.subscribe("den")
    first = await backend.publish("den", "ann", "first")
    tombstone = await backend.changes.delete(first)
    second = await backend.publish("den", "ann", "second")
    assert await backend.history("den", None, 10) == ([tombstone, second], False)


async def test_messages_older_than_the_retention_age_take_their_changes_along(
    open_backend: Callable[..., Any],
) -> None:
    backend, _ = await open_backend(retention_days=1)
    await backend.subscribe("den")
    old = [await backend.publish("den", "ann", f"old {number}") for number in range(3)]
    await backend.changes.delete(old[1])
    await backend.changes.react("den", old[2].id, "bob", "👍")
    new = await backend.publish("den", "ann", "new")
    while new.ts == old[-1].ts:
        new = await backend.publish("den", "ann", "new")
    assert await backend.enforce_retention(now=new.ts + 86_400_000) == 2  # the tombstone had no entry
    assert await backend.redis.zcard(b"chatroom:changes:den") == 0
    kept, _ = await backend.history("den", None, 10)
    assert kept[0].text == "new"


async def test_a_reconnection_catches_up_with_what_changed_meanwhile(open_backend: Callable[..., Any]) -> None:
    (first, got_first), (second, _) = await open_backend(), await open_backend()
    for backend in (first, second):
        await backend.subscribe("den")
    message = await first.publish("den", "ann", "helo")
    last = await first.publish("den", "ann", "the last one it delivered")
    await got_first.wait_for(lambda d: len(d.messages()) == 2)
    epoch = first.epoch
    async with reconnection_held(first):
        edited = await second.changes.edit(message, "hello", 7)
        tombstone = await second.changes.delete(last)  # the message it delivered last is gone
        for _ in range(5):  # and the presence stream moved on
            second.ephemeral("den", "bob", typing_event("bob"))
    await got_first.wait_for(lambda d: len(d.changes) == 2)
    assert got_first.changes == [("den", "edit", edited), ("den", "delete", tombstone)]
    assert first.epoch == epoch  # a deleted message is no sign that Redis lost data
    assert got_first.epoch_changes == []


async def test_a_message_deleted_before_a_process_read_it_arrives_as_its_tombstone(
    open_backend: Callable[..., Any],
) -> None:
    (first, got_first), (second, _) = await open_backend(), await open_backend()
    for backend in (first, second):
        await backend.subscribe("den")
    async with reconnection_held(first):
        message = await second.publish("den", "bob", "oops")
        tombstone = await second.changes.delete(message)
    await got_first.wait_for(lambda d: len(d.messages()) == 1)
    assert got_first.messages() == [tombstone]
    assert got_first.changes == []
    after = await second.publish("den", "bob", "after")
    await got_first.wait_for(lambda d: len(d.messages()) == 2)
    assert got_first.messages() == [tombstone, after]


async def test_someone_typing_reaches_the_other_processes_once(open_backend: Callable[..., Any]) -> None:
    (first, got_first), (second, got_second) = await open_backend(), await open_backend()
    for backend in (first, second):
        await backend.subscribe("den")
    first.ephemeral("den", "ann", typing_event("ann"))
    assert got_first.ephemeral_events == [("den", "ann", typing_event("ann"))]  # here at once
    await got_second.wait_for(lambda d: len(d.ephemeral_events) == 1)
    assert got_second.ephemeral_events == [("den", "ann", typing_event("ann"))]
    marker = await first.publish("den", "ann", "after it")  # everything written after it has come
    await got_first.wait_for(lambda d: marker in d.messages())
    assert len(got_first.ephemeral_events) == 1  # its own entry, read back, is not told twice
    await second.unsubscribe("den")
    assert await second.subscribe("den") == [marker]  # and nothing of it is history


def test_a_stored_message_is_the_same_bytes_built_here_or_by_the_script() -> None:
    """What the WRITE script builds (test above) and what `Message` builds agree: checked by
    equality throughout; this says which fields come in which order."""
    message = Message("den", 3, "ann", "hi", 10, True, 11, False, {"👍": 2})
    assert message.json == (
        b'{"type":"message","id":3,"room":"den","name":"ann","text":"hi","guest":true,'
        b'"edited_ts":11,"reactions":{"\xf0\x9f\x91\x8d":2},"ts":10}'
    )
