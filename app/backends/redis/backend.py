"""`redis://HOST:PORT/DB`: many processes, on many hosts, behaving as one chat through one Redis.

Each room's messages go through a Redis Stream (scripts.py has the keys). The parts:
`Writer` (every write, grouped per turn), `Reader` (the streams of the rooms this process
reads), `RedisPresence` (names unique across processes, who is online), `Heartbeat`
(presence kept alive, the epoch checked), `Echoes` (a message settles once read back),
`History` (pages), `Retention` (age), `RedisAccounts`; and here the life cycle that ties
them: connecting, catching up after a reconnection, going on in a new epoch.

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

from app.backends.base import (
    AccountStore,
    Backend,
    BackendError,
    DirectStore,
    ModerationStore,
    Subscriber,
    TransferStore,
)
from app.backends.changes import ChangeStore
from app.backends.reads import ReadStore
from app.backends.redis import scripts
from app.backends.redis.accounts import RedisAccounts
from app.backends.redis.changes import RedisChanges, RedisReads
from app.backends.redis.commands import (
    COMMAND_TIMEOUT,
    EPOCH_KEY,
    GOODBYE,
    IDS_KEY,
    PREFIX,
    Entry,
    RedisErrors,
    connect,
    message_id,
    stop_task,
)
from app.backends.redis.direct import RedisDirect
from app.backends.redis.echoes import Echoes
from app.backends.redis.heartbeat import Heartbeat
from app.backends.redis.history import History, overlay, read_range
from app.backends.redis.moderation import RedisModeration
from app.backends.redis.presence import RedisPresence
from app.backends.redis.reader import Reader
from app.backends.redis.retention import Retention
from app.backends.redis.rooms import RoomState
from app.backends.redis.transfer import RedisTransfer
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
        self._node_bytes = self.node.encode()
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
        self.heartbeat = Heartbeat(
            self._client,
            self.node,
            settings.presence_ttl,
            PRESENCE_MAXLEN,
            lambda: self.epoch,
            self._adopt,
            self.presence,
            self._after_beat,
        )
        self.reader = Reader(
            self._connect,
            self._client,
            self.presence,
            self._deliver_message,
            self._catch_up,
            self.heartbeat.suspect,
            {b"change": self._changed_entry, b"typing": self._typing_entry},
        )
        self.retention = Retention(self._client, self.node, settings.retention_days)
        self._expiry: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.echoes = Echoes(self._rooms)
        self.history_reader = History(self._client, lambda: self.epoch, self._check_epoch)
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

    def _change_store(self) -> ChangeStore:
        return RedisChanges(self._client, lambda: self.writer)

    def _read_store(self) -> ReadStore:
        return RedisReads(self._client)

    def _moderation_store(self) -> ModerationStore:
        return RedisModeration(self._client)

    def _transfer_store(self) -> TransferStore:
        return RedisTransfer(self._client, lambda: self.epoch, self.settings.retention_messages)

    def _direct_store(self) -> DirectStore:
        return RedisDirect(
            self._client,
            self.node,
            lambda: self.epoch,
            lambda: self.reader,
            partial(Backend.notify, self),  # its notices the script writes itself
            self._refused,
            lambda: self.heartbeat.suspect(lost=True),  # made before the heartbeat is
        )

    async def open(self) -> None:
        """Connect, for commands such as `chatroom users` that use the store beside the servers.

        What they write runs under the epoch the servers are in (the writer's scripts refuse
        any other), or names the first one if no server ever started.
        """
        self._redis = self._connect(socket_timeout=COMMAND_TIMEOUT)
        await self._join_epoch()

    async def _join_epoch(self) -> None:
        async with self._client().pipeline(transaction=True) as pipe:
            pipe.set(EPOCH_KEY, self.epoch, nx=True)  # the first process ever names the epoch
            pipe.get(EPOCH_KEY)
            _, epoch = await pipe.execute()
        self.epoch = self.writer.epoch = epoch.decode()
        self.reader.epoch = epoch

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
            await self._join_epoch()
            await self.heartbeat.beat()
        except RedisErrors as exc:
            await self._redis.aclose()
            raise RuntimeError(f"Redis at {self.url} cannot be used: {exc}") from exc
        loop = asyncio.get_running_loop()
        self.reader.start()
        self.heartbeat.start()
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
        for task in (self._expiry, *self._tasks):
            await stop_task(task)
        await self.heartbeat.stop()
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

    # The epoch

    def _refused(self, reason: str) -> None:
        self.heartbeat.refused(reason)

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
        self.echoes.fail_all(BackendError("the chat's history started anew (a new epoch): send it again"))
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
        if await self.heartbeat.beat() and self.presence.claims_any:
            task = asyncio.get_running_loop().create_task(self.presence.claim_again())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        for state in list(self._rooms.values()):
            async with redis.pipeline(transaction=True) as pipe:
                pipe.hgetall(state.names_key)
                pipe.xrevrange(state.presence_key, count=1)
                pipe.hget(IDS_KEY, state.name)
                pipe.xrevrange(state.messages_key, b"%d-0" % state.last_id, b"-", count=1)
                pipe.zrangebyscore(state.changes_key, state.last_id, state.last_id)
                # What the presence stream carried meanwhile: changes of stored messages among it.
                pipe.xrange(state.presence_key, b"(" + state.presence_at, b"+", count=PRESENCE_MAXLEN)
                names, presence, last_id, last, change, missed = await pipe.execute()
            if self._rooms.get(state.name) is not state:
                continue
            deleted = bool(change) and Message.from_json(state.name, state.last_id, change[0]).deleted
            if _went_back(state, int(last_id or 0), last, deleted):
                logger.error("Redis came back with older data: room %r went back in time", state.name)
                await self.heartbeat.beat(lost=True)
                break  # every room is read afresh, in the new epoch
            for _, fields in missed:
                if fields.get(b"t") == b"change":
                    self._changed_entry(state, fields, True)
            self.presence.refresh(state, names, presence[0][0] if presence else None)
            self.reader.moved_presence(state)
        self.writer.start()  # mends of writes that failed while Redis was away
        await self._catch_up_direct()

    async def _after_beat(self, swept: bool) -> None:
        """A sweep let go of this process's accounts: hold them again, and catch up with what
        they missed; if that fails, the next beat tries again."""
        if not (swept or self._direct_behind):
            return
        try:
            await self._catch_up_direct()
        except RedisErrors as exc:
            logger.debug("could not catch up with direct messages: %s", exc)
            self._direct_behind = True
        else:
            self._direct_behind = False

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
                read_range(pipe, room, b"+", b"-", self.settings.welcome_history)
                pipe.hgetall(state.names_key)
                pipe.xrevrange(state.presence_key, count=1)
                stored_in, latest, changes, names, presence = await pipe.execute()
        except RedisErrors as exc:
            raise BackendError(f"Could not read room {room!r} from Redis: {exc}") from exc
        self._check_epoch(epoch, stored_in)
        messages = overlay(room, latest, changes, self.settings.welcome_history)[::-1]
        if room in self._rooms:
            return messages  # read already: everything after where it is comes anyway
        state.last_id = messages[-1].id if messages else 0
        # The stream's own entry of it, as the reader would have delivered it (a tombstone has none).
        stored = latest[0] if latest and message_id(latest[0][0]) == state.last_id else None
        state.last_json = stored[1][b"j"] if stored is not None else b""
        state.presence_at = presence[0][0] if presence else b"0-0"
        state.online = self.presence.online_from(room, names)
        self._rooms[room] = state
        self.reader.add(state)
        return messages

    async def unsubscribe(self, room: str) -> None:
        state = self._rooms.pop(room, None)
        if state is not None:
            self.reader.remove(state)
            self.echoes.let_go(state)

    def _check_epoch(self, epoch: str, stored_in: bytes | None) -> None:
        """What was read at once with the epoch `stored_in` (MULTI) is of `epoch`, the one this
        process was in when it asked, and still is; else it goes unused."""
        if stored_in != epoch.encode():
            self.heartbeat.suspect()
        if stored_in != epoch.encode() or self.epoch != epoch:
            raise BackendError("the chat's history started anew (a new epoch): try again")

    def subscribed(self, room: str) -> bool:
        return room in self._rooms

    def _deliver_message(self, state: RoomState, json: bytes, message: Message) -> None:
        if state.echoes:
            self.echoes.read_back(state, message)
        if state.ahead:
            changed = state.ahead.pop(message.id, None)
            if changed is not None:  # it changed before it was read: its clients see it as it is now
                json, message = changed.json, changed
        if self.subscriber is not None:
            self.subscriber.deliver(state.name, json, message)

    def _changed_entry(self, state: RoomState, fields: dict[bytes, bytes], read_up: bool) -> None:
        """A change of a stored message (scripts.py, `change`), this process's own included."""
        number = int(fields[b"i"])
        message = Message.from_json(state.name, number, fields[b"j"])
        if number <= state.last_id:
            if self.subscriber is not None:
                self.subscriber.changed(state.name, fields[b"c"].decode(), message)
            return
        # The message itself was not read yet: it goes out as it is now, in its place.
        state.ahead[number] = message
        if read_up:
            # Every message was read up to the change, so it is not in the stream any more: it
            # was deleted before it could be read, and its tombstone is all there is of it.
            for ahead in sorted(state.ahead):
                tombstone = state.ahead.pop(ahead)
                if ahead > state.last_id:
                    state.last_id, state.last_json = ahead, b""
                    self._deliver_message(state, tombstone.json, tombstone)

    def _typing_entry(self, state: RoomState, fields: dict[bytes, bytes], read_up: bool) -> None:
        """Someone typing in another process (this one's were told at once)."""
        if fields[b"o"] != self._node_bytes and self.subscriber is not None:
            self.subscriber.ephemeral(state.name, fields[b"k"].decode(), fields[b"e"])

    def ephemeral(self, room: str, key: str, event: bytes) -> None:
        super().ephemeral(room, key, event)
        if not self.writer.backlogged:  # the first thing to drop when Redis is slow
            self.writer.write(("y", room, key, event), wait=False)

    # Messages

    def publish(self, room: str, name: str, text: str, guest: bool = False) -> asyncio.Future[Message]:
        """Settles once the message is stored and, in a room this process reads, read back
        here: a message stored under an epoch that ends before its echo fails instead."""
        state = self._rooms.get(room)
        seen = max(state.last_id, state.written) if state is not None else 0
        stored = self.writer.write(("m", room, wire_middle(room, name, text, guest), str(seen)))
        if state is None:
            return stored  # nobody reads the room here: stored is all there is to wait for
        return self.echoes.wait_for(state, stored)

    @property
    def backlogged(self) -> bool:
        return self.writer.backlogged

    async def pace(self) -> None:
        await self.writer.pace()

    async def history(self, room: str, before: int | None, limit: int) -> tuple[list[Message], bool]:
        return await self.history_reader.before(room, before, limit)

    async def since(self, room: str, after: int, upto: int, limit: int) -> tuple[list[Message], bool]:
        return await self.history_reader.after(room, after, upto, limit)

    async def enforce_retention(self, now: int | None = None) -> int:
        """Delete the messages older than CHAT_RETENTION_DAYS now; returns how many went."""
        return await self.retention.enforce(now)


def _went_back(state: RoomState, last_id: int, last: list[Entry], deleted: bool) -> bool:
    """Whether Redis has older data of the room than this process saw: the room's last id is
    below the highest it knows of, or the message it delivered last is another one, or gone
    while older ones are still there (trimming takes the oldest first) and no tombstone
    says that it was `deleted`."""
    if last_id < max(state.last_id, state.written):
        return True
    if not state.last_id or not last:
        return False
    entry, fields = last[0]
    if message_id(entry) != state.last_id:
        return not deleted
    return fields[b"j"] != state.last_json
