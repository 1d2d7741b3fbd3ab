"""`Message`: one chat message as stored in history and sent on the wire."""

from __future__ import annotations

import time

import orjson


class Message:
    """A stored chat message. Its wire form (`json`, UTF-8 bytes) is built once, when it is created.

    `id` is unique within its room and increases; `ts` is the server's clock when the
    message was accepted, in milliseconds since the Unix epoch (UTC).
    """

    __slots__ = ("id", "json", "name", "room", "text", "ts")

    def __init__(self, room: str, id: int, name: str, text: str, ts: int) -> None:
        self.room = room
        self.id = id
        self.name = name
        self.text = text
        self.ts = ts
        self.json = orjson.dumps({"type": "message", "id": id, "room": room, "name": name, "text": text, "ts": ts})

    def __repr__(self) -> str:
        return f"Message(room={self.room!r}, id={self.id}, name={self.name!r}, ts={self.ts})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Message) and self.json == other.json

    def __hash__(self) -> int:
        return hash(self.json)


def now_ms() -> int:
    """Server time for `ts`: milliseconds since the Unix epoch."""
    return time.time_ns() // 1_000_000
