"""`Heartbeat`: this process's presence kept alive, dead processes swept, and the chat's epoch
checked, every `presence_ttl / 4` seconds and whenever something says the epoch may have moved.

Each beat (scripts.BEAT) extends this process's presence and announces the leaves of the
processes whose presence expired. It also reads the epoch: a Redis without one lost
everything, and a Redis with older data than this process saw (`lost`) lost some; either
way the first process to find out names a new epoch (scripts.SWITCH), and every process
goes on in it (`adopt`, the backend's).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis

from app.backends.redis import scripts
from app.backends.redis.commands import BEAT, BEHIND, SWITCH, RedisErrors, stop_task
from app.backends.redis.presence import RedisPresence

logger = logging.getLogger("chatroom.redis")


class Heartbeat:
    def __init__(
        self,
        redis: Callable[[], aioredis.Redis],
        node: str,
        ttl: float,
        presence_maxlen: int,
        epoch: Callable[[], str],
        adopt: Callable[[str], None],
        presence: RedisPresence,
        after: Callable[[bool], Awaitable[None]],
    ) -> None:
        self._redis = redis
        self._node = node
        self._ttl = ttl
        self._presence_maxlen = str(presence_maxlen)
        self._epoch = epoch  # the epoch this process is in
        self._adopt = adopt  # goes on in another epoch
        self._presence = presence
        self._after = after  # what else a beat brings up to date; given whether it swept this process
        self._task: asyncio.Task[None] | None = None
        self._settling: asyncio.Task[None] | None = None  # finding out which epoch the chat is in
        self._lost = False  # whether that is because Redis lost data of this process's epoch

    async def beat(self, lost: bool = False) -> bool:
        """Keep this process's presence alive; True if it had expired. Checks the epoch too: a
        Redis without one lost everything; `lost` says that it lost data of this epoch."""
        redis, epoch = self._redis(), self._epoch()
        ttl = str(int(self._ttl * 1000))
        absent, current = await BEAT.run(redis, [scripts.PREFIX, self._node, ttl, self._presence_maxlen])
        if self._epoch() != epoch:
            return bool(absent)  # moved on meanwhile: that found out all this one could
        if current is None or lost:
            new = secrets.token_hex(8)
            current = await SWITCH.run(redis, [scripts.PREFIX, epoch, new, "1" if lost else "0"])
            if current == new.encode():
                why = "with older data than this process saw" if lost else "without the chat's data"
                logger.error("Redis came back %s: a new epoch begins", why)
        if current != epoch.encode() and self._epoch() == epoch:
            self._adopt(current.decode())
        return bool(absent)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._beat_forever(), name="chatroom redis heartbeat")

    async def stop(self) -> None:
        for task in (self._task, self._settling):
            await stop_task(task)
        self._task = None

    @property
    def beating(self) -> bool:
        return self._task is not None

    async def _beat_forever(self) -> None:
        interval = self._ttl / 4
        while True:
            await asyncio.sleep(interval)
            try:
                swept = await self.beat()
            except RedisErrors as exc:
                logger.debug("heartbeat failed: %s", exc)
                continue
            if swept and self._presence.claims_any:
                await self._presence.claim_again()
            await self._after(swept)

    def suspect(self, lost: bool = False) -> None:
        """Something says that the chat may be in another epoch (`lost`: that Redis lost data of
        this one): find out at once, rather than at the next heartbeat."""
        self._lost |= lost
        if self._settling is None:
            self._settling = asyncio.get_running_loop().create_task(self._settle(), name="chatroom redis epoch")

    def refused(self, reason: str) -> None:
        """Redis refused a write: STALE_EPOCH, or BEHIND (it has older data than this process saw)."""
        self.suspect(lost=reason == BEHIND)

    async def _settle(self) -> None:
        try:
            while True:
                lost, self._lost = self._lost, False
                await self.beat(lost)
                if not self._lost:
                    return
        except RedisErrors as exc:
            # Redis is out of reach again: reconnecting checks again, and so does the next
            # write, which Redis refuses until this process is in the chat's epoch.
            logger.debug("could not check the epoch: %s", exc)
        finally:
            self._settling = None
