"""`Doorway`: how a connection comes into a room, under which name, with which welcome.

A guest comes in under a name online nowhere in the room and registered to nobody (or a
guest name chosen for it); an account under its own name, from as many connections as it
likes. A newer connection of the same client takes its name over from the old one with
the token of that one's welcome, in this process or, through the backend's presence, in
another. The `admission` checks (a ban, a room's door) may refuse anyone first.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from app.core.identity import Identity
from app.core.member import Member, new_member, new_token
from app.core.names import DEFAULT_ROOM, clean_name, clean_room, guest_name, name_key
from app.core.protocol import MAX_ID, BadRequest, CloseCode
from app.core.room import Resume, Room
from app.core.session import Dispatcher, Session
from app.core.stats import PRESENCE, Stats

if TYPE_CHECKING:
    from app.backends.base import Backend
    from app.core.rooms import Rooms
    from app.core.sockets import Connection, Sink
    from app.settings import Settings

logger = logging.getLogger("chatroom")

GUEST_TRIES = 5  # guest names drawn before giving up, should other processes hold each one

Admission = Callable[[Room, Identity, "str | None"], Awaitable[None]]


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


class Doorway:
    def __init__(
        self,
        backend: Backend,
        rooms: Rooms,
        settings: Settings,
        dispatcher: Dispatcher,
        entered: Callable[[Member], None],
        replaced: Callable[[Member], None],
        stats: Stats,
    ) -> None:
        self._backend = backend
        self._stats = stats
        self._presence = backend.presence
        self._rooms = rooms
        self._settings = settings
        self._dispatcher = dispatcher
        self._entered = entered  # a connection is in a room
        self._replaced = replaced  # a connection's name passed to a newer one of the same client
        self.admission: list[Admission] = []

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
        """See `Hub.join`."""
        settings = self._settings
        room_key = clean_room(room_name) if room_name is not None else DEFAULT_ROOM
        if account is None and not settings.guests_allowed:
            raise NotSignedIn("Sign in to chat here: this server has no guests")
        wanted = clean_name(name) if name is not None and account is None else None
        last_seen = _parse_since(since)
        rooms = self._rooms
        room = await rooms.enter(room_key)
        if self.admission:
            who = account or Identity(wanted or "", name_key(wanted) if wanted else "", account=False)
            for check in self.admission:
                await rooms.holding_open(room, check(room, who, address))
        fresh = new_token()  # the newcomer's, in its welcome
        member = partial(
            self._new_member, room, token=fresh, connection=connection, cut_off=cut_off, sink=sink, address=address
        )
        if account is not None:
            return await self._join_account(room, account, member, token, last_seen, epoch)
        presence = self._presence
        if wanted is not None:
            key = name_key(wanted)
            if await rooms.holding_open(room, self._backend.accounts.user(key)) is not None:
                rooms.close_if_empty(room)
                raise NameTaken(f"{wanted!r} is registered to an account: sign in to use it, or pick another name")
            if token is not None:
                holder = room.holding(key, token)
                if holder is not None and holder.identity.guest:
                    return await self._take_over(holder, room, member(identity=holder.identity), last_seen, epoch)
                if key not in room.people:
                    taking_over = self._stats.timed(PRESENCE, presence.take_over(room.name, key, token, fresh))
                    known = await rooms.holding_open(room, taking_over)
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
            rooms.close_if_empty(room)
            raise NameTaken(f"{chosen!r} is already online in {room_key!r}")
        presence.joined(room.name, key, chosen, guest=True)  # to those already there
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
            self._presence.joined(room.name, key, account.name, guest=False)
            return await self._enter(room, created, last_seen, epoch)
        return await self._enter(room, member(identity=account), last_seen, epoch)

    def _new_member(self, room: Room, address: str | None, **parts: Any) -> Member:
        member = new_member(room, settings=self._settings, **parts)
        member.address = address
        return member

    async def _enter(self, room: Room, member: Member, last_seen: int | None, epoch: str | None) -> Session:
        """Admit `member`, whose name is now its own, with its welcome."""
        settings = self._settings
        stale = last_seen is not None and epoch is not None and epoch != room.epoch
        online = self._presence.online(room.name)
        resume = room.admit(member, online, None if stale else last_seen, settings.replay_limit, stale=stale)
        self._entered(member)
        if resume is not None:
            await self._resume(room, member, resume)
        return Session(self._dispatcher, room, member, settings)

    async def _take_over(
        self, holder: Member, room: Room, member: Member, last_seen: int | None, epoch: str | None
    ) -> Session:
        """Give `holder`'s name, as it is known, to a newer connection of the same client, and
        close `holder`; its claim, in the backend too, simply goes on."""
        self._presence.retoken(room.name, holder.key, member.token)
        room.hand_over(holder)
        self._replaced(holder)
        session = await self._enter(room, member, last_seen, epoch)
        holder.close(CloseCode.REPLACED, "Replaced by a newer connection of yours")
        return session

    async def _claim(self, room: Room, key: str, name: str, token: str, account: bool = False) -> bool:
        """Whether `name` is free in every process, and now ours (`Presence.claim`). A claim
        that cannot be made raises `BackendError`."""
        claiming = self._stats.timed(PRESENCE, self._presence.claim(room.name, key, name, token, account))
        return await self._rooms.holding_open(room, claiming)

    async def _resume(self, room: Room, member: Member, resume: Resume) -> None:
        try:
            messages, gap = await self._backend.since(room.name, resume.after, resume.upto, self._settings.replay_limit)
        except Exception:
            logger.exception("could not read the history of %s for %s", room.name, member.name)
            messages, gap = list(room.recent), True  # the latest we have; the client pages for the rest
        member.release(room.welcome(member, resume.online, messages, gap))


def _parse_since(since: str | None) -> int | None:
    if since is None:
        return None
    if not since.isascii() or not since.isdigit() or int(since) > MAX_ID:
        raise BadRequest(f"since must be a message id (a whole number from 0), but got {since[:40]!r}")
    return int(since)
