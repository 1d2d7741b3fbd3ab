"""Searching a room's messages, and reading them around one it found (docs/protocol.md,
"Search"): what a query may be, who may search, and how often. The backend's
`ChangeStore.search` finds the messages (on SQLite, in its full-text index).

Who may: everyone who may enter the room (an account, or a guest where the server has
guests), unless a check of `Hub.may_read` says no (a members-only room's, for one).
How often: SEARCH_BURST searches at once from one address, then SEARCH_RATE a second
(counted in each process; off with CHAT_RATE_LIMIT=0); reading around a message counts as
a search.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from app.core.limits import TokenBucket
from app.core.protocol import MAX_ID
from app.core.words import Phrase, phrases_of

if TYPE_CHECKING:
    from app.core.hub import Hub
    from app.core.identity import Identity
    from app.core.messages import Message
    from app.settings import Settings

MAX_QUERY = 200  # characters in a query
MAX_PHRASES = 8  # words in a query
SEARCH_PAGE = 20  # messages in a page of results
AROUND = 10  # messages before and after the one a search found, to read it in context
SEARCH_RATE, SEARCH_BURST = 1.0, 5  # searches a second per address, and at once
REMEMBERED = 10_000  # addresses whose searches are counted before the idle ones are forgotten


class BadQuery(ValueError):
    """A query that cannot be searched for; the message says why."""


class Search:
    def __init__(self, hub: Hub, settings: Settings) -> None:
        self._hub = hub
        self._settings = settings
        self._buckets: dict[str, tuple[TokenBucket, float]] = {}  # address -> its bucket, last used

    @staticmethod
    def phrases(query: str) -> list[Phrase]:
        """The phrases to look for (app/core/words.py); `BadQuery` if there are none or too many."""
        if len(query) > MAX_QUERY:
            raise BadQuery(f"A search is at most {MAX_QUERY} characters")
        phrases = phrases_of(query)
        if not phrases:
            raise BadQuery("Search for a word: letters or digits")
        if len(phrases) > MAX_PHRASES:
            raise BadQuery(f"A search is at most {MAX_PHRASES} words")
        return phrases

    def wait(self, address: str) -> float:
        """0 if `address` may search now (which it then does), else the seconds until it may."""
        if not self._settings.rate_limit:
            return 0.0  # CHAT_RATE_LIMIT=0 switches every rate limit off
        now = asyncio.get_running_loop().time()
        found = self._buckets.get(address)
        if found is None:
            if len(self._buckets) >= REMEMBERED:
                # A bucket unused for this long is full again: forgetting it changes nothing.
                idle = SEARCH_BURST / SEARCH_RATE
                self._buckets = {known: kept for known, kept in self._buckets.items() if now - kept[1] < idle}
            bucket = TokenBucket(SEARCH_RATE, SEARCH_BURST, now)
        else:
            bucket = found[0]
        self._buckets[address] = (bucket, now)
        if bucket.take(now):
            return 0.0
        return 1.0 / SEARCH_RATE

    async def may_read(self, room: str, identity: Identity | None, address: str | None) -> bool:
        """Whether who asks (an account, or None: a guest) from `address` (its address key;
        None: a Unix socket's) may read `room` from outside it."""
        if identity is None and not self._settings.guests_allowed:
            return False
        for check in self._hub.may_read:
            if not await check(room, identity, address):
                return False
        return True

    async def find(self, room: str, phrases: list[Phrase], before: int | None) -> tuple[list[Message], bool]:
        """A page of the messages that match, newest first, and whether more match before them."""
        return await self._hub.backend.changes.search(room, phrases, before, SEARCH_PAGE)

    async def around(self, room: str, id: int) -> list[Message]:
        """The message `id` (if it is still there) with AROUND messages before and after it, oldest first."""
        messages, _ = await self._hub.backend.history(room, min(id + AROUND + 1, MAX_ID), 2 * AROUND + 1)
        return [message for message in messages if message.id >= id - AROUND]
