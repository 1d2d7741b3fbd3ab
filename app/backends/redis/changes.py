"""Edits, deletions, reactions, search and read positions in Redis (keys in scripts.py).

A change is an operation of the WRITE script, grouped with this process's other writes and
run under its epoch: it stores the message as it is now in `changes:ROOM` and tells every
process that reads the room through its presence stream, this one included (the backend's
`changed_entry`). Search has no index here: it scans the latest SEARCH_REACH messages of
the room, as they are now.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis

from app.backends.base import BackendError
from app.backends.changes import SEARCH_REACH, ChangeStore
from app.backends.reads import ReadStore
from app.backends.redis.commands import IDS_KEY, PREFIX, RedisErrors
from app.backends.redis.history import overlay, read_range
from app.backends.redis.writer import Writer
from app.core.messages import REACTIONS, Message, wire_core
from app.core.words import Phrase, matches

SCAN_CHUNK = 1_000  # messages a search reads at once


class RedisChanges(ChangeStore):
    def __init__(self, redis: Callable[[], aioredis.Redis], writer: Callable[[], Writer]) -> None:
        self._redis = redis
        self._writer = writer  # the backend's, once it has one

    @property
    def reach(self) -> int:
        return SEARCH_REACH

    async def message(self, room: str, id: int) -> Message | None:
        try:
            async with self._redis().pipeline(transaction=True) as pipe:
                read_range(pipe, room, b"%d-0" % id, b"%d-0" % id, 1)
                entries, changes = await pipe.execute()
        except RedisErrors as exc:
            raise BackendError(f"Could not read message {id} of {room!r} from Redis: {exc}") from exc
        found = overlay(room, entries, changes, 1)
        return found[0] if found else None

    async def _change(self, *args: bytes | str) -> Message | None:
        changed: Message | None = await self._writer().write(args)
        return changed

    async def edit(self, message: Message, text: str, edited_ts: int) -> Message | None:
        core = wire_core(message.room, message.name, text, message.guest)
        return await self._change("e", message.room, str(message.id), core, str(edited_ts))

    async def delete(self, message: Message) -> Message | None:
        core = wire_core(message.room, message.name, "", message.guest)
        return await self._change("d", message.room, str(message.id), core)

    async def react(self, room: str, id: int, key: str, emoji: str) -> Message | None:
        return await self._change("x", room, str(id), key, emoji, "\n".join(REACTIONS))

    async def search(
        self, room: str, phrases: list[Phrase], before: int | None, limit: int
    ) -> tuple[list[Message], bool]:
        redis = self._redis()
        try:
            last = int(await redis.hget(IDS_KEY, room) or 0)
            floor = max(0, last - SEARCH_REACH)  # the reach: ids above this
            newest = min(before - 1 if before is not None else last, last)
            found: list[Message] = []
            while newest > floor and len(found) <= limit:
                async with redis.pipeline(transaction=True) as pipe:
                    read_range(pipe, room, b"%d-0" % newest, b"(%d-0" % floor, SCAN_CHUNK)
                    entries, changes = await pipe.execute()
                chunk = overlay(room, entries, changes, SCAN_CHUNK)
                if not chunk:
                    break
                found.extend(message for message in chunk if not message.deleted and matches(phrases, message.text))
                newest = chunk[-1].id - 1
        except RedisErrors as exc:
            raise BackendError(f"Could not search {room!r} in Redis: {exc}") from exc
        return found[:limit], len(found) > limit


class RedisReads(ReadStore):
    def __init__(self, redis: Callable[[], aioredis.Redis]) -> None:
        self._redis = redis

    async def position(self, key: str, room: str) -> int | None:
        score: Any = await self._redis().zscore(_reads_key(key), room)
        return int(score) if score is not None else None

    async def mark(self, key: str, room: str, id: int) -> None:
        await self._redis().zadd(_reads_key(key), {room: id}, gt=True)


def _reads_key(key: str) -> bytes:
    return PREFIX + b"reads:" + key.encode()
