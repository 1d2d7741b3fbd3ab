"""`RoomState`: what one process knows of a room it reads, shared by its reader and its presence."""

from __future__ import annotations

from dataclasses import dataclass, field

from app.backends.redis.commands import room_key
from app.core.identity import Online


@dataclass(eq=False)
class RoomState:
    name: str
    messages_key: bytes
    presence_key: bytes
    names_key: bytes
    last_id: int = 0  # the last message delivered
    presence_at: bytes = b"0-0"  # the last presence entry taken into `online`
    # Who is online as this process's clients were told: name key -> who, in the order they came.
    online: dict[str, Online] = field(default_factory=dict)

    @classmethod
    def of(cls, room: str) -> RoomState:
        return cls(room, room_key(b"messages", room), room_key(b"presence", room), room_key(b"names", room))
