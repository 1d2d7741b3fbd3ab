"""`Hub`: every room with a connection in this process, and what goes on in them.

The hub puts connections in rooms (its `Doorway`, doorway.py, says under which name), hands
what sessions say to the backend and what they ask to the parts that handle it, and fans
out what the backend delivers at the end of each turn (app/core/turn.py). No web framework
here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from app.core.doorway import Doorway, NameTaken, NotSignedIn, Refused
from app.core.identity import Identity
from app.core.member import Member
from app.core.protocol import (
    CHANGE_EVENTS,
    CloseCode,
    Command,
    ErrorCode,
    RequestHistory,
    error_event,
    history_event,
)
from app.core.room import Room
from app.core.rooms import Rooms
from app.core.session import Session
from app.core.stats import READ, STORE, Stats
from app.core.turn import Turn

if TYPE_CHECKING:
    from app.backends.base import Backend
    from app.core.messages import Message
    from app.core.sockets import Connection, Sink
    from app.settings import Settings

logger = logging.getLogger("chatroom")

__all__ = ["Hub", "NameTaken", "NotSignedIn", "Refused"]

_C = TypeVar("_C", bound=Command)
Handler = Callable[[Session, _C], Awaitable[None]]
NoticeHandler = Callable[[dict[str, Any]], None]
# Whether a message is the session's own to delete: each rule says yes or no; one yes is
# enough. Moderation (app/core/moderation/), whose `delete` is, lets moderators delete any.
MayDelete = Callable[[Session, "Message"], bool]
# Who may read a room's history from outside it (search): the room's name, and who asks (an
# account, or None for a guest); every check must say yes.
MayRead = Callable[[str, "Identity | None", "str | None"], Awaitable[bool]]  # room, who (None: a guest), address


class Hub:
    """Every room with a client in this process; the backend carries events between processes.

    The parts of the core beside the chat itself (accounts, moderation, direct messages, ...)
    plug in here: `on` says who handles a kind of command; `admission` checks may refuse a
    newcomer; `room_opening` runs when a room opens in this process; `welcome_fields` add
    fields to every welcome; `connected` and `disconnected` hear of each connection's start
    and end; `notices` say what a kind of notice does here; `gates` hold back what some
    members say; `stored` hears of each message stored, with the session that said it;
    `may_delete` says whose own a message is to delete (app/core/changes.py: its author's;
    moderation's `delete` asks it), `may_read` who may search a room; `stopping` runs as the hub
    stops, before the backend does. Rooms are `Rooms`' (rooms.py), coming in is the
    `Doorway`'s (doorway.py).
    """

    def __init__(self, backend: Backend, settings: Settings, stats: Stats | None = None) -> None:
        self.backend = backend
        self.presence = backend.presence
        self.settings = settings
        self.stats = stats if stats is not None else Stats()  # what this process did (app/core/stats.py)
        self._rooms = Rooms(
            backend, settings.welcome_history, lambda: self.turn, self._left, self.welcome_extras, self.stats
        )
        self.rooms = self._rooms.open
        self.room_opening = self._rooms.opening
        self._doorway = Doorway(
            backend, self._rooms, settings, self, self._entered, self._forget_connection, self.stats
        )
        self.admission = self._doorway.admission
        # Every connection of each name key in this process, whichever room it is in.
        self.connections: dict[str, list[Member]] = {}
        self.welcome_fields: list[Callable[[Room, Member], dict[str, Any]]] = []
        self.connected: list[Callable[[Member], None]] = []
        self.disconnected: list[Callable[[Member], None]] = []
        self.notices: dict[str, NoticeHandler] = {}  # kind -> what to do in this process (`notice`)
        # Members whose messages a part of the core may refuse (a mute), each with its check:
        # it answers the sender itself and returns True when the message must not be
        # published. One dict lookup per message, and for almost everyone an empty dict.
        self.gates: dict[Member, Callable[[Session], bool]] = {}
        self.stored: list[Callable[[Session, Message], None]] = []
        self.may_delete: list[MayDelete] = []
        self.may_read: list[MayRead] = []
        # Run once every connection is closed, before the backend stops: write what waits.
        self.stopping: list[Callable[[], Awaitable[None]]] = []
        self._handlers: dict[type[Command], Handler[Any]] = {RequestHistory: self._send_history}
        self._turn: Turn | None = None

    def on(self, kind: type[_C], handler: Handler[_C]) -> None:
        """`handler` does what commands of `kind` ask (app.core.protocol.command parses them)."""
        if kind in self._handlers:
            raise ValueError(f"two handlers for {kind.__name__}")
        self._handlers[kind] = handler

    @property
    def turn(self) -> Turn:
        assert self._turn is not None, "the hub has not started"
        return self._turn

    async def start(self) -> None:
        self._turn = Turn(self.backend.commit)
        await self.backend.start(self)

    def close_all(self, code: int = CloseCode.GOING_AWAY, reason: str = "Server shutting down") -> list[Member]:
        """Start closing every member, after the events already on their way; returns them."""
        return [member for room in list(self.rooms.values()) for member in room.close_all(code, reason)]

    async def stop(self) -> None:
        """Close every member with 1001 (going away), wait for them, then stop the backend."""
        members = self.close_all()
        if members:
            await asyncio.wait([asyncio.ensure_future(member.wait_closed()) for member in members])
            for member in members:
                await member.finished()
        for stopping in self.stopping:
            await stopping()
        await self._rooms.stop()
        self.turn.stop()
        await self.backend.stop()

    # Coming in

    async def join(
        self,
        connection: Connection,
        cut_off: Callable[[], None],
        room_name: str | None,
        name: str | None,
        since: str | None = None,
        epoch: str | None = None,
        sink: Sink | None = None,
        token: str | None = None,
        account: Identity | None = None,
        address: str | None = None,
    ) -> Session:
        """Put a connection in a room under a screen name; its welcome is its first frame.

        `account` is who the connection's session signed in, if it did: it speaks under its
        account's name (`name` is not used), from as many connections as it likes. A guest
        speaks under `name`, or a guest name chosen for it, which must be online nowhere in
        the room and registered to nobody.

        `cut_off` drops the socket, for a peer that does not take its close in time.
        `since` (the last message id the client saw) asks for exactly the messages after it,
        provided `epoch`, when given, is this history's: ids of another epoch mean nothing here.
        `token`, from the welcome of the connection that holds the name, in this process or
        another, takes the name over from it: a client back from a network blip need not wait
        until the server finds its old connection dead. `address` is where the connection
        comes from (app.web.connections.address_key), for the `admission` checks. Raises
        `BadRequest` (`InvalidName` for names), `NameTaken`, `NotSignedIn` or `Refused`.
        """
        session: Session = await self._doorway.join(
            connection, cut_off, room_name, name, since, epoch, sink, token, account, address
        )
        return session

    def _entered(self, member: Member) -> None:
        self.connections.setdefault(member.key, []).append(member)
        for hook in self.connected:
            hook(member)

    def welcome_extras(self, room: Room, member: Member) -> dict[str, Any]:
        """What the `welcome_fields` add to `member`'s welcome."""
        extras: dict[str, Any] = {}
        for fields in self.welcome_fields:
            extras.update(fields(room, member))
        return extras

    # Leaving

    def _left(self, room: Room, member: Member) -> None:
        """`member` is no longer in `room` (it closed, or its connection ended): once its name
        has no connection left here, the others hear it."""
        self._forget_connection(member)
        if not self._rooms.current(room):
            return  # forgotten at a new epoch: the backend let its names go already
        if member.key not in room.people:
            self.presence.left(room.name, member.key, member.name, member.identity.guest)
        self._rooms.close_if_empty(room)

    def _forget_connection(self, member: Member) -> None:
        connections = self.connections.get(member.key)
        if connections is not None and member in connections:
            connections.remove(member)
            if not connections:
                del self.connections[member.key]
            for hook in self.disconnected:
                hook(member)

    def evict(self, room_name: str, key: str) -> None:
        """A newer connection of the same client, in another process, took over the name that
        `key`'s holder has here: close it, and tell nobody, for nobody left."""
        room = self.rooms.get(room_name)
        for holder in room.people.get(key, []) if room is not None else []:
            assert room is not None
            room.remove(holder)
            self._forget_connection(holder)
            self._rooms.close_if_empty(room)
            holder.close(CloseCode.REPLACED, "Replaced by a newer connection of yours")

    def notice(self, kind: str, fields: dict[str, Any]) -> None:
        """A change that concerns connections in every process (see `Backend.notify`): what
        the handler of its kind does to this process's (`notices`)."""
        handler = self.notices.get(kind)
        if handler is None:
            logger.warning("a notice of a kind this process does not know: %s", kind)
            return
        handler(fields)

    def members(self) -> list[Member]:
        """Every connection in this process."""
        return [member for room in list(self.rooms.values()) for member in room.members]

    def epoch_changed(self) -> None:
        """The backend's history began a new epoch: forget every room, and close every member
        with 1012; each comes back resuming (`since` and `epoch`), is told `gap`, and is
        welcomed in the new epoch, so that no client takes a message of the new epoch for
        the one of the old with its id. Nobody hears anyone leave: everybody goes."""
        rooms = self._rooms.forget()
        # After the refusals the backend just failed (their callbacks come first): a sender
        # hears `not_stored` for what it said that did not make it, then the close.
        asyncio.get_running_loop().call_soon(self._restart, rooms)

    @staticmethod
    def _restart(rooms: list[Room]) -> None:
        for room in rooms:
            room.close_all(CloseCode.SERVICE_RESTART, "The chat's history started anew: reconnect")

    # What sessions ask (app.core.session.Dispatcher)

    def publish(self, session: Session, text: str) -> None:
        if not self._rooms.current(session.room):
            # Its room was forgotten at a new epoch, and its connection closes at the end of
            # this turn: in the new one, the message would be stored without an echo here.
            self.stats.refused[ErrorCode.NOT_STORED] += 1
            session.member.push(error_event(ErrorCode.NOT_STORED, "Your message could not be stored; send it again"))
            return
        member = session.member
        gate = self.gates.get(member)
        if gate is not None and gate(session):
            return
        stored = self.backend.publish(session.room.name, member.name, text, member.identity.guest)
        stored.add_done_callback(partial(self._check_stored, session, time.monotonic()))
        self.turn.schedule()  # its end commits what was published, then sends it

    def _check_stored(self, session: Session, published: float, stored: asyncio.Future[Message]) -> None:
        stats = self.stats
        stats.latency[STORE].observe(time.monotonic() - published)
        if stored.cancelled() or stored.exception() is not None:
            logger.warning("message from %s in %s not stored: %r", session.name, session.room.name, stored)
            stats.refused[ErrorCode.NOT_STORED] += 1
            session.member.push(error_event(ErrorCode.NOT_STORED, "Your message could not be stored; send it again"))
            return
        stats.stored += 1
        if self.stored:
            message = stored.result()
            for hook in self.stored:
                hook(session, message)

    def holds_senders(self, session: Session) -> bool:
        return session.room.holds_senders or self.backend.backlogged

    async def keep_pace(self, session: Session) -> None:
        """Hold a sender back while the backend or its room cannot keep up."""
        started = time.monotonic()
        try:
            await self.backend.pace()
            await session.room.pace(self.settings.stall_timeout)
        finally:
            self.stats.pacing_stalls += 1
            self.stats.pacing_seconds += time.monotonic() - started

    async def handle(self, session: Session, command: Command) -> None:
        handler = self._handlers.get(type(command))
        if handler is None:  # parsed, but nothing here handles it: a part that was not plugged in
            logger.error("no handler for %s", type(command).__name__)
            self.stats.refused[ErrorCode.UNKNOWN_TYPE] += 1
            session.member.push(error_event(ErrorCode.UNKNOWN_TYPE, "This server does not handle that event"))
            return
        await handler(session, command)

    async def _send_history(self, session: Session, command: RequestHistory) -> None:
        """Answer a `history` request: the page of messages before `before`."""
        room = session.room
        try:
            messages, more = await self.stats.timed(
                READ, self.backend.history(room.name, command.before, command.limit)
            )
        except Exception:
            logger.exception("could not read the history of %s", room.name)
            self.stats.refused[ErrorCode.UNAVAILABLE] += 1
            session.member.push(error_event(ErrorCode.UNAVAILABLE, "History cannot be read right now; try again"))
            return
        session.member.push(history_event(room.name, [message.json for message in messages], more))

    # What the backend delivers (app.backends.base.Subscriber)

    def deliver(self, room_name: str, event: bytes, message: Message | None) -> None:
        room = self.rooms.get(room_name)
        if room is not None:
            room.post(event, message)

    def changed(self, room_name: str, kind: str, message: Message) -> None:
        room = self.rooms.get(room_name)
        if room is not None:
            room.change(CHANGE_EVENTS[kind](message), message)

    def ephemeral(self, room_name: str, key: str, event: bytes) -> None:
        room = self.rooms.get(room_name)
        if room is not None:
            room.post_ephemeral(key, event)

    # Rooms

    def online_counts(self) -> dict[str, int]:
        """How many people each room has in this process; rooms with nobody in them are left out."""
        return {name: len(room.people) for name, room in self.rooms.items() if room.people}
