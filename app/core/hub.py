"""`Hub`: every room with a connection in this process, and the way in and out of them.

The hub puts connections in rooms under screen names (claimed through the backend's
presence, so that they are unique in every process), takes names over for a client's
newer connection, publishes what sessions say, and fans out what the backend delivers at
the end of each turn (app/core/turn.py). No web framework here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from app.backends.base import BackendError
from app.core.identity import Identity
from app.core.member import Member, new_member, new_token
from app.core.names import DEFAULT_ROOM, clean_name, clean_room, guest_name, name_key
from app.core.protocol import (
    MAX_ID,
    BadRequest,
    CloseCode,
    Command,
    ErrorCode,
    RequestHistory,
    error_event,
    history_event,
)
from app.core.room import Resume, Room
from app.core.session import Session
from app.core.turn import Turn

if TYPE_CHECKING:
    from app.backends.base import Backend
    from app.core.messages import Message
    from app.core.sockets import Connection, Sink
    from app.settings import Settings

logger = logging.getLogger("chatroom")

GUEST_TRIES = 5  # guest names drawn before giving up, should other processes hold each one

_Answer = TypeVar("_Answer")


class NameTaken(Exception):
    """The screen name is already online in the room, or registered to an account."""


class NotSignedIn(Exception):
    """Only accounts may connect (CHAT_GUESTS=off), and this connection signs none in."""


class Refused(Exception):
    """A connection that may not enter the room (an `admission` check said so): closed with `code`."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


_C = TypeVar("_C", bound=Command)
Handler = Callable[[Session, _C], Awaitable[None]]
Admission = Callable[[Room, Identity, "str | None"], Awaitable[None]]


