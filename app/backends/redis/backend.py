"""`redis://HOST:PORT/DB`: many processes, on many hosts, behaving as one chat through one Redis.

Each room's messages go through a Redis Stream (scripts.py has the keys). The parts:
`Writer` (every write, grouped per turn), `Reader` (the streams of the rooms this process
reads), `RedisPresence` (names unique across processes, who is online), `Retention` (age),
and here the life cycle that ties them: connecting, heartbeats, the epoch, and history.

Processes send heartbeats; one that stops sending them is taken for dead after
`presence_ttl` seconds (see presence.py). The epoch names the lifetime of the history: a
Redis that comes back without its data, or with older data, would give out ids again. The
first process to find out names a new epoch, every other one learns it at its next write,
read or heartbeat, and each goes on in it (`_adopt`): its hub closes every connection
(1012), which resumes in the new epoch.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from functools import partial
from typing import Any

import orjson
import redis.asyncio as aioredis

from app.backends.base import AccountStore, Backend, BackendError, DirectStore, Subscriber
from app.backends.redis import scripts
from app.backends.redis.accounts import RedisAccounts
from app.backends.redis.commands import (
    BEAT,
    BEHIND,
    COMMAND_TIMEOUT,
    EPOCH_KEY,
    GOODBYE,
    IDS_KEY,
    PREFIX,
    SWITCH,
    Entry,
    RedisErrors,
    connect,
    message_id,
    room_key,
)
from app.backends.redis.direct import RedisDirect
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
        self.node = secrets.token_hex(8)  # this process, for presence
        super().__init__(url, settings)
        self.direct: RedisDirect
        self._redis: aioredis.Redis | None = None
        self._rooms: dict[str, RoomState] = {}
        self.writer = Writer(
            self._client,
            self.node,
            settings.retention_messages,
            PRESENCE_MAXLEN,
            settings.queue_bytes // 4,
            self._undo,
            self._refused,
        )
        self.presence: RedisPresence = RedisPresence(self, self.writer, self._rooms, self.node)
        self.reader = Reader(
            self._connect, self._client, self.presence, self._deliver_message, self._catch_up, self._suspect
        )
        self.retention = Retention(self._client, self.node, settings.retention_days)
        self._heart: asyncio.Task[None] | None = None
        self._expiry: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._unechoed: set[asyncio.Future[Message]] = set()  # published here, neither echoed nor failed
        self._settling: asyncio.Task[None] | None = None  # finding out which epoch the chat is in
        self._lost = False  # whether that is because Redis lost data of this process's epoch
        self._direct_behind = False  # its accounts were let go, and are not held again yet

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

    def _direct_store(self) -> DirectStore:
        return RedisDirect(
            self._client,
            self.node,
            lambda: self.epoch,
            lambda: self.reader,
            partial(Backend.notify, self),  # its notices the script writes itself
            self._refused,
            partial(self._suspect, lost=True),
        )

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
            self.epoch = self.writer.epoch = epoch.decode()
            self.reader.epoch = epoch
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
        for task in (self._expiry, self._heart, self._settling, *self._tasks):
            if task is not None:
                task.cancel()
                await asyncio.wait([task])
        await self.reader.stop()
        await self.writer.stop()
        await self.direct.stop()
        try:
            await GOODBYE.run(self._redis, [scripts.PREFIX, self.node, str(PRESENCE_MAXLEN)])
        except RedisErrors as exc:
            logger.warning("could not say goodbye to Redis (presence expires by itself): %s", exc)
        await self._redis.aclose()
        self._redis = None
        await super().stop()

    async def check(self) -> str | None:
        try:
            async with asyncio.timeout(1):
                await self._client().ping()
        except RedisErrors as exc:
            return f"Redis does not answer: {exc or type(exc).__name__}"
        if not self.reader.reading.is_set():
            return "reconnecting to Redis"
        return None

    # Heartbeats and the epoch

    async def beat(self, lost: bool = False) -> bool:
        """Keep this process's presence alive; True if it had expired. Checks the epoch too: a
        Redis without one lost everything; `lost` says that it lost data of this epoch."""
        redis, epoch = self._client(), self.epoch
        ttl = str(int(self.settings.presence_ttl * 1000))
        absent, current = await BEAT.run(redis, [scripts.PREFIX, self.node, ttl, str(PRESENCE_MAXLEN)])
        if self.epoch != epoch:
            return bool(absent)  # moved on meanwhile: that found out all this one could
        if current is None or lost:
            new = secrets.token_hex(8)
            current = await SWITCH.run(redis, [scripts.PREFIX, epoch, new, "1" if lost else "0"])
            if current == new.encode():
                why = "with older data than this process saw" if lost else "without the chat's data"
                logger.error("Redis came back %s: a new epoch begins", why)
        if current != epoch.encode() and self.epoch == epoch:
            self._adopt(current.decode())
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
            if swept or self._direct_behind:
                try:
                    await self._catch_up_direct()
                except RedisErrors as exc:
                    logger.debug("could not catch up with direct messages: %s", exc)
                    self._direct_behind = True  # the next heartbeat tries again
                else:
                    self._direct_behind = False

    def _suspect(self, lost: bool = False) -> None:
        """Something says that the chat may be in another epoch (`lost`: that Redis lost data of
        this one): find out at once, rather than at the next heartbeat."""
        self._lost |= lost
        if self._settling is None and self._redis is not None:
            self._settling = asyncio.get_running_loop().create_task(self._settle(), name="chatroom redis epoch")

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

    def _refused(self, reason: str) -> None:
        self._suspect(lost=reason == BEHIND)

    def _adopt(self, epoch: str) -> None:
        """Go on in `epoch`, another history than the one this process was in: its ids mean
        other messages. Nothing of the old one goes on: what was asked of Redis under it
        fails now, messages not yet echoed included (their senders are told `not_stored`),
        every room is read afresh when subscribed again, and the names this process held
        are let go (the first thing it writes); then the hub closes every connection, which
        comes back and is welcomed in the new epoch."""
        logger.warning("the chat's history is now epoch %s (was %s): connections start afresh", epoch, self.epoch)
        self.epoch = epoch
        self.reader.epoch = epoch.encode()
        gone = BackendError("the chat's history started anew (a new epoch): send it again")
        for future in list(self._unechoed):
            if not future.done():
                future.set_exception(gone)
        for state in list(self._rooms.values()):
            self.reader.remove(state)
        self._rooms.clear()
        self.presence.forget()
        self.writer.restart(epoch, ("g", "-"))
        if self.subscriber is not None:
            self.subscriber.epoch_changed()

    async def _catch_up(self) -> None:
        """After a reconnection: check that Redis kept its data (`beat`, and each room's last
        id and message as delivered here), claim what must be claimed again, and bring each
        room's copy of who is online up to date.

        Messages need nothing more: the reader goes on from the last one it delivered.
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
                pipe.xrevrange(state.messages_key, b"%d-0" % state.last_id, b"-", count=1)
                names, presence, last_id, last = await pipe.execute()
            if self._rooms.get(state.name) is not state:
                continue
            if _went_back(state, int(last_id or 0), last):
                logger.error("Redis came back with older data: room %r went back in time", state.name)
                await self.beat(lost=True)
                break  # every room is read afresh, in the new epoch
            self.presence.refresh(state, names, presence[0][0] if presence else None)
            self.reader.moved_presence(state)
        self.writer.start()  # mends of writes that failed while Redis was away
        await self._catch_up_direct()

    async def _catch_up_direct(self) -> None:
        """Accounts, buddies and direct messages missed meanwhile (RedisDirect.catch_up)."""
        try:
            await self.direct.catch_up()
        except RedisErrors:
            raise
        except BackendError as exc:
            raise OSError(f"could not catch up with direct messages: {exc}") from exc

    # Rooms

    async def subscribe(self, room: str) -> list[Message]:
        """Read the room's latest messages, who is online and where its streams are, all at one
        instant (MULTI), then read its streams from there."""
        state, epoch = RoomState.of(room), self.epoch
        try:
            async with self._client().pipeline(transaction=True) as pipe:
                pipe.get(EPOCH_KEY)
                pipe.xrevrange(state.messages_key, count=self.settings.welcome_history)
                pipe.hgetall(state.names_key)
                pipe.xrevrange(state.presence_key, count=1)
                stored_in, latest, names, presence = await pipe.execute()
        except RedisErrors as exc:
            raise BackendError(f"Could not read room {room!r} from Redis: {exc}") from exc
        self._check_epoch(epoch, stored_in)
        messages = [Message.from_json(room, message_id(entry), fields[b"j"]) for entry, fields in reversed(latest)]
        if room in self._rooms:
            return messages  # read already: everything after where it is comes anyway
        state.last_id = messages[-1].id if messages else 0
        state.last_json = messages[-1].json if messages else b""
        state.presence_at = presence[0][0] if presence else b"0-0"
        state.online = self.presence.online_from(room, names)
        self._rooms[room] = state
        self.reader.add(state)
        return messages

    async def unsubscribe(self, room: str) -> None:
        state = self._rooms.pop(room, None)
        if state is not None:
            self.reader.remove(state)
            for echoed, message in state.echoes.values():
                if not echoed.done():
                    echoed.set_result(message)  # stored; nobody is left here to see it

    def _check_epoch(self, epoch: str, stored_in: bytes | None) -> None:
        """What was read at once with the epoch `stored_in` (MULTI) is of `epoch`, the one this
        process was in when it asked, and still is; else it goes unused."""
        if stored_in != epoch.encode():
            self._suspect()
        if stored_in != epoch.encode() or self.epoch != epoch:
            raise BackendError("the chat's history started anew (a new epoch): try again")

    def subscribed(self, room: str) -> bool:
        return room in self._rooms

    def _deliver_message(self, state: RoomState, json: bytes, message: Message) -> None:
        if state.echoes:
            for number in [number for number in state.echoes if number <= message.id]:
                # (One below it was trimmed away before it could be read: stored all the same.)
                echoed, stored = state.echoes.pop(number)
                if not echoed.done():
                    echoed.set_result(stored)
        if self.subscriber is not None:
            self.subscriber.deliver(state.name, json, message)

    # Messages

    def publish(self, room: str, name: str, text: str, guest: bool = False) -> asyncio.Future[Message]:
        """Settles once the message is stored and, in a room this process reads, read back
        here: a message stored under an epoch that ends before its echo fails instead."""
        state = self._rooms.get(room)
        seen = max(state.last_id, state.written) if state is not None else 0
        stored = self.writer.write(("m", room, wire_middle(room, name, text, guest), str(seen)))
        if state is None:
            return stored  # nobody reads the room here: stored is all there is to wait for
        echoed: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._unechoed.add(echoed)
        echoed.add_done_callback(self._unechoed.discard)
        stored.add_done_callback(partial(self._stored, state, echoed))
        return echoed

    def _stored(self, state: RoomState, echoed: asyncio.Future[Message], stored: asyncio.Future[Message]) -> None:
        error = BackendError("the message was not stored") if stored.cancelled() else stored.exception()
        if echoed.done():
            return  # failed already: a new epoch began
        if error is not None:
            echoed.set_exception(error)
            return
        message = stored.result()
        state.written = max(state.written, message.id)
        if message.id <= state.last_id or self._rooms.get(state.name) is not state:
            echoed.set_result(message)  # read back already, or nobody reads the room here any more
        else:
            state.echoes[message.id] = (echoed, message)

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
        epoch = self.epoch
        try:
            async with self._client().pipeline(transaction=True) as pipe:
                pipe.get(EPOCH_KEY)
                pipe.xrevrange(room_key(b"messages", room), newest, oldest, count)
                stored_in, rows = await pipe.execute()
        except RedisErrors as exc:
            raise BackendError(f"Could not read the history of {room!r} from Redis: {exc}") from exc
        self._check_epoch(epoch, stored_in)
        return [Message.from_json(room, message_id(entry), fields[b"j"]) for entry, fields in rows]

    async def enforce_retention(self, now: int | None = None) -> int:
        """Delete the messages older than CHAT_RETENTION_DAYS now; returns how many went."""
        return await self.retention.enforce(now)


def _went_back(state: RoomState, last_id: int, last: list[Entry]) -> bool:
    """Whether Redis has older data of the room than this process saw: the room's last id is
    below the highest it knows of, or the message it delivered last is another one, or gone
    while older ones are still there (trimming takes the oldest first)."""
    if last_id < max(state.last_id, state.written):
        return True
    if not state.last_id or not last:
        return False
    entry, fields = last[0]
    return message_id(entry) != state.last_id or fields[b"j"] != state.last_json
