"""`Message`: one chat message as stored in history and sent on the wire.

This module is the one place that builds a message's wire form (docs/protocol.md,
"message"). A shared backend assigns the id and the time itself (the Redis scripts), so the
form is built in parts: `WIRE_HEAD`, the id, `wire_middle(...)`, the time, `WIRE_END`. The
time comes last, and the Redis retention script reads it there.
"""

from __future__ import annotations

import time

import orjson

WIRE_HEAD = b'{"type":"message","id":'
WIRE_END = b"}"


def wire_middle(room: str, name: str, text: str, guest: bool = False) -> bytes:
    """The wire form between the id and the time; a guest's message says so."""
    if guest:
        fields = orjson.dumps({"room": room, "name": name, "text": text, "guest": True})
    else:
        fields = orjson.dumps({"room": room, "name": name, "text": text})
    return b"%s%s%s" % (b",", fields[1:-1], b',"ts":')


def wire_form(id: int, middle: bytes, ts: int | bytes) -> bytes:
    """A message event's JSON from its parts; `ts` may be the digits as Redis gave them."""
    if isinstance(ts, int):
        return b"%s%d%s%d%s" % (WIRE_HEAD, id, middle, ts, WIRE_END)
    return b"%s%d%s%s%s" % (WIRE_HEAD, id, middle, ts, WIRE_END)


class Message:
    """A stored chat message. Its wire form (`json`, UTF-8 bytes) is built once, when it is created.

    `id` is unique within its room and increases; `ts` is the server's clock when the
    message was accepted, in milliseconds since the Unix epoch (UTC).
    """

    __slots__ = ("_guest", "_name", "_text", "_ts", "id", "json", "room")

    def __init__(self, room: str, id: int, name: str, text: str, ts: int, guest: bool = False) -> None:
        self.room = room
        self.id = id
        self._name: str | None = name
        self._text: str | None = text
        self._ts: int | None = ts
        self._guest: bool | None = guest
        self.json = wire_form(id, wire_middle(room, name, text, guest), ts)

    @classmethod
    def from_json(cls, room: str, id: int, json: bytes) -> Message:
        """A message read back in its wire form, as a shared backend stores it.

        Nothing is serialised again: the fan-out needs only `json` and `id`, so `name`,
        `text` and `ts` are parsed out of `json` the first time one of them is asked for.
        """
        message = cls.__new__(cls)
        message.room = room
        message.id = id
        message.json = json
        message._name = message._text = message._ts = message._guest = None
        return message

    def _parse(self) -> None:
        fields = orjson.loads(self.json)
        self._name, self._text, self._ts = fields["name"], fields["text"], fields["ts"]
        self._guest = fields.get("guest", False)

    @property
    def name(self) -> str:
        if self._name is None:
            self._parse()
        assert self._name is not None
        return self._name

    @property
    def text(self) -> str:
        if self._text is None:
            self._parse()
        assert self._text is not None
        return self._text

    @property
    def ts(self) -> int:
        if self._ts is None:
            self._parse()
        assert self._ts is not None
        return self._ts

    @property
    def guest(self) -> bool:
        """Whether a guest wrote it (not an account)."""
        if self._guest is None:
            self._parse()
        assert self._guest is not None
        return self._guest

    def __repr__(self) -> str:
        return f"Message(room={self.room!r}, id={self.id}, name={self.name!r}, ts={self.ts})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Message) and self.json == other.json

    def __hash__(self) -> int:
        return hash(self.json)


def now_ms() -> int:
    """Server time for `ts`: milliseconds since the Unix epoch."""
    return time.time_ns() // 1_000_000
