"""How far each account has read in each room (docs/protocol.md, "read"), so that the page
draws its "new since you left" line on any device the account uses.

The page reports the newest message it showed with `{"type":"read","id":ID}`; the highest
per account and room is kept (`ReadStore`, the backend's `reads`), written at most every
READ_EVERY seconds per account and room, whatever the page sends: the highest one waiting
is written then. The welcome of a signed-in connection says where the account had read
(`"read": ID`), as of the store and of this process. Guests keep theirs in their browser:
their `read` events are accepted, and change nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from app.core.protocol import Command, command, id_field

if TYPE_CHECKING:
    from app.core.hub import Hub
    from app.core.identity import Identity
    from app.core.member import Member
    from app.core.room import Room
    from app.core.session import Session

logger = logging.getLogger("chatroom")

READ_EVERY = 2.0  # seconds between two writes of one account's position in one room


@dataclass(frozen=True, slots=True)
class MarkRead(Command):
    """`{"type":"read","id":ID}`: the page showed the room's messages up to ID."""

    id: int


@command("read")
def _read(event: dict[str, Any]) -> MarkRead:
    found = id_field(event, "id")
    assert found is not None
    return MarkRead(found)


class Reads:
    def __init__(self, hub: Hub) -> None:
        self._hub = hub
        self._store = hub.backend.reads
        # What this process knows, for the accounts connected to it: key -> room -> position.
        self._known: dict[str, dict[str, int]] = {}
        self._written: dict[tuple[str, str], int] = {}  # what was written last (or is on its way)
        self._due: dict[tuple[str, str], asyncio.TimerHandle] = {}  # writes waiting for their turn
        self._last_write: dict[tuple[str, str], float] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def load(self, room: Room, identity: Identity, address: str | None) -> None:
        """Before an account's welcome (an admission check that refuses nobody): where it read."""
        if not identity.account:
            return
        try:
            position = await self._store.position(identity.key, room.name)
        except Exception:  # the welcome goes without it rather than not at all
            logger.exception("could not read where %s read in %s", identity.name, room.name)
            return
        if position is not None:
            rooms = self._known.setdefault(identity.key, {})
            rooms[room.name] = max(position, rooms.get(room.name, 0))
            self._written[(identity.key, room.name)] = max(position, self._written.get((identity.key, room.name), 0))

    def welcome_fields(self, room: Room, member: Member) -> dict[str, Any]:
        if member.identity.guest:
            return {}
        position = self._known.get(member.key, {}).get(room.name)
        return {"read": position} if position is not None else {}

    async def read(self, session: Session, command: MarkRead) -> None:
        identity = session.identity
        if identity.guest:
            return
        room = session.room
        position = command.id
        if room.recent:
            position = min(position, room.recent[-1].id)  # nothing beyond what the room has
        rooms = self._known.setdefault(identity.key, {})
        if position <= rooms.get(room.name, 0):
            return
        rooms[room.name] = position
        where = (identity.key, room.name)
        if where in self._due:
            return  # a write is waiting: it writes the highest
        loop = asyncio.get_running_loop()
        wait = self._last_write.get(where, -READ_EVERY) + READ_EVERY - loop.time()
        if wait > 0:
            self._due[where] = loop.call_later(wait, self._write, where)
        else:
            self._write(where)

    def _write(self, where: tuple[str, str]) -> None:
        self._due.pop(where, None)
        key, room = where
        position = self._known.get(key, {}).get(room, self._written.get(where, 0))
        if position <= self._written.get(where, 0):
            return
        self._written[where] = position
        self._last_write[where] = asyncio.get_running_loop().time()
        self._spawn(self._mark(key, room, position))

    async def _mark(self, key: str, room: str, position: int) -> None:
        try:
            await self._store.mark(key, room, position)
        except Exception:
            logger.exception("could not keep where %s read in %s", key, room)

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def disconnected(self, member: Member) -> None:
        if member.identity.account:
            asyncio.get_running_loop().call_soon(self._forget, member.key)

    def _forget(self, key: str) -> None:
        """The account has no connection here any more: what waits is written now, then forgotten."""
        if key in self._hub.connections:
            return
        for where in [where for where in self._due if where[0] == key]:
            self._due[where].cancel()
            self._write(where)
        self._known.pop(key, None)
        for table in (self._written, self._last_write):
            for where in [where for where in table if where[0] == key]:
                del table[where]

    async def stop(self) -> None:
        """Write what waits (the server is stopping, its connections closed)."""
        await asyncio.sleep(0)  # the forgetting of those that just closed first
        for where in list(self._due):
            self._due[where].cancel()
            self._write(where)
        if self._tasks:
            await asyncio.wait(set(self._tasks))


def install(hub: Hub) -> Reads:
    reads = Reads(hub)
    hub.on(MarkRead, reads.read)
    hub.admission.append(reads.load)
    hub.welcome_fields.append(reads.welcome_fields)
    hub.disconnected.append(reads.disconnected)
    hub.stopping.append(reads.stop)
    return reads
