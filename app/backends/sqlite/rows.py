"""A message as the `messages` table holds it (schema.py), and back."""

from __future__ import annotations

from typing import Any

import orjson

from app.core.messages import Message

# What every read of messages selects, in this order (`message_of` reads them).
SELECT = "SELECT id, name, text, ts, guest, edited_ts, deleted, reactions FROM messages"


def message_of(room: str, row: tuple[Any, ...]) -> Message:
    id, name, text, ts, guest, edited_ts, deleted, reactions = row
    counts = orjson.loads(reactions) if reactions else None
    return Message(room, id, name, text, ts, bool(guest), edited_ts, bool(deleted), counts)
