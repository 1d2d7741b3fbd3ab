"""Reading a room's history back from its stream: pages before an id, and what came after one."""

from __future__ import annotations

from collections.abc import Callable

import redis.asyncio as aioredis

from app.backends.base import BackendError
from app.backends.redis.commands import EPOCH_KEY, RedisErrors, message_id, room_key
from app.core.messages import Message

CheckEpoch = Callable[[str, "bytes | None"], None]


class History:
    def __init__(self, redis: Callable[[], aioredis.Redis], epoch: Callable[[], str], check: CheckEpoch) -> None:
        self._redis = redis
        self._epoch = epoch  # the epoch this process is in
        self._check = check  # raises unless what was read is of the epoch the process was in

    async def before(self, room: str, before: int | None, limit: int) -> tuple[list[Message], bool]:
        newest = b"(%d-0" % before if before is not None else b"+"
        rows = await self._range(room, newest, b"-", limit + 1)
        return rows[:limit][::-1], len(rows) > limit

    async def after(self, room: str, after: int, upto: int, limit: int) -> tuple[list[Message], bool]:
        rows = await self._range(room, b"%d-0" % upto, b"(%d-0" % after, limit + 1)
        kept = rows[:limit][::-1]
        # Ids count up from 1 without holes, so a first message beyond after + 1 means the
        # ones in between are gone (trimmed: CHAT_RETENTION_MESSAGES or CHAT_RETENTION_DAYS).
        first = kept[0].id if kept else upto + 1
        return kept, len(rows) > limit or first > after + 1

    async def _range(self, room: str, newest: bytes, oldest: bytes, count: int) -> list[Message]:
        """The messages from `newest` down to `oldest` (stream ids), newest first."""
        epoch = self._epoch()
        try:
            async with self._redis().pipeline(transaction=True) as pipe:
                pipe.get(EPOCH_KEY)
                pipe.xrevrange(room_key(b"messages", room), newest, oldest, count)
                stored_in, rows = await pipe.execute()
        except RedisErrors as exc:
            raise BackendError(f"Could not read the history of {room!r} from Redis: {exc}") from exc
        self._check(epoch, stored_in)
        return [Message.from_json(room, message_id(entry), fields[b"j"]) for entry, fields in rows]
