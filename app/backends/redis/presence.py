"""`RedisPresence`: screen names unique across every process, and who is online in each room.

Names are claimed in Redis, so they are unique across processes, and every claim or
release writes a join or leave into the room's presence stream in the same script. Each
process keeps its own copy of who is online in its rooms (`RoomState.online`), changed
exactly when it delivers a join or leave to its clients, so a welcome's `online` and the
events after it fit together. An account's name may be held by several processes at once
(each holds it for its connections there); it leaves once the last lets go, which that
process learns from the stream like every other.

A process that stops sending heartbeats is taken for dead after `presence_ttl` seconds,
and the first other process to notice announces its users' leaves (scripts.BEAT); a
process that was taken for dead wrongly claims its names again, with the tokens of their
connections. When a new epoch begins, every name goes (`forget`).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from app.backends.base import Backend, BackendError, Presence
from app.backends.redis.commands import stream_id, token_hash
from app.backends.redis.rooms import RoomState
from app.backends.redis.writer import Args, Writer
from app.core.identity import Online
from app.core.protocol import join_event, leave_event

logger = logging.getLogger("chatroom.redis")


@dataclass(slots=True)
class Held:
    """A name this process holds in a room, as Redis has it."""

    name: str
    token: str  # the hash of the token of the connection holding it (`token_hash`)
    entry: bytes  # its join entry in `presence:ROOM`, which a take-over keeps
    account: bool = False  # an account's, which other processes may hold too

    @property
    def online(self) -> Online:
        return Online(self.name, not self.account)


class RedisPresence(Presence):
    def __init__(self, backend: Backend, writer: Writer, rooms: dict[str, RoomState], node: str) -> None:
        super().__init__(backend)
        self._writer = writer
        self._rooms = rooms  # the rooms this process reads, shared with the backend's reader
        self._node = node.encode()
        self._claims: dict[str, dict[str, Held]] = {}  # names held here: room -> key -> its claim

    def holds(self, room: str, key: str) -> bool:
        """Whether this process holds the name `key` in `room`."""
        return key in self._claims.get(room, {})

    async def claim(self, room: str, key: str, name: str, token: str | None = None, account: bool = False) -> bool:
        hashed = token_hash(token)
        epoch = self._backend.epoch
        claimed = self._writer.write(_claim(room, key, name, hashed, account))
        try:
            entry: bytes | None = await asyncio.shield(claimed)
        except asyncio.CancelledError:
            # The newcomer is gone, but its claim may yet succeed: let the name go if so.
            claimed.add_done_callback(lambda done: self._undo_claim(done, room, key, name))
            raise
        self._check_epoch(epoch)
        if entry is not None:
            self._claims.setdefault(room, {})[key] = Held(name, hashed, entry, account)
        return entry is not None

    def _check_epoch(self, epoch: str) -> None:
        if self._backend.epoch != epoch:
            # Claimed under the old epoch, whose names this process has let go since: it
            # counts for nothing in the new one.
            raise BackendError("the chat's history started anew while the name was claimed")

    def forget(self) -> None:
        """A new epoch: nothing held under the old one counts (the writer lets it all go)."""
        self._claims.clear()

    def _undo_claim(self, claimed: asyncio.Future[Any], room: str, key: str, name: str) -> None:
        if not claimed.cancelled() and claimed.exception() is None and claimed.result():
            self._writer.write(("r", room, key, leave_event(name)), wait=False)

    async def take_over(self, room: str, key: str, token: str, new_token: str) -> str | None:
        hashed = token_hash(new_token)
        epoch = self._backend.epoch
        taken = self._writer.write(("o", room, key, token_hash(token), hashed))
        try:
            found: tuple[str, bytes] | None = await asyncio.shield(taken)
        except asyncio.CancelledError:
            # The name as the others know it comes with the answer: a leave in that name.
            taken.add_done_callback(lambda done: self._undo_take_over(done, room, key))
            raise
        self._check_epoch(epoch)
        if found is None:
            return None
        name, entry = found
        self._claims.setdefault(room, {})[key] = Held(name, hashed, entry)
        return name

    def _undo_take_over(self, taken: asyncio.Future[Any], room: str, key: str) -> None:
        if not taken.cancelled() and taken.exception() is None and taken.result() is not None:
            self._undo_claim(taken, room, key, taken.result()[0])

    def retoken(self, room: str, key: str, token: str) -> None:
        held = self._claims.get(room, {}).get(key)
        if held is not None:
            held.token = token_hash(token)  # should this process be swept, it claims it again with this
        self._writer.write(("t", room, key, token_hash(token)), wait=False)

    def joined(self, room: str, key: str, name: str, guest: bool) -> None:
        state = self._rooms.get(room)
        if state is not None and key not in state.online:  # an account may be online from elsewhere
            state.online[key] = Online(name, guest)
            self._backend.deliver_here(room, join_event(name, guest))

    def left(self, room: str, key: str, name: str, guest: bool) -> None:
        state = self._rooms.get(room)
        if state is not None and guest:
            # An account's leave is told only if no other process holds it: the stream says.
            state.online.pop(key, None)
            self._backend.deliver_here(room, leave_event(name))
        held = self._claims.get(room)
        if held is not None:
            held.pop(key, None)
            if not held:
                del self._claims[room]
        self._writer.write(("r", room, key, leave_event(name)), wait=False)

    def online(self, room: str) -> list[Online]:
        state = self._rooms.get(room)
        return list(state.online.values()) if state is not None else []

    def is_online(self, room: str, key: str) -> bool:
        state = self._rooms.get(room)
        return state is not None and key in state.online

    def online_from(self, room: str, names: dict[bytes, bytes]) -> dict[str, Online]:
        """Who is online, from a copy of `names:ROOM`; this process's own names as it knows them."""
        ours = {key: held.online for key, held in self._claims.get(room, {}).items()}
        others: list[tuple[tuple[int, int], str, Online]] = []
        for key, value in names.items():
            holder, entry, kind, name = value.split(b"\n", 3)
            if holder != self._node:
                others.append((stream_id(entry), key.decode(), Online(name.decode(), kind == b"g")))
        online = {key: person for _, key, person in sorted(others) if key not in ours}
        online.update(ours)
        return online

    def undo(self, args: Args) -> Args | None:
        """What to write first in the next batch after `args` failed (see Writer)."""
        kind, room, key = args[0], str(args[1]), str(args[2]) if len(args) > 2 else ""
        if kind in ("r", "g"):
            return args  # a name must not stay held by nobody
        if kind == "c" and key not in self._claims.get(room, {}):
            # The script may have run before the connection broke: let the name go again. (A
            # name claimed again after a sweep stays claimed: the next heartbeat retries it.)
            return ("r", room, key, leave_event(str(args[3])))
        if kind == "o":
            # It may have run too, and the name be this process's with nobody to hold it; the
            # name itself is unknown, so the process it came from announces no leave (see
            # `entry`) and this one lets it go with the leave it was stored with.
            return ("r", room, key, b"")
        return None

    # What the reader brings

    def entry(self, state: RoomState, entry: bytes, fields: dict[bytes, bytes]) -> None:
        """An entry of the room's presence stream: another process's join, leave or move (or
        this one's own account leave, which it learns only here)."""
        if stream_id(entry) <= stream_id(state.presence_at):
            return
        state.presence_at = entry
        if fields[b"o"] == self._node and fields.get(b"s") != b"1":
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
            state.online[key] = Online(fields[b"n"].decode(), fields.get(b"g") != b"a")
        elif state.online.pop(key, None) is None:
            return
        self._backend.deliver_here(state.name, fields[b"e"])

    def _moved(self, state: RoomState, key: str, fields: dict[bytes, bytes]) -> None:
        """A newer connection of the same client, in process `o`, took the (guest's) name over
        from its connection in process `f`: nobody left. If that was here, the old connection goes."""
        if fields[b"f"] == self._node:
            held = self._claims.get(state.name)
            if held is not None and held.pop(key, None) is not None and not held:
                del self._claims[state.name]
            subscriber = self._backend.subscriber
            if subscriber is not None:
                subscriber.evict(state.name, key)
        if key not in state.online:
            # Its old connection had left here meanwhile, and that was told: it is back.
            name = fields[b"n"].decode()
            state.online[key] = Online(name, True)
            self._backend.deliver_here(state.name, join_event(name, guest=True))

    def refresh(self, state: RoomState, names: dict[bytes, bytes], latest: bytes | None) -> None:
        """After a reconnection: who is online now, from a copy of `names:ROOM` and the newest
        entry of the presence stream. This process's clients hear what changed meanwhile, and
        connections whose names were taken over meanwhile go (their moves were not read)."""
        held = self._claims.get(state.name, {})
        for key, mine in list(held.items()):
            owner = names.get(key.encode())
            holder, entry = owner.split(b"\n", 2)[:2] if owner is not None else (b"", b"")
            # Held elsewhere since the same join: taken over, not claimed anew once this process
            # had been taken for dead (claim_again deals with that). An account's name is held
            # by many: nobody takes it over.
            if not mine.account and holder != self._node and entry == mine.entry:
                del held[key]
                subscriber = self._backend.subscriber
                if subscriber is not None:
                    subscriber.evict(state.name, key)
        if not held:
            self._claims.pop(state.name, None)
        online = self.online_from(state.name, names)
        for key, person in list(state.online.items()):
            if key not in online:
                state.online.pop(key)
                self._backend.deliver_here(state.name, leave_event(person.name))
        for key, person in online.items():
            if key not in state.online:
                state.online[key] = person
                self._backend.deliver_here(state.name, join_event(person.name, person.guest))
        state.online = online
        if latest is not None:
            state.presence_at = latest

    @property
    def claims_any(self) -> bool:
        return bool(self._claims)

    async def claim_again(self) -> None:
        """Another process took this one for dead and announced its users' leaves: claim
        their names again (its own clients were never told they left)."""
        logger.warning("this process's presence had expired in Redis; claiming its names again")
        epoch = self._backend.epoch
        for room, claims in list(self._claims.items()):
            for key, held in list(claims.items()):
                if self._backend.epoch != epoch:
                    return  # a new epoch began: its names are claimed afresh, by newcomers
                name = held.name
                claimed = self._writer.write(_claim(room, key, name, held.token, held.account))
                try:
                    entry = await claimed
                except BackendError:
                    return  # Redis is out of reach again: the next heartbeat tries again
                if entry is None:
                    logger.warning("%r in room %r was taken meanwhile by another process", name, room)
                else:
                    held.entry = entry


def _claim(room: str, key: str, name: str, hashed_token: str, account: bool) -> Args:
    """The WRITE script's claim of a name (scripts.py)."""
    guest = not account
    return ("c", room, key, name, join_event(name, guest), leave_event(name), hashed_token, "a" if account else "g")