class Hub:
    """Every room with a client in this process; the backend carries events between processes.

    The parts of the core beside the chat itself (moderation, direct messages, ...) plug in
    here: `on` says who handles a kind of command; `admission` checks may refuse a newcomer;
    `room_opening` runs when a room opens in this process; `welcome_fields` add fields to
    every welcome; `connected` and `disconnected` hear of each connection's start and end;
    `noticed` hears every notice (`Backend.notify`) after the hub's own.
    """

    def __init__(self, backend: Backend, settings: Settings) -> None:
        self.backend = backend
        self.presence = backend.presence
        self.settings = settings
        self.rooms: dict[str, Room] = {}
        # Every connection of each name key in this process, whichever room it is in.
        self.connections: dict[str, list[Member]] = {}
        self.admission: list[Admission] = []
        self.room_opening: list[Callable[[Room], Awaitable[None]]] = []
        self.welcome_fields: list[Callable[[Room, Member], dict[str, Any]]] = []
        self.connected: list[Callable[[Member], None]] = []
        self.disconnected: list[Callable[[Member], None]] = []
        self.noticed: list[Callable[[str, dict[str, Any]], None]] = []
        self._handlers: dict[type[Command], Handler[Any]] = {RequestHistory: self._send_history}
        self._turn: Turn | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._leaving: dict[str, asyncio.Task[None]] = {}  # rooms being unsubscribed

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
        for room in list(self.rooms.values()):
            self._drop(room)
        while self._tasks:
            await asyncio.wait(set(self._tasks))
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
        room_key = clean_room(room_name) if room_name is not None else DEFAULT_ROOM
        if account is None and not self.settings.guests_allowed:
            raise NotSignedIn("Sign in to chat here: this server has no guests")
        wanted = clean_name(name) if name is not None and account is None else None
        last_seen = _parse_since(since)
        room = await self._open(room_key)
        if self.admission:
            who = account or Identity(wanted or "", name_key(wanted) if wanted else "", account=False)
            for check in self.admission:
                await self._holding_open(room, check(room, who, address))
        fresh = new_token()  # the newcomer's, in its welcome
        member = partial(
            self._new_member, room, token=fresh, connection=connection, cut_off=cut_off, sink=sink, address=address
        )
        if account is not None:
            return await self._join_account(room, account, member, token, last_seen, epoch)
        if wanted is not None:
            key = name_key(wanted)
            if await self._holding_open(room, self.backend.accounts.user(key)) is not None:
                self._close_if_empty(room)
                raise NameTaken(f"{wanted!r} is registered to an account: sign in to use it, or pick another name")
            if token is not None:
                holder = room.holding(key, token)
                if holder is not None and holder.identity.guest:
                    return await self._take_over(holder, room, member(identity=holder.identity), last_seen, epoch)
                if key not in room.people:
                    known = await self._holding_open(room, self.presence.take_over(room.name, key, token, fresh))
                    if known is not None:
                        identity = Identity(known, key, account=False)
                        return await self._enter(room, member(identity=identity), last_seen, epoch)
        # A name must be free here and, with a shared backend, in every other process too.
        for _ in range(GUEST_TRIES if wanted is None else 1):
            chosen = wanted
            if chosen is None:
                chosen = guest_name()
                while name_key(chosen) in room.people:
                    chosen = guest_name()
            key = name_key(chosen)
            if key not in room.people and await self._claim(room, key, chosen, fresh):
                break
        else:
            self._close_if_empty(room)
            raise NameTaken(f"{chosen!r} is already online in {room_key!r}")
        self.presence.joined(room.name, key, chosen, guest=True)  # to those already there
        return await self._enter(room, member(identity=Identity(chosen, key, account=False)), last_seen, epoch)

    async def _join_account(
        self,
        room: Room,
        account: Identity,
        member: Callable[..., Member],
        token: str | None,
        last_seen: int | None,
        epoch: str | None,
    ) -> Session:
        key = account.key
        for holder in room.people.get(key, []):
            if holder.identity.guest:  # it took the name before the account registered it
                holder.close(CloseCode.NAME_TAKEN, f"{account.name!r} is registered to an account now")
        replaced = room.holding(key, token) if token is not None else None
        if replaced is not None:  # the account's own connection: a name is never shared with a guest
            return await self._take_over(replaced, room, member(identity=account), last_seen, epoch)
        if key not in room.people:  # the account's first connection to this room in this process
            created = member(identity=account)
            if not await self._claim(room, key, account.name, created.token, account=True):
                await created.finished()
                raise NameTaken(f"{account.name!r} is in use by a guest in {room.name!r}; try again in a moment")
            self.presence.joined(room.name, key, account.name, guest=False)
            return await self._enter(room, created, last_seen, epoch)
        return await self._enter(room, member(identity=account), last_seen, epoch)

    def _new_member(self, room: Room, address: str | None, **parts: Any) -> Member:
        member = new_member(room, settings=self.settings, **parts)
        member.address = address
        return member

    async def _enter(self, room: Room, member: Member, last_seen: int | None, epoch: str | None) -> Session:
        """Admit `member`, whose name is now its own, with its welcome."""
        stale = last_seen is not None and epoch is not None and epoch != room.epoch
        online = self.presence.online(room.name)
        resume = room.admit(member, online, None if stale else last_seen, self.settings.replay_limit, stale=stale)
        self.connections.setdefault(member.key, []).append(member)
        for hook in self.connected:
            hook(member)
        if resume is not None:
            await self._resume(room, member, resume)
        return Session(self, room, member, self.settings)

    def welcome_extras(self, room: Room, member: Member) -> dict[str, Any]:
        """What the `welcome_fields` add to `member`'s welcome."""
        extras: dict[str, Any] = {}
        for fields in self.welcome_fields:
            extras.update(fields(room, member))
        return extras

    async def _take_over(
        self, holder: Member, room: Room, member: Member, last_seen: int | None, epoch: str | None
    ) -> Session:
        """Give `holder`'s name, as it is known, to a newer connection of the same client, and
        close `holder`; its claim, in the backend too, simply goes on."""
        self.presence.retoken(room.name, holder.key, member.token)
        room.hand_over(holder)
        self._forget_connection(holder)
        session = await self._enter(room, member, last_seen, epoch)
        holder.close(CloseCode.REPLACED, "Replaced by a newer connection of yours")
        return session

    async def _claim(self, room: Room, key: str, name: str, token: str, account: bool = False) -> bool:
        """Whether `name` is free in every process, and now ours (`Presence.claim`). A claim
        that cannot be made raises `BackendError`."""
        return await self._holding_open(room, self.presence.claim(room.name, key, name, token, account))

    async def _holding_open(self, room: Room, question: Awaitable[_Answer]) -> _Answer:
        """The backend's answer about `room`, which stays open meanwhile. One process answers
        without suspending; a shared backend asks the others."""
        room.waiting += 1
        try:
            answer = await question
        except BaseException:
            room.waiting -= 1
            self._close_if_empty(room)
            raise
        room.waiting -= 1
        if self.rooms.get(room.name) is not room:
            raise BackendError("the chat's history started anew meanwhile: try again")
        return answer

    async def _resume(self, room: Room, member: Member, resume: Resume) -> None:
        try:
            messages, gap = await self.backend.since(room.name, resume.after, resume.upto, self.settings.replay_limit)
        except Exception:
            logger.exception("could not read the history of %s for %s", room.name, member.name)
            messages, gap = list(room.recent), True  # the latest we have; the client pages for the rest
        member.release(room.welcome(member, resume.online, messages, gap))

    # Leaving

    def _left(self, room: Room, member: Member) -> None:
        """`member` is no longer in `room` (it closed, or its connection ended): once its name
        has no connection left here, the others hear it."""
        self._forget_connection(member)
        if self.rooms.get(room.name) is not room:
            return  # forgotten at a new epoch: the backend let its names go already
        if member.key not in room.people:
            self.presence.left(room.name, member.key, member.name, member.identity.guest)
        self._close_if_empty(room)

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
            self._close_if_empty(room)
            holder.close(CloseCode.REPLACED, "Replaced by a newer connection of yours")

    def notice(self, kind: str, fields: dict[str, Any]) -> None:
        """Close the connections that a change concerns, in this process (see `Backend.notify`);
        then the `noticed` hooks hear it."""
        if kind == "sessions_ended":
            ended = set(fields.get("sessions", ()))
            why = str(fields.get("why", "Signed out"))
            for member in self._members():
                if member.identity.session in ended:
                    member.close(CloseCode.NOT_SIGNED_IN, why)
        elif kind == "registered":
            key = fields.get("key")
            for member in self._members():
                if member.key == key and member.identity.guest:
                    member.close(CloseCode.NAME_TAKEN, f"{member.name!r} was registered to an account just now")
        for hook in self.noticed:
            hook(kind, fields)

    def _members(self) -> list[Member]:
        return [member for room in list(self.rooms.values()) for member in room.members]

    def epoch_changed(self) -> None:
        """The backend's history began a new epoch: forget every room, and close every member
        with 1012; each comes back resuming (`since` and `epoch`), is told `gap`, and is
        welcomed in the new epoch, so that no client takes a message of the new epoch for
        the one of the old with its id. Nobody hears anyone leave: everybody goes."""
        rooms = list(self.rooms.values())
        self.rooms.clear()
        for room in rooms:
            room.stop()
        # After the refusals the backend just failed (their callbacks come first): a sender
        # hears `not_stored` for what it said that did not make it, then the close.
        asyncio.get_running_loop().call_soon(self._restart, rooms)

    @staticmethod
    def _restart(rooms: list[Room]) -> None:
        for room in rooms:
            room.close_all(CloseCode.SERVICE_RESTART, "The chat's history started anew: reconnect")

    # What sessions ask (app.core.session.Dispatcher)

    def publish(self, session: Session, text: str) -> None:
        if self.rooms.get(session.room.name) is not session.room:
            # Its room was forgotten at a new epoch, and its connection closes at the end of
            # this turn: in the new one, the message would be stored without an echo here.
            session.member.push(error_event(ErrorCode.NOT_STORED, "Your message could not be stored; send it again"))
            return
        member = session.member
        stored = self.backend.publish(session.room.name, member.name, text, member.identity.guest)
        stored.add_done_callback(partial(self._check_stored, session))
        self.turn.schedule()  # its end commits what was published, then sends it

    def _check_stored(self, session: Session, stored: asyncio.Future[Message]) -> None:
        if stored.cancelled() or stored.exception() is not None:
            logger.warning("message from %s in %s not stored: %r", session.name, session.room.name, stored)
            session.member.push(error_event(ErrorCode.NOT_STORED, "Your message could not be stored; send it again"))

    def holds_senders(self, session: Session) -> bool:
        return session.room.holds_senders or self.backend.backlogged

    async def keep_pace(self, session: Session) -> None:
        """Hold a sender back while the backend or its room cannot keep up."""
        await self.backend.pace()
        await session.room.pace(self.settings.stall_timeout)

    async def handle(self, session: Session, command: Command) -> None:
        handler = self._handlers.get(type(command))
        if handler is None:  # parsed, but nothing here handles it: a part that was not plugged in
            logger.error("no handler for %s", type(command).__name__)
            session.member.push(error_event(ErrorCode.UNKNOWN_TYPE, "This server does not handle that event"))
            return
        await handler(session, command)

    async def _send_history(self, session: Session, command: RequestHistory) -> None:
        """Answer a `history` request: the page of messages before `before`."""
        room = session.room
        try:
            messages, more = await self.backend.history(room.name, command.before, command.limit)
        except Exception:
            logger.exception("could not read the history of %s", room.name)
            session.member.push(error_event(ErrorCode.UNAVAILABLE, "History cannot be read right now; try again"))
            return
        session.member.push(history_event(room.name, [message.json for message in messages], more))

    # What the backend delivers (app.backends.base.Subscriber)

    def deliver(self, room_name: str, event: bytes, message: Message | None) -> None:
        room = self.rooms.get(room_name)
        if room is not None:
            room.post(event, message)

    # Rooms

    def online_counts(self) -> dict[str, int]:
        """How many people each room has in this process; rooms with nobody in them are left out."""
        return {name: len(room.people) for name, room in self.rooms.items() if room.people}

    async def _open(self, name: str) -> Room:
        while True:
            room = self.rooms.get(name)
            if room is None:
                room = Room(
                    name, self.backend.epoch, self.settings.welcome_history, self.turn, self._left, self.welcome_extras
                )
                self.rooms[name] = room
                self._spawn(self._subscribe(room))
            if not room.opened.done():
                room.waiting += 1
                try:
                    await asyncio.shield(room.opened)
                finally:
                    room.waiting -= 1
            if self.rooms.get(name) is room:
                return room
            # Forgotten at a new epoch meanwhile: this one opens in the new epoch.

    async def _subscribe(self, room: Room) -> None:
        leaving = self._leaving.get(room.name)
        try:
            if leaving is not None:
                await leaving
            recent = await self.backend.subscribe(room.name)
        except Exception as exc:
            if self.rooms.get(room.name) is room:
                del self.rooms[room.name]
            room.stop()
            room.opened.set_exception(exc)
            return
        room.recent.extend(recent)
        try:
            for opening in self.room_opening:
                await opening(room)
        except Exception as exc:
            if self.rooms.get(room.name) is room:
                self._drop(room)
            room.opened.set_exception(exc)
            return
        room.opened.set_result(None)

    def _close_if_empty(self, room: Room) -> None:
        if room.empty and self.rooms.get(room.name) is room:
            self._drop(room)

    def _drop(self, room: Room) -> None:
        del self.rooms[room.name]
        room.stop()
        self._leaving[room.name] = self._spawn(self._unsubscribe(room))

    async def _unsubscribe(self, room: Room) -> None:
        try:
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
