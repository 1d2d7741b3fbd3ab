"""`Scrub`: a deleted message's words, gone from the search index.

Deleting from an FTS5 index adds a record that the words are gone; the words themselves
stay in the index's older segments until those are merged. So after a deletion the index
is merged into one segment (FTS5's incremental 'merge' with a negative size, which does
what 'optimize' does, a little at a time): a few pages per transaction on the event loop,
yielding in between, like retention, so commits never wait long behind it. Then the
backend truncates the write-ahead log, which holds older copies of the pages.
(`PRAGMA secure_delete` zeroes what is freed meanwhile.)
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable

from app.backends.sqlite.files import transaction

MERGE_PAGES = 50  # pages one step merges: a few milliseconds on the event loop


class Scrub:
    def __init__(self, writer: Callable[[], sqlite3.Connection]) -> None:
        self._writer = writer
        self.due = False  # a message was deleted since the last scrub

    async def run(self) -> bool:
        """Merge the search index until nothing is left to merge (or, with messages arriving
        all along, until the index as it was has been merged); True once done."""
        self.due = False
        db = self._writer()
        (pages,) = db.execute("SELECT count(*) FROM search_data").fetchone()
        for _ in range(2 * pages // MERGE_PAGES + 10):
            before = db.total_changes
            with transaction(db):
                db.execute("INSERT INTO search (search, rank) VALUES ('merge', ?)", (-MERGE_PAGES,))
            if db.total_changes - before < 2:  # FTS5: nothing was merged
                return True
            await asyncio.sleep(0)
        return True
