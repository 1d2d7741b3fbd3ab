"""`Hub` and `Room`: who is in which room, presence, and fan-out. No web framework here.

Fan-out is batched per room: every event a room receives until its writer task next runs
is joined into one frame, serialised once, and handed to each member once. However many
messages arrive together, each member costs one write.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from app.core.client import Client, new_token
from app.core.names import DEFAULT_ROOM, clean_name, clean_room, guest_name, name_key
from app.core.protocol import (
    MAX_ID,
    BadRequest,
    CloseCode,
    ErrorCode,
    error_event,
    frames_of,
    history_event,
    join_event,
    leave_event,
    welcome_event,
)
from app.core.sockets import Connection, Sink

if TYPE_CHECKING:
    from app.backends.base import Backend
    from app.core.messages import Message
    from app.settings import Settings

logger = logging.getLogger("chatroom")

PRESENCE_DELAY = 0.1  # seconds a join or leave may wait to share a frame with others
GUEST_TRIES = 5  # guest names drawn before giving up, should other processes hold each one

_Answer = TypeVar("_Answer")


class NameTaken(Exception):
    """The screen name is already online in the room."""


@dataclass(frozen=True, slots=True)
class Resume:
    """A resuming client's welcome is waiting for history: the messages after `after`, up to
    `upto` (what the room had when the client came), and who was online then."""

    after: int
    upto: int
    online: list[str]


class Room:
    """The members of one room in this process, and the events on their way to them.

    The room's writer task sends its fan-out: every event the room received since it last
    ran is joined into frames (serialised once, under MAX_BATCH each) and delivered to each
    member once. It is also the one writer of members whose socket is a `Sink`.
    """

    def __init__(
        self, name: str, epoch: str, recent_size: int, store_pending: Callable[[], None] = lambda: None
    ) -> None:
        self.name = name
        self.epoch = epoch
        self._store_pending = store_pending
        # Everyone holding a name here, in the order they came; `clients` get every frame.
        self.members: dict[str, Client] = {}
        self.clients: dict[str, Client] = {}
        self.recent_size = recent_size
        self.recent: deque[Message] = deque(maxlen=recent_size)
        loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[None] = loop.create_future()
        self.waiting = 0  # joins awaiting `opened`
        self._events: list[bytes] = []
        self._messages: list[Message] = []
        # Welcomed while events were pending: (client, how many of them its welcome covers).
        self._newcomers: list[tuple[Client, int]] = []
        self._due = False  # pending events go out at the writer's next turn
        self._presence_timer: asyncio.TimerHandle | None = None
        self._ready: list[Client] = []  # members whose own frames wait for their sink
        self._closing: tuple[int, str] | None = None  # close everyone after the next flush
        self._wake = asyncio.Event()
        self._writer = loop.create_task(self._write_forever(), name=f"chatroom room {name}")
        # Members far behind (Client.lagging): senders wait until they catch up (`drained`).
        self._lagging: set[Client] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()

    @property
    def empty(self) -> bool:
        return not self.members and not self.waiting

    def post(self, event: bytes, message: Message | None) -> None:
        """Queue an event for every member.

        A chat message goes out at the writer's next turn. Presence waits up to
        PRESENCE_DELAY for company: when hundreds connect at once, each member gets a few
        frames of joins instead of one frame per join. Events never overtake each other.
        """
        self._events.append(event)
        if message is not None:
            self._messages.append(message)
            self._make_due()
        elif not self._due and self._presence_timer is None:
            self._presence_timer = asyncio.get_running_loop().call_later(PRESENCE_DELAY, self._make_due)

    def _make_due(self) -> None:
        if self._presence_timer is not None:
            self._presence_timer.cancel()
            self._presence_timer = None
        self._due = True
        self._wake.set()

    def expect(self) -> None:
        """A message of this room waits to be stored: the writer's next turn stores it, then sends it."""
        self._due = True
        self._wake.set()

    def ready(self, client: Client) -> None:
        """`client` has frames of its own for its sink, or a close to send."""
        if not client.ready:
            client.ready = True
            self._ready.append(client)
            self._wake.set()

    def close_all(self, code: int, reason: str) -> list[Client]:
        """Close every member once the events already posted have reached them."""
        self._closing = (code, reason)
        self._make_due()
        return list(self.members.values())

    async def _write_forever(self) -> None:
        wake = self._wake
        while True:
            await wake.wait()
            wake.clear()
            try:
                if self._due:
                    # What was published since the last turn goes out in this one, not the next.
                    self._store_pending()
                    self.flush()
                if self._closing is not None:
                    for client in list(self.members.values()):
                        client.close(*self._closing)
                ready, self._ready = self._ready, []
                for client in ready:
                    client.ready = False
                    client.drain()
            except Exception:  # a bug here must not silence the room for good
                logger.exception("room %s: writing failed", self.name)

    async def stop(self) -> None:
        self._writer.cancel()
        if self._presence_timer is not None:
            self._presence_timer.cancel()
        await asyncio.wait([self._writer])

    def admit(
        self, client: Client, since: int | None, replay_limit: int, stale: bool = False, online: list[str] | None = None
    ) -> Resume | None:
        """Make `client` a member and queue its welcome, which covers the pending events.

        Without `since`, the welcome holds the latest messages (with `gap` set if the client
        resumes from a `stale` epoch). With it, the messages after `since`: when this room's
        recent messages do not reach back that far, the client is held and a `Resume`
        returned, saying what the hub must read from the backend. `online` is who is in the
        room in every process, when the backend knows better than this room's members.
        """
        self.members[client.key] = client
        if online is None:
            online = [member.name for member in self.members.values()]
        known = [*self.recent, *self._messages]
        if since is None:
            client.push(self.welcome(client, online, known[-self.recent_size :], gap=True if stale else None))
        elif not known or known[0].id <= since or len(self.recent) < self.recent_size:
            # Everything after `since` is here: the backend had no more when we subscribed.
            newer = [message for message in known if message.id > since]
            client.push(self.welcome(client, online, newer[-replay_limit:], gap=len(newer) > replay_limit))
            since = None
        else:
            client.hold()
        if self._events:
            self._newcomers.append((client, len(self._events)))
        else:
            self.clients[client.key] = client
        return None if since is None else Resume(since, known[-1].id, online)

    def welcome(self, client: Client, online: list[str], history: list[Message], gap: bool | None = None) -> bytes:
        history_json = [message.json for message in history]
        return welcome_event(client.name, self.name, self.epoch, client.token, online, history_json, gap)

    @property
    def waiting_on(self) -> bool:
        """Whether a member is so far behind that senders should wait for it."""
        return bool(self._lagging)

    def lagging(self, client: Client) -> None:
        self._lagging.add(client)
        self._flowing.clear()

    def caught_up(self, client: Client) -> None:
        self._lagging.discard(client)
        if not self._lagging:
            self._flowing.set()

    async def drained(self, stall_timeout: float) -> None:
        """Wait until no member is far behind.

        A member that falls behind because the server is busy, or because it reads slowly,
        slows the senders down to its pace; one whose socket took nothing for
        `stall_timeout` has stopped reading and is closed, so the room goes on without it.
        """
        loop = asyncio.get_running_loop()
        while self._lagging:
            try:
                async with asyncio.timeout(stall_timeout):
                    await self._flowing.wait()
            except TimeoutError:
                now = loop.time()
                for client in tuple(self._lagging):
                    if client.stalled(now):
                        client.close(CloseCode.TRY_AGAIN_LATER, "Too slow: stopped reading")

    def hand_over(self, holder: Client) -> None:
        """`holder`'s name passes to a newer connection of the same client, admitted next in
        its place among the members: the others are told nothing, as nobody left."""
        self.caught_up(holder)
        if self.clients.get(holder.key) is holder:
            del self.clients[holder.key]
        self._newcomers = [(client, count) for client, count in self._newcomers if client is not holder]

    def remove(self, client: Client) -> bool:
        """Take the client out; False if it was not a member (already gone)."""
        self.caught_up(client)
        if self.members.get(client.key) is not client:
            return False
        del self.members[client.key]
        if self.clients.get(client.key) is client:
            del self.clients[client.key]
        return True

    def flush(self) -> None:
        """Send every pending event to every client; called by the writer."""
        self._due = False
        if self._presence_timer is not None:
            self._presence_timer.cancel()
            self._presence_timer = None
        events, self._events = self._events, []
        if self._messages:
            self.recent.extend(self._messages)
            self._messages = []
        if events:
            clients = tuple(self.clients.values())
            for frame in frames_of(events):
                for client in clients:
                    client.deliver(frame)
        if self._newcomers:
            for client, covered in self._newcomers:
                if self.members.get(client.key) is client:
                    for frame in frames_of(events[covered:]) if covered < len(events) else ():
                        client.deliver(frame)
                    self.clients[client.key] = client
            self._newcomers = []


