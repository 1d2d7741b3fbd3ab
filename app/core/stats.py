"""`Stats`: what the process has done, in plain integers, counted where the work happens.

The counts are kept per batch, per frame and per connection, never per delivery or per
write: a chat message fans out to every member, and the fan-out must cost what it cost
before it was counted. Nothing here knows Prometheus; the web layer turns these counts into
its metrics off the hot path, when it is scraped or once a second (app/web/metrics.py).
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Awaitable
from typing import TypeVar

from app.core.protocol import CloseCode

# Upper bounds, in seconds, of the latency buckets of backend operations: from a SQLite
# commit (well under a millisecond) to a Redis that takes its time (seconds).
LATENCY_BOUNDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# The backend operations whose latency is measured.
STORE = "store"  # publishing a message until it is stored
READ = "read"  # reading history: a room's latest messages, a page, what a resuming client missed
PRESENCE = "presence"  # claiming a name, taking one over from another process
OPERATIONS = (STORE, READ, PRESENCE)

# Close codes counted under their own label; a peer may close with any code from 1000 to
# 4999, and each label is a time series kept for good: the rest count as "other".
NO_CLOSE = 1006  # what a connection that ended without a close frame counts as (RFC 6455, 7.1.5)
KNOWN_CLOSE_CODES = frozenset({*CloseCode, 1005, NO_CLOSE, 1011})  # 1005: a close without a code; 1011: our bug
SERVER, CLIENT = "server", "client"

_Answer = TypeVar("_Answer")


def close_label(code: int) -> str:
    return str(code) if code in KNOWN_CLOSE_CODES else "other"


class Latency:
    """A histogram in plain integers: how many observations fell in each bucket of
    LATENCY_BOUNDS (the last one: above them all), and their sum."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BOUNDS) + 1)
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(LATENCY_BOUNDS, seconds)] += 1
        self.total += seconds

    @property
    def count(self) -> int:
        return sum(self.counts)


class Stats:
    """Counts since the process started; they only grow. docs/operations.md says what each means."""

    __slots__ = (
        "bytes",
        "closed",
        "delivered",
        "frames",
        "latency",
        "opened",
        "pacing_seconds",
        "pacing_stalls",
        "received",
        "refused",
        "sign_in_failures",
        "sign_ins",
        "slow_readers",
        "stalled_readers",
        "stored",
    )

    def __init__(self) -> None:
        self.opened = 0  # WebSocket connections that reached the app
        # (close code, who closed: "server" or "client") -> connections closed so
        self.closed: defaultdict[tuple[str, str], int] = defaultdict(int)
        self.received = 0  # frames received from clients, whatever they held
        self.stored = 0  # messages published here that the backend stored
        self.refused: defaultdict[str, int] = defaultdict(int)  # error code -> client events refused with it
        self.delivered = 0  # chat messages handed to connections by the rooms' fan-out, one per connection
        self.frames = 0  # frames handed to connections, one per connection
        self.bytes = 0  # and their payload bytes
        self.slow_readers = 0  # connections closed for being too slow (1013)
        self.stalled_readers = 0  # of which: their socket took nothing while their room waited
        self.pacing_stalls = 0  # times a sender was held back until its room or the backend kept up
        self.pacing_seconds = 0.0  # and for how long, in all
        self.sign_ins = 0
        self.sign_in_failures: defaultdict[str, int] = defaultdict(int)  # why (the API's error) -> count
        self.latency = {operation: Latency() for operation in OPERATIONS}

    @property
    def open(self) -> int:
        """Connections open now: every one opened is closed once."""
        return self.opened - sum(self.closed.values())

    def closed_with(self, code: int, by: str) -> None:
        """A connection ended: closed with `code` by the `SERVER` or the `CLIENT`."""
        self.closed[close_label(code), by] += 1

    async def timed(self, operation: str, answer: Awaitable[_Answer]) -> _Answer:
        """The backend's `answer`, its latency counted under `operation` (STORE, READ, PRESENCE).

        Adds no suspension of its own: what answers without suspending still does.
        """
        started = time.monotonic()
        try:
            return await answer
        finally:
            self.latency[operation].observe(time.monotonic() - started)
