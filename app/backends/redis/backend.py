"""`redis://HOST:PORT/DB`: many processes, on many hosts, behaving as one chat through one Redis.

Each room's messages go through a Redis Stream (scripts.py has the keys). The parts:
`Writer` (every write, grouped per turn), `Reader` (the streams of the rooms this process
reads), `RedisPresence` (names unique across processes, who is online), `Retention` (age),
and here the life cycle that ties them: connecting, heartbeats, the epoch, and history.

Processes send heartbeats; one that stops sending them is taken for dead after
`presence_ttl` seconds (see presence.py). The epoch names the lifetime of the history:
a Redis that comes back without its data, or with older data, would give out ids again.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import Any

import orjson
import redis.asyncio as aioredis

from app.backends.base import AccountStore, Backend, BackendError, Subscriber
from app.backends.redis import scripts
from app.backends.redis.accounts import RedisAccounts
from app.backends.redis.commands import (
    BEAT,
    COMMAND_TIMEOUT,
    EPOCH_KEY,
    GOODBYE,
    IDS_KEY,
    PREFIX,
    Entry,
    RedisErrors,
    connect,
    message_id,
    room_key,
)
from app.backends.redis.presence import RedisPresence
from app.backends.redis.reader import Reader
from app.backends.redis.retention import Retention
from app.backends.redis.rooms import RoomState
from app.backends.redis.writer import Writer
from app.core.messages import Message, wire_middle
from app.settings import Settings

logger = logging.getLogger("chatroom.redis")

PRESENCE_MAXLEN = 1_000  # entries kept in a room's presence stream (approximately)
NOTICES_KEY = PREFIX + b"notices"


class RedisBackend(Backend):
    def __init__(self, url: str, settings: Settings) -> None:
        super().__init__(url, settings)
        self.node = secrets.token_hex(8)  # this process, for presence
        self._redis: aioredis.Redis | None = None
        self._rooms: dict[str, RoomState] = {}
        self.writer = Writer(
            self._client, self.node, settings.retention_messages, PRESENCE_MAXLEN, settings.queue_bytes // 4, self._undo
        )
        self.presence: RedisPresence = RedisPresence(self, self.writer, self._rooms, self.node)
        self.reader = Reader(self._connect, self._client, self.presence, self._deliver_message, self._catch_up)
        self.retention = Retention(self._client, self.node, settings.retention_days)
        self._heart: asyncio.Task[None] | None = None
        self._expiry: asyncio.Task[None] | None = None
        self._problem: str | None = None  # a fault that reconnecting cannot mend
        self._tasks: set[asyncio.Task[None]] = set()

    # Life cycle

    def _connect(self, **options: Any) -> aioredis.Redis:
        return connect(self.url, **options)

    @property
    def redis(self) -> aioredis.Redis:
        """The client of every command but the reader's."""
        return self._client()

    def _client(self) -> aioredis.Redis:
        assert self._redis is not None, "the backend has not started"
        return self._redis

    def _undo(self, args: tuple[bytes | str, ...]) -> tuple[bytes | str, ...] | None:
        return self.presence.undo(args)

    def _account_store(self) -> AccountStore:
        return RedisAccounts(self._client, int(self.settings.session_days * 86_400_000))

    async def open(self) -> None:
        """Connect, for commands such as `chatroom users` that use the store beside the servers."""
        self._redis = self._connect(socket_timeout=COMMAND_TIMEOUT)

    async def close(self) -> None:
        """Let what was written reach Redis, and disconnect (after `open`)."""
        await self.writer.stop()
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    def notify(self, kind: str, fields: dict[str, Any]) -> None:
        self.writer.write(("n", kind, orjson.dumps(fields)), wait=False)
        super().notify(kind, fields)

    def _notice(self, fields: dict[bytes, bytes]) -> None:
        if fields[b"o"] != self.node.encode() and self.subscriber is not None:
            self.subscriber.notice(fields[b"k"].decode(), orjson.loads(fields[b"b"]))

    async def start(self, subscriber: Subscriber) -> None:
        await super().start(subscriber)
        self._redis = self._connect(socket_timeout=COMMAND_TIMEOUT)
        try:
            latest: list[Entry] = await self._redis.xrevrange(NOTICES_KEY, count=1)  # type: ignore[assignment]
            self.reader.listen(NOTICES_KEY, latest[0][0] if latest else b"0-0", self._notice)
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.set(EPOCH_KEY, self.epoch, nx=True)  # the first process ever names the epoch
                pipe.get(EPOCH_KEY)
                _, epoch = await pipe.execute()
            self.epoch = epoch.decode()
            await self.beat()
        except RedisErrors as exc:
            await self._redis.aclose()
            raise RuntimeError(f"Redis at {self.url} cannot be used: {exc}") from exc
        loop = asyncio.get_running_loop()
        self.reader.start()
        self._heart = loop.create_task(self._beat_forever(), name="chatroom redis heartbeat")
        if self.settings.retention_days:
            self._expiry = loop.create_task(self.retention.run_forever(), name="chatroom redis retention")
        try:
            async with asyncio.timeout(COMMAND_TIMEOUT):
                await self.reader.reading.wait()
        except TimeoutError:
            logger.warning("Redis answered, but reading from it has not started yet; going on")

    async def stop(self) -> None:
        if self._redis is None:
            return  # stopped already, or never started
        for task in (self._expiry, self._heart, *self._tasks):
            if task is not None:
                task.cancel()
                await asyncio.wait([task])
        await self.reader.stop()
        await self.writer.stop()
        try:
            await GOODBYE.run(self._redis, [scripts.PREFIX, self.node, str(PRESENCE_MAXLEN)])
        except RedisErrors as exc:
            logger.warning("could not say goodbye to Redis (presence expires by itself): %s", exc)
        await self._redis.aclose()
        self._redis = None
        await super().stop()

    async def check(self) -> str | None:
        if self._problem is not None:
            return self._problem
        try:
            async with asyncio.timeout(1):
                await self._client().ping()
        except RedisErrors as exc:
            return f"Redis does not answer: {exc or type(exc).__name__}"
        if not self.reader.reading.is_set():
            return "reconnecting to Redis"
        return None

    # Heartbeats and the epoch

    async def beat(self) -> bool:
        """Keep this process's presence alive; True if it had expired. Checks the epoch too."""
        ttl = str(int(self.settings.presence_ttl * 1000))
        absent, epoch = await BEAT.run(self._client(), [scripts.PREFIX, self.node, ttl, str(PRESENCE_MAXLEN)])
        if epoch is None:
            await self._history_lost("Redis lost the chat's data", new_epoch=True)
        elif epoch != self.epoch.encode():
            await self._history_lost("another chatroom process found that Redis lost data", new_epoch=False)
        return bool(absent)

    async def _beat_forever(self) -> None:
        interval = self.settings.presence_ttl / 4
        while True:
            await asyncio.sleep(interval)
            try:
                swept = await self.beat()
            except RedisErrors as exc:
                logger.debug("heartbeat failed: %s", exc)
                continue
            if swept and self.presence.claims_any:
                await self.presence.claim_again()

    async def _history_lost(self, reason: str, new_epoch: bool) -> None:
        """Redis restarted without its data, or with older data: ids would be given out again
        under this epoch, and clients would take new messages for ones they have.

        The process that finds out writes a new epoch, for the processes to come; this one
        and, seeing the new epoch at their next heartbeat, every other one, report that they
        must be restarted (GET /healthz).
        """
        if self._problem is not None:
            return
        self._problem = f"{reason}: restart every chatroom process to start a new epoch"
        logger.error(self._problem)
        if new_epoch:
            await self._client().set(EPOCH_KEY, secrets.token_hex(8))

    async def _catch_up(self) -> None:
        """After a reconnection: check that Redis kept its data (`beat`), claim what must be
        claimed again, and bring each room's copy of who is online up to date.

        Messages need nothing: the reader goes on from the last one it delivered.
        """
        redis = self._client()
        if await self.beat() and self.presence.claims_any:
            task = asyncio.get_running_loop().create_task(self.presence.claim_again())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        for state in list(self._rooms.values()):
            async with redis.pipeline(transaction=True) as pipe:
                pipe.hgetall(state.names_key)
                pipe.xrevrange(state.presence_key, count=1)
                pipe.hget(IDS_KEY, state.name)
                names, presence, last_id = await pipe.execute()
            if self._rooms.get(state.name) is not state:
                continue
            if int(last_id or 0) < state.last_id:
                reason = f"Redis came back with older data (room {state.name!r} went back in time)"
                await self._history_lost(reason, new_epoch=True)
            self.presence.refresh(state, names, presence[0][0] if presence else None)
            self.reader.moved_presence(state)
        self.writer.start()  # mends of writes that failed while Redis was away

    # Rooms

    async def subscribe(self, room: str) -> list[Message]:
        """Read the room's latest messages, who is online and where its streams are, all at one
        instant (MULTI), then read its streams from there."""
        state = RoomState.of(room)
        try:
            async with self._client().pipeline(transaction=True) as pipe:
                pipe.xrevrange(state.messages_key, count=self.settings.welcome_history)
                pipe.hgetall(state.names_key)
                pipe.xrevrange(state.presence_key, count=1)
                latest, names, presence = await pipe.execute()
        except RedisErrors as exc:
            raise BackendError(f"Could not read room {room!r} from Redis: {exc}") from exc
        messages = [Message.from_json(room, message_id(entry), fields[b"j"]) for entry, fields in reversed(latest)]
        if room in self._rooms:
            return messages  # read already: everything after where it is comes anyway
        state.last_id = messages[-1].id if messages else 0
        state.presence_at = presence[0][0] if presence else b"0-0"
        state.online = self.presence.online_from(room, names)
        self._rooms[room] = state
        self.reader.add(state)
        return messages

    async def unsubscribe(self, room: str) -> None:
        state = self._rooms.pop(room, None)
        if state is not None:
            self.reader.remove(state)

    def subscribed(self, room: str) -> bool:
        return room in self._rooms

    def _deliver_message(self, room: str, json: bytes, message: Message) -> None:
        if self.subscriber is not None:
            self.subscriber.deliver(room, json, message)

    # Messages

    def publish(self, room: str, name: str, text: str, guest: bool = False) -> asyncio.Future[Message]:
        return self.writer.write(("m", room, wire_middle(room, name, text, guest)))

    @property
    def backlogged(self) -> bool:
        return self.writer.backlogged

    async def pace(self) -> None:
        await self.writer.pace()

    async def history(self, room: str, before: int | None, limit: int) -> tuple[list[Message], bool]:
        newest = b"(%d-0" % before if before is not None else b"+"
        rows = await self._range(room, newest, b"-", limit + 1)
        return rows[:limit][::-1], len(rows) > limit

    async def since(self, room: str, after: int, upto: int, limit: int) -> tuple[list[Message], bool]:
        rows = await self._range(room, b"%d-0" % upto, b"(%d-0" % after, limit + 1)
        kept = rows[:limit][::-1]
        # Ids count up from 1 without holes, so a first message beyond after + 1 means the
        # ones in between are gone (trimmed: CHAT_RETENTION_MESSAGES or CHAT_RETENTION_DAYS).
        first = kept[0].id if kept else upto + 1
        return kept, len(rows) > limit or first > after + 1

    async def _range(self, room: str, newest: bytes, oldest: bytes, count: int) -> list[Message]:
        """The messages from `newest` down to `oldest` (stream ids), newest first."""
        try:
            rows: list[Entry] = await self._client().xrevrange(  # type: ignore[assignment]
                room_key(b"messages", room), newest, oldest, count
            )
        except RedisErrors as exc:
            raise BackendError(f"Could not read the history of {room!r} from Redis: {exc}") from exc
        return [Message.from_json(room, message_id(entry), fields[b"j"]) for entry, fields in rows]

    async def enforce_retention(self, now: int | None = None) -> int:
        """Delete the messages older than CHAT_RETENTION_DAYS now; returns how many went."""
        return await self.retention.enforce(now)