class Hub:
    """Every room with a client in this process; the backend carries events between processes."""

    def __init__(self, backend: Backend, settings: Settings) -> None:
        self.backend = backend
        self.settings = settings
        self.rooms: dict[str, Room] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._leaving: dict[str, asyncio.Task[None]] = {}  # rooms being unsubscribed

    async def start(self) -> None:
        await self.backend.start(self._deliver, self._evict)

    def close_all(self, code: int = CloseCode.GOING_AWAY, reason: str = "Server shutting down") -> list[Client]:
        """Start closing every client, after the events already on their way; returns them."""
        return [client for room in list(self.rooms.values()) for client in room.close_all(code, reason)]

    async def stop(self) -> None:
        """Close every client with 1001 (going away), wait for them, then stop the backend."""
        clients = self.close_all()
        if clients:
            await asyncio.wait([asyncio.ensure_future(client.wait_closed()) for client in clients])
            for client in clients:
                await client.finished()
        for room in list(self.rooms.values()):
            self._drop(room)
        while self._tasks:
            await asyncio.wait(set(self._tasks))
        await self.backend.stop()

    async def join(
        self,
        connection: Connection,
        abort: Callable[[], None],
        room_name: str | None,
        name: str | None,
        since: str | None = None,
        epoch: str | None = None,
        sink: Sink | None = None,
        token: str | None = None,
    ) -> Client:
        """Put a connection in a room under a screen name; its welcome is its first frame.

        `since` (the last message id the client saw) asks for exactly the messages after it,
        provided `epoch`, when given, is this history's: ids of another epoch mean nothing here.
        `token`, from the welcome of the connection that holds the name, in this process or
        another, takes the name over from it: a client back from a network blip need not wait
        until the server finds its old connection dead. Raises `BadRequest` (`InvalidName`
        for names) or `NameTaken`; without `name`, a guest name is chosen.
        """
        room_key = clean_room(room_name) if room_name is not None else DEFAULT_ROOM
        wanted = clean_name(name) if name is not None else None
        last_seen = _parse_since(since)
        room = await self._open(room_key)
        fresh = new_token()  # the newcomer's, in its welcome
        if wanted is not None and token is not None:
            key = name_key(wanted)
            holder = room.members.get(key)
            if holder is not None and holder.issued(token):
                return await self._take_over(holder, connection, abort, last_seen, epoch, sink, fresh)
            if holder is None and (known := await self._take_over_elsewhere(room, key, token, fresh)) is not None:
                client = Client(self, room, known, key, connection, abort, self.settings, sink, fresh)
                resume = self._admit(client, last_seen, epoch)
                if resume is not None:
                    await self._resume(client, resume)
                return client
        # A name must be free here and, with a shared backend, in every other process too.
        for _ in range(GUEST_TRIES if wanted is None else 1):
            chosen = wanted
            if chosen is None:
                chosen = guest_name()
                while name_key(chosen) in room.members:
                    chosen = guest_name()
            key = name_key(chosen)
            if key not in room.members and await self._claim(room, key, chosen, fresh):
                break
        else:
            self._close_if_empty(room)
            raise NameTaken(f"{chosen!r} is already online in {room_key!r}")
        client = Client(self, room, chosen, key, connection, abort, self.settings, sink, fresh)
        self.backend.announce(room.name, join_event(chosen))  # to those already there
        resume = self._admit(client, last_seen, epoch)
        if resume is not None:
            await self._resume(client, resume)
        return client

    async def _take_over(
        self,
        holder: Client,
        connection: Connection,
        abort: Callable[[], None],
        last_seen: int | None,
        epoch: str | None,
        sink: Sink | None,
        token: str,
    ) -> Client:
        """Give `holder`'s name, as it is known, to a newer connection of the same client, and
        close `holder`; its claim, in the backend too, simply goes on."""
        room = holder.room
        client = Client(self, room, holder.name, holder.key, connection, abort, self.settings, sink, token)
        self.backend.retoken(room.name, holder.key, token)
        room.hand_over(holder)
        resume = self._admit(client, last_seen, epoch)
        holder.close(CloseCode.REPLACED, "Replaced by a newer connection of yours")
        if resume is not None:
            await self._resume(client, resume)
        return client

    def _admit(self, client: Client, last_seen: int | None, epoch: str | None) -> Resume | None:
        room = client.room
        stale = last_seen is not None and epoch is not None and epoch != room.epoch
        return room.admit(
            client,
            None if stale else last_seen,
            self.settings.replay_limit,
            stale=stale,
            online=self.backend.online(room.name),
        )

    async def _claim(self, room: Room, key: str, name: str, token: str) -> bool:
        """Whether `name` is free in every process, and now ours (`Backend.claim`). A claim
        that cannot be made raises `BackendError`."""
        return await self._asking(room, self.backend.claim(room.name, key, name, token))

    async def _take_over_elsewhere(self, room: Room, key: str, token: str, new_token: str) -> str | None:
        """The name `key`, as it is known, if another process held it for the connection whose
        token this is, and it is now ours (`Backend.take_over`)."""
        return await self._asking(room, self.backend.take_over(room.name, key, token, new_token))

    async def _asking(self, room: Room, question: Awaitable[_Answer]) -> _Answer:
        """The backend's answer about `room`. One process answers without suspending; a shared
        backend asks the others, and the room stays open meanwhile."""
        room.waiting += 1
        try:
            answer = await question
        except BaseException:
            room.waiting -= 1
            self._close_if_empty(room)
            raise
        room.waiting -= 1
        return answer

    def _evict(self, room_name: str, key: str) -> None:
        """A newer connection of the same client, in another process, took over the name that
        `key`'s holder has here: close it, and tell nobody, for nobody left."""
        room = self.rooms.get(room_name)
        holder = room.members.get(key) if room is not None else None
        if room is None or holder is None:
            return
        room.remove(holder)
        self._close_if_empty(room)
        holder.close(CloseCode.REPLACED, "Replaced by a newer connection of yours")

    async def _resume(self, client: Client, resume: Resume) -> None:
        room = client.room
        try:
            messages, gap = await self.backend.since(room.name, resume.after, resume.upto, self.settings.replay_limit)
        except Exception:
            logger.exception("could not read the history of %s for %s", room.name, client.name)
            messages, gap = list(room.recent), True  # the latest we have; the client pages for the rest
        client.release(room.welcome(client, resume.online, messages, gap))

    async def keep_pace(self, client: Client) -> None:
        """Hold a sender back while the backend or its room cannot keep up."""
        await self.backend.ready()
        await client.room.drained(self.settings.stall_timeout)

    async def send_history(self, client: Client, before: int | None, limit: int) -> None:
        """Answer a `history` request: the page of messages before `before`."""
        room = client.room
        try:
            messages, more = await self.backend.history(room.name, before, limit)
        except Exception:
            logger.exception("could not read the history of %s", room.name)
            client.push(error_event(ErrorCode.UNAVAILABLE, "History cannot be read right now; try again"))
            return
        client.push(history_event(room.name, [message.json for message in messages], more))

    def online_counts(self) -> dict[str, int]:
        """How many people each room has in this process; rooms with nobody in them are left out."""
        return {name: len(room.members) for name, room in self.rooms.items() if room.members}

    def leave(self, client: Client) -> None:
        room = client.room
        if room.remove(client):
            self.backend.announce(room.name, leave_event(client.name))
            self.backend.release(room.name, client.key, client.name)
            self._close_if_empty(room)

    def publish(self, client: Client, text: str) -> None:
        stored = self.backend.publish(client.room.name, client.name, text)
        if stored.done():
            self._check_stored(client, stored)
        else:
            client.room.expect()
            stored.add_done_callback(lambda future: self._check_stored(client, future))

    def _check_stored(self, client: Client, stored: asyncio.Future[Message]) -> None:
        if stored.cancelled() or stored.exception() is not None:
            logger.warning("message from %s in %s not stored: %r", client.name, client.room.name, stored)
            client.push(error_event(ErrorCode.NOT_STORED, "Your message could not be stored; send it again"))

    def _deliver(self, room_name: str, event: bytes, message: Message | None) -> None:
        room = self.rooms.get(room_name)
        if room is not None:
            room.post(event, message)

    async def _open(self, name: str) -> Room:
        room = self.rooms.get(name)
        if room is None:
            room = Room(name, self.backend.epoch, self.settings.welcome_history, self.backend.store_pending)
            self.rooms[name] = room
            self._spawn(self._subscribe(room))
        if not room.opened.done():
            room.waiting += 1
            try:
                await asyncio.shield(room.opened)
            finally:
                room.waiting -= 1
        return room

    async def _subscribe(self, room: Room) -> None:
        leaving = self._leaving.get(room.name)
        try:
            if leaving is not None:
                await leaving
            recent = await self.backend.subscribe(room.name)
        except Exception as exc:
            del self.rooms[room.name]
            self._spawn(room.stop())
            room.opened.set_exception(exc)
            return
        room.recent.extend(recent)
        room.opened.set_result(None)

    def _close_if_empty(self, room: Room) -> None:
        if room.empty and self.rooms.get(room.name) is room:
            self._drop(room)

    def _drop(self, room: Room) -> None:
        del self.rooms[room.name]
        self._leaving[room.name] = self._spawn(self._unsubscribe(room))

    async def _unsubscribe(self, room: Room) -> None:
        try:
            await room.stop()
            await self.backend.unsubscribe(room.name)
        finally:
            if self._leaving.get(room.name) is asyncio.current_task():
                del self._leaving[room.name]

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


def _parse_since(since: str | None) -> int | None:
    if since is None:
        return None
    if not since.isascii() or not since.isdigit() or int(since) > MAX_ID:
        raise BadRequest(f"since must be a message id (a whole number from 0), but got {since[:40]!r}")
    return int(since)
