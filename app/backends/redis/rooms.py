"""`RoomState`: what one process knows of a room it reads, shared by its reader and its presence."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from app.backends.redis.commands import room_key
from app.core.identity import Online

if TYPE_CHECKING:
    from app.core.messages import Message


@dataclass(eq=False)
class RoomState:
    name: str
    messages_key: bytes
    presence_key: bytes
    names_key: bytes
    changes_key: bytes
    last_id: int = 0  # the last message delivered
    last_json: bytes = b""  # its wire JSON: another message with its id is another history's
    written: int = 0  # the highest id this process stored in the room
    # Messages stored here and not read back yet, by id: their senders wait for their echo.
    echoes: dict[int, tuple[asyncio.Future[Message], Message]] = field(default_factory=dict)
    presence_at: bytes = b"0-0"  # the last presence entry taken into `online`
    # Who is online as this process's clients were told: name key -> who, in the order they came.
    online: dict[str, Online] = field(default_factory=dict)
    # Changes read before the message they change (its entry not read yet, or deleted before
    # it was): by id, the message as it is now, delivered in its place.
    ahead: dict[int, Message] = field(default_factory=dict)

    @classmethod
    def of(cls, room: str) -> RoomState:
        return cls(
            room,
            room_key(b"messages", room),
            room_key(b"presence", room),
            room_key(b"names", room),
            room_key(b"changes", room),
        )
