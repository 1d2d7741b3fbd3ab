"""`Retention` of the Redis backend: CHAT_RETENTION_DAYS, enforced by one process of them all.

CHAT_RETENTION_MESSAGES needs nothing here: the WRITE script trims each room's stream as it
adds to it (MAXLEN). Age is enforced by a pass every RETENTION_INTERVAL, which the first
process to ask runs (a lock in Redis that lapses before the next interval begins).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import redis.asyncio as aioredis

from app.backends.redis import scripts
from app.backends.redis.commands import EXPIRE, IDS_KEY, RETENTION_KEY, RedisErrors

logger = logging.getLogger("chatroom.redis")

RETENTION_INTERVAL = 60.0  # seconds between two retention passes, over all processes
RETENTION_CHUNK = 1_000  # messages one retention script looks at: a script runs alone in Redis


class Retention:
    def __init__(self, redis: Callable[[], aioredis.Redis], node: str, days: float) -> None:
        self._redis = redis
        self._node = node
        self._days = days

    async def enforce(self, now: int | None = None) -> int:
        """Delete the messages older than CHAT_RETENTION_DAYS; returns how many went.

        `now` is in milliseconds on Redis's clock, the one that stamped the messages; by
        default, Redis's time. Works in short scripts, room by room.
        """
        redis = self._redis()
        if now is None:
            seconds, microseconds = await redis.time()
            now = seconds * 1000 + microseconds // 1000
        cutoff = str(now - int(self._days * 86_400_000))
        deleted = 0
        rooms: list[bytes] = await redis.hkeys(IDS_KEY)  # type: ignore[assignment]
        for room in rooms:
            more = True
            while more:
                count, more = await EXPIRE.run(redis, [scripts.PREFIX, room.decode(), cutoff, str(RETENTION_CHUNK)])
                deleted += count
        return deleted

    async def take_turn(self) -> bool:
        """Whether this process runs this interval's pass: the first to ask does."""
        hold = int(RETENTION_INTERVAL * 900)  # ms: let go before the next interval begins
        return bool(await self._redis().set(RETENTION_KEY, self._node, nx=True, px=hold))

    async def run_forever(self) -> None:
        while True:
            try:
                if await self.take_turn():
                    started = time.monotonic()
                    deleted = await self.enforce()
                    if deleted:
                        logger.info("retention: deleted %d messages in %.2f s", deleted, time.monotonic() - started)
            except RedisErrors as exc:
                logger.warning("retention pass failed (the next one tries again): %s", exc)
            await asyncio.sleep(RETENTION_INTERVAL)
