"""`Reader`: the streams of the rooms this process reads, on a connection of its own.

It reads every room's message and presence streams, and the other streams it is told to
follow (the notices, the inboxes of the accounts with connections here), with one XREAD
BLOCK and delivers what it finds, this process's own messages included: every process sees each room's messages
in the same order, the order of their ids. A message stored under another epoch than the
process's is never delivered: the reader tells the backend (`stray`), which finds out
which epoch the chat is in. After a fault it reconnects with backoff, catches up
(`catch_up`, the backend's) and reads on from the last entry it delivered, so it misses
nothing written meanwhile. When the set of rooms changes while a read is blocked, CLIENT
UNBLOCK cuts it short, so that the next read covers the new set.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import redis.asyncio as aioredis
from redis.typing import KeyT, StreamIdT

from app.backends.redis.commands import COMMAND_TIMEOUT, RedisErrors, message_id, stop_task, stream_id
from app.backends.redis.presence import RedisPresence
from app.backends.redis.rooms import RoomState
from app.core.messages import Message

logger = logging.getLogger("chatroom.redis")

BLOCK_MS = 5_000  # a read waits this long for news before it is sent again
READ_COUNT = 1_000  # entries per stream and read
BACKOFF_FIRST, BACKOFF_MAX = 0.05, 5.0  # seconds between reconnection attempts
UNBLOCK_TRIES = 20

Deliver = Callable[[RoomState, bytes, Message], None]
# What the reader does with an entry of a room's presence stream that is not presence (a
# change of a stored message, someone typing): its fields, and whether the room's messages
# have all been read up to where the entry was written (no READ_COUNT cut them short).
RoomEvent = Callable[[RoomState, dict[bytes, bytes], bool], None]


class Reader:
    def __init__(
        self,
        connect: Callable[..., aioredis.Redis],
        redis: Callable[[], aioredis.Redis],
        presence: RedisPresence,
        deliver: Deliver,
        catch_up: Callable[[], Awaitable[None]],
        stray: Callable[[], None],
        room_events: dict[bytes, RoomEvent] | None = None,
    ) -> None:
        self._connect = connect
        self._room_events = room_events or {}  # kind (the entry's `t`) -> what to do
        self._redis = redis  # the backend's client, for CLIENT UNBLOCK and its pool after a fault
        self._presence = presence
        self._deliver = deliver
        self._catch_up = catch_up
        self._stray = stray
        self.epoch = b""  # the process's: messages stored under another are not delivered
        self._streams: dict[KeyT, StreamIdT] = {}  # what is read: stream key -> after which id
        self._by_key: dict[bytes, tuple[RoomState, bool]] = {}  # stream key -> room, whether presence
        self._others: dict[bytes, Callable[[dict[bytes, bytes]], None]] = {}  # other streams, read always
        self.reading = asyncio.Event()  # set while connected and up to date
        self.connection_id: int | None = None  # its connection's CLIENT ID, while connected
        self._changed = asyncio.Event()  # the rooms to read changed
        self._generation = 0  # counts those changes
        self._blocked_on: int | None = None  # the generation a blocked read was sent with
        self._unblocker: asyncio.Task[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def start(self) -> None:
        self._stopping = False
        self._task = asyncio.get_running_loop().create_task(self._read_forever(), name="chatroom redis reader")

    async def stop(self) -> None:
        # redis-py returns an empty reply, as if the block had ended, when a blocked read is
        # cancelled as it times out: the loop must see for itself that it is to stop.
        self._stopping = True
        for task in (self._task, self._unblocker):
            await stop_task(task)

    @property
    def blocked(self) -> bool:
        """Whether a read is under way (sent, or about to be)."""
        return self._blocked_on is not None

    def add(self, state: RoomState) -> None:
        """Read `state`'s streams from where it says, from the next read on."""
        self._streams[state.messages_key] = b"%d-0" % state.last_id
        self._streams[state.presence_key] = state.presence_at
        self._by_key[state.messages_key] = (state, False)
        self._by_key[state.presence_key] = (state, True)
        self._generation += 1
        self._changed.set()
        if self._blocked_on is not None and self._unblocker is None:
            self._unblocker = asyncio.get_running_loop().create_task(self._unblock())

    def listen(self, key: bytes, after: bytes, handle: Callable[[dict[bytes, bytes]], None]) -> None:
        """Read the stream `key` from after `after` for as long as the reader runs; `handle`
        takes each entry's fields. Call before `start`."""
        self._streams[key] = after
        self._others[key] = handle

    def follow(self, key: bytes, after: bytes, handle: Callable[[dict[bytes, bytes]], None]) -> None:
        """Read the stream `key` from after `after` (again, from there, if read already), from
        the next read on, until `unfollow`; `handle` takes each entry's fields."""
        self._streams[key] = after
        self._others[key] = handle
        self._generation += 1
        self._changed.set()
        if self._blocked_on is not None and self._unblocker is None:
            self._unblocker = asyncio.get_running_loop().create_task(self._unblock())

    def unfollow(self, key: bytes) -> bytes | None:
        """Read `key` no more (what a read on its way brings of it is dropped); returns the
        last entry read of it, if it was followed."""
        if self._others.pop(key, None) is None:
            return None
        self._generation += 1
        after = self._streams.pop(key)
        return after if isinstance(after, bytes) else str(after).encode()

    def remove(self, state: RoomState) -> None:
        """Read `state`'s streams no more; the blocked read, if any, lets it go when it returns."""
        for key in (state.messages_key, state.presence_key):
            del self._streams[key]
            del self._by_key[key]
        self._generation += 1  # no need to wake the read: what it brings of this room is dropped

    def moved_presence(self, state: RoomState) -> None:
        """`state.presence_at` was brought forward (a catch-up): read on from there."""
        if state.presence_key in self._streams:
            self._streams[state.presence_key] = state.presence_at

    async def _unblock(self) -> None:
        """Cut the blocked XREAD short (CLIENT UNBLOCK), so that it reads the new set of rooms."""
        try:
            for attempt in range(UNBLOCK_TRIES):
                reader_id = self.connection_id
                if reader_id is None or self._blocked_on is None or self._blocked_on >= self._generation:
                    return
                if await self._redis().client_unblock(reader_id):
                    return
                # The read was sent but has not reached Redis yet: it will, in a moment.
                await asyncio.sleep(0.002 * (attempt + 1))
        except RedisErrors as exc:
            logger.debug("could not unblock the reader: %s", exc)
        finally:
            self._unblocker = None

    async def _read_forever(self) -> None:
        delay = BACKOFF_FIRST
        while not self._stopping:
            connection = self._connect(socket_timeout=BLOCK_MS / 1000 + COMMAND_TIMEOUT, single_connection_client=True)
            try:
                self.connection_id = await connection.client_id()
                await self._catch_up()
                self.reading.set()
                delay = BACKOFF_FIRST
                while not self._stopping:
                    await self._read(connection)
            except RedisErrors as exc:
                if self.reading.is_set():
                    logger.warning("lost Redis (%s); reconnecting", exc or type(exc).__name__)
                    # The pool's idle connections went with it: new ones are made when needed,
                    # instead of the next message failing on a dead one.
                    await self._redis().connection_pool.disconnect(inuse_connections=False)
                self.reading.clear()
            finally:
                self.connection_id = None
                self._blocked_on = None
                await connection.aclose()
            await asyncio.sleep(delay * random.uniform(0.5, 1))
            delay = min(delay * 2, BACKOFF_MAX)

    async def _read(self, connection: aioredis.Redis) -> None:
        if not self._by_key and not self._others:
            self._changed.clear()
            await self._changed.wait()
            return
        self._changed.clear()
        self._blocked_on = self._generation
        try:
            reply = await connection.xread(self._streams, count=READ_COUNT, block=BLOCK_MS)
        finally:
            self._blocked_on = None
        if reply:
            self._dispatch(reply.items() if isinstance(reply, dict) else reply)

    def _dispatch(self, reply: Iterable[Any]) -> None:
        deliver = self._deliver
        reply = list(reply)
        cut_short = {stream for stream, entries in reply if len(entries) >= READ_COUNT}
        for stream, entries in reply:
            found = self._by_key.get(stream)
            if found is None:
                handle = self._others.get(stream)
                if handle is not None and entries:
                    for _, fields in entries:
                        handle(fields)
                    if self._others.get(stream) is handle:  # not let go, or followed afresh, meanwhile
                        self._streams[stream] = entries[-1][0]
                continue  # or a room let go while the read was on its way
            state, presence = found
            if presence:
                read_up = state.messages_key not in cut_short
                for entry, fields in entries:
                    event = self._room_events.get(fields.get(b"t", b""))
                    if event is None:
                        self._presence.entry(state, entry, fields)
                    elif stream_id(entry) > stream_id(state.presence_at):
                        state.presence_at = entry
                        event(state, fields, read_up)
                self._streams[stream] = state.presence_at
                continue
            room, epoch = state.name, self.epoch
            for entry, fields in entries:
                number = message_id(entry)
                if number <= state.last_id:
                    continue  # the welcome had it (the room was subscribed again meanwhile)
                state.last_id = number
                state.last_json = json = fields[b"j"]
                if fields.get(b"E", epoch) != epoch:
                    # Stored under another epoch: not for clients welcomed in this one.
                    self._stray()
                    continue
                deliver(state, json, Message.from_json(room, number, json))
            self._streams[stream] = b"%d-0" % state.last_id
