"""`Hub` and `Room`: who is in which room, presence, and fan-out. No web framework here.

Fan-out is batched per room: every event a room receives during one turn of the event
loop is joined into one frame, serialised once, and pushed to each member's queue once.
However many messages arrive together, each member costs one queue operation and one write.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from app.client import Client, Connection
from app.names import DEFAULT_ROOM, clean_name, clean_room, guest_name, name_key
from app.protocol import CloseCode, ErrorCode, error_event, join_event, leave_event, welcome_event

if TYPE_CHECKING:
    from app.backends.base import Backend
    from app.messages import Message
    from app.settings import Settings

logger = logging.getLogger("chatroom")

PRESENCE_DELAY = 0.1  # seconds a join or leave may wait to share a frame with others


class NameTaken(Exception):
    """The screen name is already online in the room."""


class Room:
    """The members of one room in this process, and the events on their way to them."""

    def __init__(self, name: str, epoch: str, recent_size: int) -> None:
        self.name = name
        self.epoch = epoch
        # Everyone holding a name here, in the order they came; `clients` get every frame.
        self.members: dict[str, Client] = {}
        self.clients: dict[str, Client] = {}
        self.recent_size = recent_size
        self.recent: deque[Message] = deque(maxlen=recent_size)
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiting = 0  # joins awaiting `opened`
        self._events: list[str] = []
        self._messages: list[Message] = []
        # Welcomed while events were pending: (client, how many of them its welcome covers).
        self._newcomers: list[tuple[Client, int]] = []
        self._flush: asyncio.Handle | None = None
        self._flush_soon = False

    @property
    def empty(self) -> bool:
        return not self.members and not self.waiting

    def post(self, event: str, message: Message | None) -> None:
        """Queue an event for every member.

        A chat message goes out at the end of this turn of the event loop. Presence waits
        up to PRESENCE_DELAY for company: when hundreds connect at once, each member gets a
        few frames of joins instead of one frame per join. Events never overtake each other.
        """
        self._events.append(event)
        if message is not None:
            self._messages.append(message)
            if not self._flush_soon:
                if self._flush is not None:
                    self._flush.cancel()
                self._flush = asyncio.get_running_loop().call_soon(self.flush)
                self._flush_soon = True
        elif self._flush is None:
            self._flush = asyncio.get_running_loop().call_later(PRESENCE_DELAY, self.flush)

    def admit(self, client: Client) -> None:
        """Make `client` a member and queue its welcome, which already covers pending events."""
        self.members[client.key] = client
        history = [message.json for message in self.recent]
        history.extend(message.json for message in self._messages)
        online = [member.name for member in self.members.values()]
        client.push(welcome_event(client.name, self.name, self.epoch, online, history[-self.recent_size :]))
        if self._events:
            self._newcomers.append((client, len(self._events)))
        else:
            self.clients[client.key] = client

    def remove(self, client: Client) -> bool:
        """Take the client out; False if it was not a member (already gone)."""
        if self.members.get(client.key) is not client:
            return False
        del self.members[client.key]
        if self.clients.get(client.key) is client:
            del self.clients[client.key]
        return True

    def flush(self) -> None:
        """Send every pending event, as one frame, to every client."""
        if self._flush is not None:
            self._flush.cancel()
        self._flush = None
        self._flush_soon = False
        events, self._events = self._events, []
        if self._messages:
            self.recent.extend(self._messages)
            self._messages = []
        if events:
            frame = events[0] if len(events) == 1 else "\n".join(events)
            for client in tuple(self.clients.values()):
                client.push(frame)
        if self._newcomers:
            for client, covered in self._newcomers:
                if self.members.get(client.key) is client:
                    if covered < len(events):
                        client.push("\n".join(events[covered:]))
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
        await self.backend.start(self._deliver)

    def close_all(self, code: int = CloseCode.GOING_AWAY, reason: str = "Server shutting down") -> list[Client]:
        """Start closing every client, after the events already on their way; returns them."""
        for room in self.rooms.values():
            room.flush()
        clients = [client for room in self.rooms.values() for client in room.members.values()]
        for client in clients:
            client.close(code, reason)
        return clients

    async def stop(self) -> None:
        """Close every client with 1001 (going away), wait for them, then stop the backend."""
        clients = self.close_all()
        if clients:
            await asyncio.wait([asyncio.ensure_future(client.wait_closed()) for client in clients])
            for client in clients:
                await client.finished()
        while self._tasks:
            await asyncio.wait(set(self._tasks))
        await self.backend.stop()

    async def join(
        self,
        connection: Connection,
        abort: Callable[[], None],
        room_name: str | None,
        name: str | None,
    ) -> Client:
        """Put a connection in a room under a screen name; its welcome is its first frame.

        Raises `InvalidName` or `NameTaken`; without `name`, a guest name is chosen.
        """
        room_key = clean_room(room_name) if room_name is not None else DEFAULT_ROOM
        wanted = clean_name(name) if name is not None else None
        room = await self._open(room_key)
        if wanted is None:
            wanted = guest_name()
            while name_key(wanted) in room.members:
                wanted = guest_name()
        key = name_key(wanted)
        if key in room.members:
            self._close_if_empty(room)
            raise NameTaken(f"{wanted!r} is already online in {room_key!r}")
        client = Client(self, room, wanted, key, connection, abort, self.settings)
        self.backend.announce(room.name, join_event(wanted))  # to those already there
        room.admit(client)
        return client

    def online_counts(self) -> dict[str, int]:
        """How many people each room has in this process; rooms with nobody in them are left out."""
        return {name: len(room.members) for name, room in self.rooms.items() if room.members}

    def leave(self, client: Client) -> None:
        room = client.room
        if room.remove(client):
            self.backend.announce(room.name, leave_event(client.name))
            self._close_if_empty(room)

    def publish(self, client: Client, text: str) -> None:
        stored = self.backend.publish(client.room.name, client.name, text)
        if stored.done():
            self._check_stored(client, stored)
        else:
            stored.add_done_callback(lambda future: self._check_stored(client, future))

    def _check_stored(self, client: Client, stored: asyncio.Future[Message]) -> None:
        if stored.cancelled() or stored.exception() is not None:
            logger.warning("message from %s in %s not stored: %r", client.name, client.room.name, stored)
            client.push(error_event(ErrorCode.NOT_STORED, "Your message could not be stored; send it again"))

    def _deliver(self, room_name: str, event: str, message: Message | None) -> None:
        room = self.rooms.get(room_name)
        if room is not None:
            room.post(event, message)

    async def _open(self, name: str) -> Room:
        room = self.rooms.get(name)
        if room is None:
            room = self.rooms[name] = Room(name, self.backend.epoch, self.settings.welcome_history)
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
            room.opened.set_exception(exc)
            return
        room.recent.extend(recent)
        room.opened.set_result(None)

    def _close_if_empty(self, room: Room) -> None:
        if room.empty and self.rooms.get(room.name) is room:
            del self.rooms[room.name]
            self._leaving[room.name] = self._spawn(self._unsubscribe(room.name))

    async def _unsubscribe(self, name: str) -> None:
        try:
            await self.backend.unsubscribe(name)
        finally:
            if self._leaving.get(name) is asyncio.current_task():
                del self._leaving[name]

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task
