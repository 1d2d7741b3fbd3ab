"""`Message`: one chat message as stored in history and sent on the wire.

This module is the one place that builds a message's wire form (docs/protocol.md,
"message"). A shared backend assigns the id and the time itself (the Redis scripts), so the
form is built in parts: `WIRE_HEAD`, the id, `wire_middle(...)`, the time, `WIRE_END`. The
time comes last, and the Redis retention script reads it there.

A stored message may change afterwards (app/core/changes.py): its latest state says so, in
fields between the text and the time, always in this order: `edited_ts` (when its text was
last edited), `deleted` (a tombstone: its text is gone), `reactions` (counts, in the order
of `REACTIONS`). The Redis scripts build the same bytes from the same parts.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

WIRE_HEAD = b'{"type":"message","id":'
WIRE_END = b"}"

# The reactions anyone may give (docs/protocol.md, "react"): a small fixed set, so that a
# message carries at most this many counts, in this order. Each is sent with or without
# the emoji presentation selector U+FE0F; it is kept in the spelling here.
REACTIONS = ("👍", "❤️", "😂", "🎉", "😮", "😢", "👀", "🙏")
_PRESENTATION = "\ufe0f"
_BY_BASE = {reaction.replace(_PRESENTATION, ""): reaction for reaction in REACTIONS}

Reactions = dict[str, int]  # emoji -> how many people gave it (never 0), in the order of REACTIONS


def reaction(emoji: str) -> str | None:
    """The reaction of REACTIONS that `emoji` spells, if any."""
    return _BY_BASE.get(emoji.replace(_PRESENTATION, ""))


def ordered(counts: dict[str, int]) -> Reactions:
    """`counts` without zeros, in the order of REACTIONS."""
    return {emoji: counts[emoji] for emoji in REACTIONS if counts.get(emoji, 0) > 0}


def wire_core(room: str, name: str, text: str, guest: bool = False) -> bytes:
    """The fields after the id that a message has from the start: `,"room":…,"name":…,"text":…`
    and, for a guest's, `,"guest":true`."""
    if guest:
        fields = orjson.dumps({"room": room, "name": name, "text": text, "guest": True})
    else:
        fields = orjson.dumps({"room": room, "name": name, "text": text})
    return b"," + fields[1:-1]


def wire_changes(edited_ts: int | None = None, deleted: bool = False, reactions: Reactions | None = None) -> bytes:
    """The fields a change adds before the time, in their one order."""
    parts = []
    if edited_ts is not None:
        parts.append(b',"edited_ts":%d' % edited_ts)
    if deleted:
        parts.append(b',"deleted":true')
    if reactions:
        parts.append(b',"reactions":' + orjson.dumps(reactions))
    return b"".join(parts)


def wire_middle(
    room: str,
    name: str,
    text: str,
    guest: bool = False,
    edited_ts: int | None = None,
    deleted: bool = False,
    reactions: Reactions | None = None,
) -> bytes:
    """The wire form between the id and the time; a guest's message says so."""
    core = wire_core(room, name, text, guest)
    if edited_ts is None and not deleted and not reactions:  # every new message
        return core + b',"ts":'
    return core + wire_changes(edited_ts, deleted, reactions) + b',"ts":'


def wire_form(id: int, middle: bytes, ts: int | bytes) -> bytes:
    """A message event's JSON from its parts; `ts` may be the digits as Redis gave them."""
    if isinstance(ts, int):
        return b"%s%d%s%d%s" % (WIRE_HEAD, id, middle, ts, WIRE_END)
    return b"%s%d%s%s%s" % (WIRE_HEAD, id, middle, ts, WIRE_END)


class Message:
    """A stored chat message. Its wire form (`json`, UTF-8 bytes) is built once, when it is created.

    `id` is unique within its room and increases; `ts` is the server's clock when the
    message was accepted, in milliseconds since the Unix epoch (UTC). A message that changed
    is another `Message` with the same id (`edited`, `deleted`, `with_reactions`).
    """

    __slots__ = ("_fields", "_guest", "_name", "_text", "_ts", "id", "json", "room")

    def __init__(
        self,
        room: str,
        id: int,
        name: str,
        text: str,
        ts: int,
        guest: bool = False,
        edited_ts: int | None = None,
        deleted: bool = False,
        reactions: Reactions | None = None,
    ) -> None:
        self.room = room
        self.id = id
        self._name: str | None = name
        self._text: str | None = text
        self._ts: int | None = ts
        self._guest: bool | None = guest
        self._fields: dict[str, Any] | None = None
        if edited_ts is not None or deleted or reactions:
            self._fields = {"edited_ts": edited_ts, "deleted": deleted, "reactions": dict(reactions or {})}
        self.json = wire_form(id, wire_middle(room, name, text, guest, edited_ts, deleted, reactions), ts)

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
        message._name = message._text = message._ts = message._guest = message._fields = None
        return message

    def _parse(self) -> None:
        fields = orjson.loads(self.json)
        self._name, self._text, self._ts = fields["name"], fields["text"], fields["ts"]
        self._guest = fields.get("guest", False)
        self._fields = {
            "edited_ts": fields.get("edited_ts"),
            "deleted": fields.get("deleted", False),
            "reactions": fields.get("reactions", {}),
        }

    @property
    def name(self) -> str:
        if self._name is None:
            self._parse()
        assert self._name is not None
        return self._name

    @property
    def text(self) -> str:
        """What it says now: its latest edit, or "" once deleted."""
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

    def _changes(self) -> dict[str, Any]:
        if self._fields is None:
            if self._name is not None:
                return _UNCHANGED  # built here with nothing changed
            self._parse()
        assert self._fields is not None
        return self._fields

    @property
    def edited_ts(self) -> int | None:
        """When its text was last edited (ms), if it was."""
        value: int | None = self._changes()["edited_ts"]
        return value

    @property
    def deleted(self) -> bool:
        """Whether it is a tombstone: deleted, its text gone from the store."""
        return bool(self._changes()["deleted"])

    @property
    def reactions(self) -> Reactions:
        counts: Reactions = self._changes()["reactions"]
        return dict(counts)

    def edited(self, text: str, edited_ts: int) -> Message:
        """This message with a new text, as of `edited_ts`; its reactions stay."""
        return Message(self.room, self.id, self.name, text, self.ts, self.guest, edited_ts, False, self.reactions)

    def tombstone(self) -> Message:
        """What stays of it once deleted: who wrote it and when, not what."""
        return Message(self.room, self.id, self.name, "", self.ts, self.guest, deleted=True)

    def with_reactions(self, reactions: Reactions) -> Message:
        return Message(
            self.room, self.id, self.name, self.text, self.ts, self.guest, self.edited_ts, False, ordered(reactions)
        )

    def __repr__(self) -> str:
        return f"Message(room={self.room!r}, id={self.id}, name={self.name!r}, ts={self.ts})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Message) and self.json == other.json

    def __hash__(self) -> int:
        return hash(self.json)


_UNCHANGED: dict[str, Any] = {"edited_ts": None, "deleted": False, "reactions": {}}


def now_ms() -> int:
    """Server time for `ts`: milliseconds since the Unix epoch."""
    return time.time_ns() // 1_000_000
