"""`redis://HOST:PORT/DB`: many processes, on many hosts, behaving as one chat through one Redis.

Each room's messages go through a Redis Stream (app/backends/redis/scripts.py has the keys).
Writes are grouped as with SQLite: whatever is published during one turn of the event loop
goes to Redis in one pipeline of scripts, and a message counts as sent once its script ran.
Every process reads the streams of the rooms it has clients in on a connection of its own
(XREAD BLOCK) and delivers them locally, its own messages included: every process sees each
room's messages in the same order, the order of their ids. After a fault it reconnects with
backoff and reads on from the last entry it delivered, so it misses nothing written meanwhile.

Presence: names are claimed in Redis, so they are unique across processes, and every claim
or release writes a join or leave into the room's presence stream in the same script. Each
process keeps its own copy of who is online in its rooms, changed exactly when it delivers
a join or leave to its clients, so a welcome's `online` and the events after it fit together.
Processes send heartbeats; one that stops sending them is taken for dead after
`presence_ttl` seconds, and the first other process to notice announces its users' leaves.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

try:
    import redis.asyncio as aioredis
    from redis.backoff import NoBackoff
    from redis.exceptions import NoScriptError, RedisError
    from redis.retry import Retry
    from redis.typing import KeyT, StreamIdT
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError("redis:// needs the redis client: pip install 'chatroom[redis]'") from exc

from app.backends.base import Backend, BackendError, Deliver, Evict
from app.backends.redis import scripts
from app.core.messages import Message
from app.core.names import name_key
from app.core.protocol import join_event, leave_event
from app.settings import Settings

logger = logging.getLogger("chatroom.redis")

PREFIX = scripts.PREFIX.encode()
EPOCH_KEY = PREFIX + b"epoch"
IDS_KEY = PREFIX + b"ids"
RETENTION_KEY = PREFIX + b"retention"  # held by the process running this interval's retention pass

BLOCK_MS = 5_000  # a read waits this long for news before it is sent again
READ_COUNT = 1_000  # entries per stream and read
OPS_PER_SCRIPT = 200  # a script runs alone in Redis: keep each one short
PRESENCE_MAXLEN = 1_000  # entries kept in a room's presence stream (approximately)
COMMAND_TIMEOUT = 5.0  # seconds a command may take before Redis counts as unreachable
CONNECT_TIMEOUT = 2.0
BACKOFF_FIRST, BACKOFF_MAX = 0.05, 5.0  # seconds between reconnection attempts
UNBLOCK_TRIES = 20
RETENTION_INTERVAL = 60.0  # seconds between two retention passes, over all processes
RETENTION_CHUNK = 1_000  # messages one retention script looks at: a script runs alone in Redis
NO_TOKEN = "-"  # noqa: S105 - the token hash of a name nobody may take over: no SHA-256 digest is this

_RedisErrors = (RedisError, OSError, TimeoutError)
_Entry = tuple[bytes, dict[bytes, bytes]]  # a stream entry as redis-py reads it: id, fields


@dataclass(eq=False)
class _Room:
    """What this process knows of a room it reads."""

    name: str
    messages_key: bytes
    presence_key: bytes
    names_key: bytes
    last_id: int = 0  # the last message delivered
    presence_at: bytes = b"0-0"  # the last presence entry taken into `online`
    # Who is online as this process's clients were told: name key -> name, in the order they came.
    online: dict[str, str] = field(default_factory=dict)


@dataclass(eq=False, slots=True)
class _Op:
    """One operation of the WRITE script, waiting for the next batch."""

    args: tuple[bytes | str, ...]
    done: asyncio.Future[Any] | None  # None: a release, which nobody waits for
    size: int = 0


class _Script:
    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()  # noqa: S324 - Redis names scripts by SHA-1


WRITE, BEAT, GOODBYE = _Script(scripts.WRITE), _Script(scripts.BEAT), _Script(scripts.GOODBYE)
EXPIRE = _Script(scripts.EXPIRE)


def _stream_id(entry: bytes) -> tuple[int, int]:
    milliseconds, _, sequence = entry.partition(b"-")
    return int(milliseconds), int(sequence or 0)


def _message_id(entry: bytes) -> int:
    return int(entry.partition(b"-")[0])


def _token_hash(token: str | None) -> str:
    """What Redis keeps of a token: enough to check one, not to show one."""
    if token is None:
        return NO_TOKEN
    return hashlib.sha256(token.encode()).hexdigest()


class RedisBackend(Backend):
    def __init__(self, url: str, settings: Settings) -> None:
        super().__init__(url, settings)
        self.node = secrets.token_hex(8)  # this process, for presence
        self._node = self.node.encode()
        self._redis: aioredis.Redis | None = None
        self._rooms: dict[str, _Room] = {}
        self._streams: dict[KeyT, StreamIdT] = {}  # what the reader reads: stream key -> after which id
        self._by_key: dict[bytes, tuple[_Room, bool]] = {}  # stream key -> room, whether presence
        self._claims: dict[str, dict[str, str]] = {}  # names held here: room -> key -> name
        # Writing, as the SQLite backend does: one batch at a time, the next one gathering meanwhile.
        self._pending: list[_Op] = []
        self._unreleased: list[_Op] = []  # releases that failed: first in the next batch
        self._pending_size = 0
        self._max_pending_size = settings.queue_bytes // 4
        self._writer: asyncio.Task[None] | None = None
        self._written = asyncio.Event()
        self._failures = 0  # writes that failed since the last one that did not: logged once
        # Reading.
        self._reader: asyncio.Task[None] | None = None
        self._reader_id: int | None = None  # its connection's CLIENT ID, while connected
        self._reading: asyncio.Event = asyncio.Event()  # set while connected and up to date
        self._changed = asyncio.Event()  # the rooms to read changed
        self._generation = 0  # counts those changes
        self._blocked_on: int | None = None  # the generation a blocked read was sent with
        self._unblocker: asyncio.Task[None] | None = None
        self._heart: asyncio.Task[None] | None = None
        self._expiry: asyncio.Task[None] | None = None
        self._problem: str | None = None  # a fault that reconnecting cannot mend
        self._tasks: set[asyncio.Task[None]] = set()
        self._maxlen = str(settings.retention_messages)
        self._presence_maxlen = str(PRESENCE_MAXLEN)

    # Life cycle

    def _connect(self, **options: Any) -> aioredis.Redis:
        # No retries inside the client: a script that failed may have run, and running it
        # twice would store a message twice. Faults are handled here, each where it happens.
        return aioredis.Redis.from_url(
            self.url,
            protocol=2,
            retry=Retry(NoBackoff(), 0),
            socket_connect_timeout=CONNECT_TIMEOUT,
            socket_keepalive=True,
            **options,
        )

    async def start(self, deliver: Deliver, evict: Evict | None = None) -> None:
        await super().start(deliver, evict)
        self._redis = self._connect(socket_timeout=COMMAND_TIMEOUT)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.set(EPOCH_KEY, self.epoch, nx=True)  # the first process ever names the epoch
                pipe.get(EPOCH_KEY)
                _, epoch = await pipe.execute()
            self.epoch = epoch.decode()
            await self._beat()
        except _RedisErrors as exc:
            await self._redis.aclose()
            raise RuntimeError(f"Redis at {self.url} cannot be used: {exc}") from exc
        loop = asyncio.get_running_loop()
        self._reader = loop.create_task(self._read_forever(), name="chatroom redis reader")
        self._heart = loop.create_task(self._beat_forever(), name="chatroom redis heartbeat")
        if self.settings.retention_days:
            self._expiry = loop.create_task(self._expire_forever(), name="chatroom redis retention")
        try:
            async with asyncio.timeout(COMMAND_TIMEOUT):
                await self._reading.wait()
        except TimeoutError:
            logger.warning("Redis answered, but reading from it has not started yet; going on")

    async def stop(self) -> None:
        for task in (self._expiry, self._heart, self._reader, self._unblocker, *self._tasks):
            if task is not None:
                task.cancel()
                await asyncio.wait([task])
        if self._writer is not None:
            await asyncio.wait([self._writer])  # what was accepted gets to Redis
        if self._redis is not None:
            try:
                await self._run(GOODBYE, [scripts.PREFIX, self.node, self._presence_maxlen])
            except _RedisErrors as exc:
                logger.warning("could not say goodbye to Redis (presence expires by itself): %s", exc)
            await self._redis.aclose()
        await super().stop()

    async def check(self) -> str | None:
        if self._problem is not None:
            return self._problem
        if not self._reading.is_set():
            return "reconnecting to Redis"
        assert self._redis is not None
        try:
            async with asyncio.timeout(1):
                await self._redis.ping()
        except _RedisErrors as exc:
            return f"Redis does not answer: {exc or type(exc).__name__}"
        return None

    # Rooms

    async def subscribe(self, room: str) -> list[Message]:
        """Read the room's latest messages, who is online and where its streams are, all at one
        instant (MULTI), then read its streams from there."""
        assert self._redis is not None
        encoded = room.encode()
        state = _Room(
            room, PREFIX + b"messages:" + encoded, PREFIX + b"presence:" + encoded, PREFIX + b"names:" + encoded
        )
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.xrevrange(state.messages_key, count=self.settings.welcome_history)
                pipe.hgetall(state.names_key)
                pipe.xrevrange(state.presence_key, count=1)
                latest, names, presence = await pipe.execute()
        except _RedisErrors as exc:
            raise BackendError(f"Could not read room {room!r} from Redis: {exc}") from exc
        messages = [Message.from_json(room, _message_id(entry), fields[b"j"]) for entry, fields in reversed(latest)]
        if room in self._rooms:
            return messages  # read already: everything after where it is comes anyway
        state.last_id = messages[-1].id if messages else 0
        state.presence_at = presence[0][0] if presence else b"0-0"
        state.online = self._online_from(room, names)
        self._rooms[room] = state
        self._streams[state.messages_key] = b"%d-0" % state.last_id
        self._streams[state.presence_key] = state.presence_at
        self._by_key[state.messages_key] = (state, False)
        self._by_key[state.presence_key] = (state, True)
        self._rooms_changed()
        return messages

    async def unsubscribe(self, room: str) -> None:
        self._forget(room)
        self._generation += 1  # the reader lets the room go at its next read; no need to wake it

    def _forget(self, room: str) -> None:
        state = self._rooms.pop(room, None)
        if state is not None:
            for key in (state.messages_key, state.presence_key):
                del self._streams[key]
                del self._by_key[key]

    def _online_from(self, room: str, names: dict[bytes, bytes]) -> dict[str, str]:
        """Who is online, from a copy of `names:ROOM`; this process's own names as it knows them."""
        ours = self._claims.get(room, {})
        others: list[tuple[tuple[int, int], str, str]] = []
        for key, value in names.items():
            node, entry, name = value.split(b"\n", 2)
            if node != self._node:
                others.append((_stream_id(entry), key.decode(), name.decode()))
        online = {key: name for _, key, name in sorted(others) if key not in ours}
        online.update(ours)
        return online

    # Presence

    async def claim(self, room: str, key: str, name: str, token: str | None = None) -> bool:
        claimed = self._write(("c", room, key, name, join_event(name), leave_event(name), _token_hash(token)))
        try:
            taken = bool(await asyncio.shield(claimed))
        except asyncio.CancelledError:
            # The newcomer is gone, but its claim may yet succeed: let the name go if so.
            claimed.add_done_callback(lambda done: self._undo_claim(done, room, key, name))
            raise
        if taken:
            self._claims.setdefault(room, {})[key] = name
        return taken

    def _undo_claim(self, claimed: asyncio.Future[Any], room: str, key: str, name: str | None) -> None:
        if not claimed.cancelled() and claimed.exception() is None and claimed.result():
            self._write(("r", room, key, leave_event(name or claimed.result())), wait=False)

    async def take_over(self, room: str, key: str, token: str, new_token: str) -> str | None:
        taken = self._write(("o", room, key, _token_hash(token), _token_hash(new_token)))
        try:
            name: str | None = await asyncio.shield(taken)
        except asyncio.CancelledError:
            taken.add_done_callback(lambda done: self._undo_claim(done, room, key, None))
            raise
        if name is not None:
            self._claims.setdefault(room, {})[key] = name
        return name

    def retoken(self, room: str, key: str, token: str) -> None:
        self._write(("t", room, key, _token_hash(token)), wait=False)

    def release(self, room: str, key: str, name: str) -> None:
        held = self._claims.get(room)
        if held is not None:
            held.pop(key, None)
            if not held:
                del self._claims[room]
        self._write(("r", room, key, leave_event(name)), wait=False)

    def online(self, room: str) -> list[str] | None:
        state = self._rooms.get(room)
        return list(state.online.values()) if state is not None else None

    def announce(self, room: str, event: bytes) -> None:
        state = self._rooms.get(room)
        if state is None or self._deliver is None:
            return
        # Joins and leaves are rare next to messages: reading the name back costs nothing that matters.
        fields = orjson.loads(event)
        key = name_key(fields["name"])
        if fields["type"] == "join":
            state.online[key] = fields["name"]
        else:
            state.online.pop(key, None)
        self._deliver(room, event, None)

    async def _beat(self) -> bool:
        """Keep this process's presence alive; True if it had expired. Checks the epoch too."""
        ttl = str(int(self.settings.presence_ttl * 1000))
        absent, epoch = await self._run(BEAT, [scripts.PREFIX, self.node, ttl, self._presence_maxlen])
        if epoch is None:
            await self._history_lost("Redis lost the chat's data", new_epoch=True)
        elif epoch != self.epoch.encode():
            await self._history_lost("another chatroom process found that Redis lost data", new_epoch=False)
        return bool(absent)

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
            assert self._redis is not None
            await self._redis.set(EPOCH_KEY, secrets.token_hex(8))

    async def _beat_forever(self) -> None:
        interval = self.settings.presence_ttl / 4
        while True:
            await asyncio.sleep(interval)
            try:
                swept = await self._beat()
            except _RedisErrors as exc:
                logger.debug("heartbeat failed: %s", exc)
                continue
            if swept and self._claims:
                await self._claim_again()

    async def _claim_again(self) -> None:
        """Another process took this one for dead and announced its users' leaves: claim
        their names again (its own clients were never told they left)."""
        logger.warning("this process's presence had expired in Redis; claiming its names again")
        for room, held in list(self._claims.items()):
            for key, name in list(held.items()):
                # The token of the connection holding it is not kept here: until that
                # connection's successor comes, nobody may take the name over.
                claimed = self._write(("c", room, key, name, join_event(name), leave_event(name), NO_TOKEN))
                try:
                    if not await claimed:
                        logger.warning("%r in room %r was taken meanwhile by another process", name, room)
                except BackendError:
                    return  # Redis is out of reach again: the next heartbeat tries again

    # Writing

    @property
    def backlogged(self) -> bool:
        return self._pending_size >= self._max_pending_size

    async def ready(self) -> None:
        while self._pending_size >= self._max_pending_size:
            self._written.clear()
            await self._written.wait()

    def publish(self, room: str, name: str, text: str) -> asyncio.Future[Message]:
        dumps = orjson.dumps
        tail = b"".join((b',"room":', dumps(room), b',"name":', dumps(name), b',"text":', dumps(text), b',"ts":'))
        return self._write(("m", room, tail))

    def _write(self, args: tuple[bytes | str, ...], wait: bool = True) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Any] = loop.create_future()
        size = sum(len(arg) for arg in args)
        self._pending.append(_Op(args, done if wait else None, size))
        self._pending_size += size
        self._start_writer()
        return done

    def _start_writer(self) -> None:
        if self._writer is None and (self._pending or self._unreleased):
            self._writer = asyncio.get_running_loop().create_task(self._write_pending(), name="chatroom redis writer")

    async def _write_pending(self) -> None:
        try:
            while self._pending or self._unreleased:
                # Releases that failed go first: a name let go here may be claimed again next.
                batch, self._unreleased, self._pending = self._unreleased + self._pending, [], []
                self._pending_size = 0
                try:
                    results = await self._run_ops(batch)
                except Exception as exc:
                    if not isinstance(exc, _RedisErrors):
                        logger.exception("writing to Redis failed")
                    results = [exc] * len(batch)  # the connection failed: any of it may have run
                finally:
                    self._written.set()
                for op, result in zip(batch, results, strict=True):
                    if isinstance(result, BaseException):
                        self._failed(op, result)
                        continue
                    self._failures = 0
                    if op.done is not None and not op.done.done():
                        op.done.set_result(result)
                if self._unreleased and not self._pending:
                    break  # releases that failed wait for the reader to reconnect
        finally:
            self._written.set()
            self._writer = None

    async def _run_ops(self, batch: list[_Op]) -> list[Any]:
        """Apply `batch` in order, in as few round trips as possible; one result per operation,
        or the error of the script it was part of."""
        head = [scripts.PREFIX, self.node, self._maxlen, self._presence_maxlen]
        chunks = [batch[start : start + OPS_PER_SCRIPT] for start in range(0, len(batch), OPS_PER_SCRIPT)]
        calls: list[list[Any]] = [head + [arg for op in chunk for arg in op.args] for chunk in chunks]
        replies = await self._run_many(WRITE, calls, raise_on_error=False)
        results: list[Any] = []
        for chunk, reply in zip(chunks, replies, strict=True):
            if isinstance(reply, Exception):
                results.extend([reply] * len(chunk))
                continue
            ts = reply[0]
            for op, result in zip(chunk, reply[1:], strict=True):
                if op.args[0] == "m":
                    tail = op.args[2]
                    assert isinstance(tail, bytes)
                    json = b'{"type":"message","id":%d%s%s}' % (result, tail, ts)
                    results.append(Message.from_json(str(op.args[1]), int(result), json))
                elif op.args[0] == "o":
                    results.append(result.decode() if isinstance(result, bytes) else None)
                else:
                    results.append(bool(result))
        return results

    def _failed(self, op: _Op, exc: BaseException) -> None:
        kind = op.args[0]
        if self._failures == 0 or kind != "m":
            logger.warning("could not write to Redis (%s): %s", kind, exc or type(exc).__name__)
        self._failures += 1
        if kind == "r":
            self._unreleased.append(op)  # a name must not stay held by nobody
        elif kind == "c" and op.args[2] not in self._claims.get(str(op.args[1]), {}):
            # The script may have run before the connection broke: let the name go again. (A
            # name claimed again after a sweep stays claimed: the next heartbeat retries it.)
            room, key, name = op.args[1], op.args[2], op.args[3]
            self._unreleased.append(_Op(("r", room, key, leave_event(str(name))), None))
        elif kind == "o":
            # It may have run too, and the name be this process's with nobody to hold it; the
            # name itself is unknown, so the process it came from announces no leave (see
            # _presence_entry) and this one lets it go with the leave it was stored with.
            self._unreleased.append(_Op(("r", op.args[1], op.args[2], b""), None))
        if op.done is not None and not op.done.done():
            op.done.set_exception(BackendError(f"Redis did not take it: {exc}"))

    async def _run(self, script: _Script, args: list[str]) -> Any:
        (reply,) = await self._run_many(script, [args])
        return reply

    async def _run_many(self, script: _Script, calls: list[list[Any]], raise_on_error: bool = True) -> list[Any]:
        """Run `script` once per argument list, in one round trip, loading it first if Redis
        does not know it (a restarted Redis has forgotten every script). Errors of single
        calls are raised, or returned in their place if not `raise_on_error`."""
        assert self._redis is not None
        replies: list[Any] = []
        for attempt in range(2):
            async with self._redis.pipeline(transaction=False) as pipe:
                for args in calls:
                    pipe.evalsha(script.sha, 0, *args)
                replies = await pipe.execute(raise_on_error=False)
            if attempt == 0 and any(isinstance(reply, NoScriptError) for reply in replies):
                # NOSCRIPT means the script did not run at all: running it now is safe.
                await self._redis.script_load(script.source)
                redo = [index for index, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
                if len(redo) < len(calls):
                    again = await self._run_many(script, [calls[index] for index in redo], raise_on_error)
                    for index, reply in zip(redo, again, strict=True):
                        replies[index] = reply
                    break
                continue
            break
        for reply in replies:
            if raise_on_error and isinstance(reply, Exception):
                raise reply
        return replies

    # History

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
        assert self._redis is not None
        try:
            rows: list[_Entry] = await self._redis.xrevrange(  # type: ignore[assignment]
                PREFIX + b"messages:" + room.encode(), newest, oldest, count
            )
        except _RedisErrors as exc:
            raise BackendError(f"Could not read the history of {room!r} from Redis: {exc}") from exc
        return [Message.from_json(room, _message_id(entry), fields[b"j"]) for entry, fields in rows]

    # Retention. CHAT_RETENTION_MESSAGES is enforced as messages are written (MAXLEN);
    # CHAT_RETENTION_DAYS by a pass every RETENTION_INTERVAL, run by one process of them all.

    async def enforce_retention(self, now: int | None = None) -> int:
        """Delete the messages older than CHAT_RETENTION_DAYS; returns how many went.

        `now` is in milliseconds on Redis's clock, the one that stamped the messages; by
        default, Redis's time. Works in short scripts, room by room.
        """
        assert self._redis is not None
        if now is None:
            seconds, microseconds = await self._redis.time()
            now = seconds * 1000 + microseconds // 1000
        cutoff = str(now - int(self.settings.retention_days * 86_400_000))
        deleted = 0
        rooms: list[bytes] = await self._redis.hkeys(IDS_KEY)  # type: ignore[assignment]
        for room in rooms:
            more = True
            while more:
                count, more = await self._run(EXPIRE, [scripts.PREFIX, room.decode(), cutoff, str(RETENTION_CHUNK)])
                deleted += count
        return deleted

    async def _take_retention_turn(self) -> bool:
        """Whether this process runs this interval's pass: the first to ask does."""
        assert self._redis is not None
        hold = int(RETENTION_INTERVAL * 900)  # ms: let go before the next interval begins
        return bool(await self._redis.set(RETENTION_KEY, self.node, nx=True, px=hold))

    async def _expire_forever(self) -> None:
        while True:
            try:
                if await self._take_retention_turn():
                    started = time.monotonic()
                    deleted = await self.enforce_retention()
                    if deleted:
                        logger.info("retention: deleted %d messages in %.2f s", deleted, time.monotonic() - started)
            except _RedisErrors as exc:
                logger.warning("retention pass failed (the next one tries again): %s", exc)
            await asyncio.sleep(RETENTION_INTERVAL)

    # Reading

    def _rooms_changed(self) -> None:
        self._generation += 1
        self._changed.set()
        if self._blocked_on is not None and self._unblocker is None:
            self._unblocker = asyncio.get_running_loop().create_task(self._unblock_reader())

    async def _unblock_reader(self) -> None:
        """Cut the reader's blocked XREAD short (CLIENT UNBLOCK), so that it reads the new set of rooms."""
        assert self._redis is not None
        try:
            for attempt in range(UNBLOCK_TRIES):
                reader_id = self._reader_id
                if reader_id is None or self._blocked_on is None or self._blocked_on >= self._generation:
                    return
                if await self._redis.client_unblock(reader_id):
                    return
                # The read was sent but has not reached Redis yet: it will, in a moment.
                await asyncio.sleep(0.002 * (attempt + 1))
        except _RedisErrors as exc:
            logger.debug("could not unblock the reader: %s", exc)
        finally:
            self._unblocker = None

    async def _read_forever(self) -> None:
        delay = BACKOFF_FIRST
        while True:
            connection = self._connect(socket_timeout=BLOCK_MS / 1000 + COMMAND_TIMEOUT, single_connection_client=True)
            try:
                self._reader_id = await connection.client_id()
                await self._catch_up()
                self._reading.set()
                delay = BACKOFF_FIRST
                while True:
                    await self._read(connection)
            except _RedisErrors as exc:
                if self._reading.is_set():
                    logger.warning("lost Redis (%s); reconnecting", exc or type(exc).__name__)
                    # The pool's idle connections went with it: new ones are made when needed,
                    # instead of the next message failing on a dead one.
                    assert self._redis is not None
                    await self._redis.connection_pool.disconnect(inuse_connections=False)
                self._reading.clear()
            finally:
                self._reader_id = None
                self._blocked_on = None
                await connection.aclose()
            await asyncio.sleep(delay * random.uniform(0.5, 1))
            delay = min(delay * 2, BACKOFF_MAX)

    async def _read(self, connection: aioredis.Redis) -> None:
        if not self._streams:
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
        assert deliver is not None
        for stream, entries in reply:
            found = self._by_key.get(stream)
            if found is None:
                continue  # a room let go while the read was on its way
            state, presence = found
            if presence:
                for entry, fields in entries:
                    self._presence_entry(state, entry, fields)
                continue
            room = state.name
            for entry, fields in entries:
                message_id = _message_id(entry)
                if message_id <= state.last_id:
                    continue  # the welcome had it (the room was subscribed again meanwhile)
                state.last_id = message_id
                json = fields[b"j"]
                deliver(room, json, Message.from_json(room, message_id, json))
            self._streams[stream] = b"%d-0" % state.last_id

    def _presence_entry(self, state: _Room, entry: bytes, fields: dict[bytes, bytes]) -> None:
        if _stream_id(entry) <= _stream_id(state.presence_at):
            return
        state.presence_at = self._streams[state.presence_key] = entry
        if fields[b"o"] == self._node:
            return  # ours: our clients were told when it happened
        key = fields[b"k"].decode()
        if fields[b"t"] == b"move":
            self._moved(state, key, fields)
            return
        if key in self._claims.get(state.name, ()):
            return  # a name held here: only this process tells its clients about it
        if fields[b"t"] == b"join":
            if key in state.online:
                return
            state.online[key] = fields[b"n"].decode()
        elif state.online.pop(key, None) is None:
            return
        assert self._deliver is not None
        self._deliver(state.name, fields[b"e"], None)

    def _moved(self, state: _Room, key: str, fields: dict[bytes, bytes]) -> None:
        """A newer connection of the same client, in process `o`, took the name over from its
        connection in process `f`: nobody left. If that was here, the old connection goes."""
        if fields[b"f"] == self._node:
            held = self._claims.get(state.name)
            if held is not None and held.pop(key, None) is not None and not held:
                del self._claims[state.name]
            if self._evict is not None:
                self._evict(state.name, key)
        if key not in state.online:
            # Its old connection had left here meanwhile, and that was told: it is back.
            name = fields[b"n"].decode()
            state.online[key] = name
            assert self._deliver is not None
            self._deliver(state.name, join_event(name), None)

    async def _catch_up(self) -> None:
        """After a reconnection: check that Redis kept its data (`_beat`), claim what must be
        claimed again, and bring each room's copy of who is online up to date.

        Messages need nothing: the reader goes on from the last one it delivered.
        """
        assert self._redis is not None
        if await self._beat() and self._claims:
            task = asyncio.get_running_loop().create_task(self._claim_again())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        for state in list(self._rooms.values()):
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hgetall(state.names_key)
                pipe.xrevrange(state.presence_key, count=1)
                pipe.hget(IDS_KEY, state.name)
                names, presence, last_id = await pipe.execute()
            if self._rooms.get(state.name) is not state:
                continue
            if int(last_id or 0) < state.last_id:
                reason = f"Redis came back with older data (room {state.name!r} went back in time)"
                await self._history_lost(reason, new_epoch=True)
            online = self._online_from(state.name, names)
            # Tell this process's clients what changed while it was away, as if it had just happened.
            for key, name in list(state.online.items()):
                if key not in online:
                    self.announce(state.name, leave_event(name))
            for key, name in online.items():
                if key not in state.online:
                    self.announce(state.name, join_event(name))
            state.online = online
            if presence:
                state.presence_at = self._streams[state.presence_key] = presence[0][0]
        self._start_writer()  # releases that failed while Redis was away
