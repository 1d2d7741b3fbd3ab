"""Reading a room's history back from its stream: pages before an id, and what came after one.

Each read takes the messages that changed since they were stored from `changes:ROOM`
instead (scripts.py), in the same transaction: a deleted message's tombstone fills the
hole its entry left in the stream, so ids still count up without holes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis

from app.backends.base import BackendError
from app.backends.redis.commands import EPOCH_KEY, Entry, RedisErrors, message_id, room_key
from app.core.messages import Message

CheckEpoch = Callable[[str, "bytes | None"], None]


def score_bound(stream_bound: bytes) -> bytes:
    """The bound of `changes:ROOM` (scored by id) that a bound of `messages:ROOM` means."""
    if stream_bound == b"+":
        return b"+inf"
    if stream_bound == b"-":
        return b"-inf"
    return stream_bound.partition(b"-")[0]  # b"(42-0" -> b"(42", b"42-0" -> b"42"


def read_range(pipe: Any, room: str, newest: bytes, oldest: bytes, count: int) -> None:
    """Queue the reads of `overlay` on `pipe`: the entries and the changes, newest first."""
    pipe.xrevrange(room_key(b"messages", room), newest, oldest, count)
    pipe.zrevrangebyscore(room_key(b"changes", room), score_bound(newest), score_bound(oldest), 0, count, True)


def overlay(room: str, entries: list[Entry], changes: list[tuple[bytes, float]], count: int) -> list[Message]:
    """The `count` newest messages, newest first, from the entries and the changes that
    `read_range` read over the same range: each of them holds the newest of its kind, so
    together they hold the newest of all."""
    found = {message_id(entry): fields[b"j"] for entry, fields in entries}
    for json, score in changes:
        found[int(score)] = json
    return [Message.from_json(room, number, found[number]) for number in sorted(found, reverse=True)[:count]]


class History:
    def __init__(self, redis: Callable[[], aioredis.Redis], epoch: Callable[[], str], check: CheckEpoch) -> None:
        self._redis = redis
        self._epoch = epoch  # the epoch this process is in
        self._check = check  # raises unless what was read is of the epoch the process was in

    async def before(self, room: str, before: int | None, limit: int) -> tuple[list[Message], bool]:
        newest = b"(%d-0" % before if before is not None else b"+"
        rows = await self.range(room, newest, b"-", limit + 1)
        return rows[:limit][::-1], len(rows) > limit

    async def after(self, room: str, after: int, upto: int, limit: int) -> tuple[list[Message], bool]:
        rows = await self.range(room, b"%d-0" % upto, b"(%d-0" % after, limit + 1)
        kept = rows[:limit][::-1]
        # Ids count up from 1 without holes (a deleted message's tombstone fills its own), so a
        # first message beyond after + 1 means the ones in between are gone (trimmed:
        # CHAT_RETENTION_MESSAGES or CHAT_RETENTION_DAYS).
        first = kept[0].id if kept else upto + 1
        return kept, len(rows) > limit or first > after + 1

    async def range(self, room: str, newest: bytes, oldest: bytes, count: int) -> list[Message]:
        """The messages from `newest` down to `oldest` (stream ids), newest first, as they are now."""
        epoch = self._epoch()
        try:
            async with self._redis().pipeline(transaction=True) as pipe:
                pipe.get(EPOCH_KEY)
                read_range(pipe, room, newest, oldest, count)
                stored_in, entries, changes = await pipe.execute()
        except RedisErrors as exc:
            raise BackendError(f"Could not read the history of {room!r} from Redis: {exc}") from exc
        self._check(epoch, stored_in)
        return overlay(room, entries, changes, count)
