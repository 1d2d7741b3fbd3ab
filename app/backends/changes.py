"""The seam of what happens to stored messages after they are sent (app/core/changes.py):
edits, deletions and reactions, and searching what the messages say now.

Every change is stored, then delivered to every process that reads the room, this one's
included (`Subscriber.changed`), as messages are: each process's cache of a room's recent
messages, and so each welcome, holds the latest state. History, welcomes and resumes read
the latest state from the store too: the text with `edited_ts`, a tombstone in place of a
deleted message (its text gone from the store), and the `reactions` counted.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.core.messages import Message
    from app.core.words import Phrase

# A search reaches back this far on backends without an index of their own (the latest
# messages of the room it scans: Redis; memory:// scans all it keeps, which is fewer).
SEARCH_REACH = 10_000


class ChangeStore(ABC):
    @abstractmethod
    async def message(self, room: str, id: int) -> Message | None:
        """The message as it is now (a tombstone if it was deleted); None if the room has no
        message with that id (never had one, or retention let it go)."""

    @abstractmethod
    async def edit(self, message: Message, text: str, edited_ts: int) -> Message | None:
        """Give `message` a new text, keeping its reactions; the message as it is now, or
        None if it is deleted or gone meanwhile."""

    @abstractmethod
    async def delete(self, message: Message) -> Message | None:
        """Delete `message`: its text is gone from the store for good, and a tombstone takes its
        place (who wrote it, when). The tombstone, or None if it was deleted or gone already."""

    @abstractmethod
    async def react(self, room: str, id: int, key: str, emoji: str) -> Message | None:
        """Toggle the reaction `emoji` of the person whose name key is `key` (one person counts
        once per emoji); the message with its counts now, or None if it is deleted or gone."""

    @abstractmethod
    async def search(
        self, room: str, phrases: list[Phrase], before: int | None, limit: int
    ) -> tuple[list[Message], bool]:
        """The `limit` newest messages of `room` before id `before` (None: the newest) whose
        text now holds every phrase (app/core/words.py), newest first; tombstones never. And
        whether more match before them."""

    @property
    def reach(self) -> int | None:
        """How many of a room's latest messages a search looks at; None: every one kept."""
        return None
