"""The load client: receivers spread over worker processes, senders in the main one.

Every message a sender sends is the text `bench:<sender>:<seq>:<unix ns>`; receivers find
every such stamp in every frame (the server may batch many events into one frame), count
each (sender, seq) once, and measure latency as receive time minus the stamp, on the same
machine clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import multiprocessing
import re
import ssl
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

STAMP = re.compile(r"bench:(\d+):(\d+):(\d+)")
BUCKETS_PER_OCTAVE = 16  # latency histogram resolution: about 4 %
CONNECT_CONCURRENCY = 50
QUIET = 1.0  # seconds without a frame after the senders stopped: everything has arrived


def message(sender: int, seq: int) -> str:
    return json.dumps({"type": "message", "text": f"bench:{sender}:{seq}:{time.time_ns()}"})


@dataclass
class Tally:
    """What a group of receivers saw; tallies of several processes add up."""

    delivered: int = 0
    duplicates: int = 0
    frames: int = 0
    dropped: int = 0  # receivers the server closed during the run
    histogram: Counter[int] = field(default_factory=Counter)
    max_ns: int = 0
    last_ns: int = 0  # when the last delivery arrived

    def add(self, other: Tally) -> None:
        self.delivered += other.delivered
        self.duplicates += other.duplicates
        self.frames += other.frames
        self.dropped += other.dropped
        self.histogram.update(other.histogram)
        self.max_ns = max(self.max_ns, other.max_ns)
        self.last_ns = max(self.last_ns, other.last_ns)

    def percentile_ms(self, fraction: float) -> float:
        total = sum(self.histogram.values())
        if not total:
            return math.nan
        wanted, seen = fraction * total, 0
        for bucket in sorted(self.histogram):
            seen += self.histogram[bucket]
            if seen >= wanted:
                return float(2 ** ((bucket + 0.5) / BUCKETS_PER_OCTAVE) / 1e6)
        return self.max_ns / 1e6


class Reader:
    """Counts the stamped messages in the frames of one or more connections."""

    def __init__(self, since_ns: int) -> None:
        self.since_ns = since_ns  # stamps older than this are history, not this run
        self.tally = Tally()
        self.last_seq: dict[tuple[int, int], int] = {}  # (receiver, sender) -> last seq seen
        self.last_frame = time.monotonic()

    def frame(self, receiver: int, text: str) -> list[tuple[int, int]]:
        """Count a frame's stamps; returns the (sender, seq) pairs newly delivered."""
        now = time.time_ns()
        tally = self.tally
        tally.frames += 1
        self.last_frame = time.monotonic()
        fresh = []
        for sender_text, seq_text, stamp_text in STAMP.findall(text):
            stamp = int(stamp_text)
            if stamp < self.since_ns:
                continue
            sender, seq = int(sender_text), int(seq_text)
            key = (receiver, sender)
            if seq <= self.last_seq.get(key, -1):
                tally.duplicates += 1
                continue
            self.last_seq[key] = seq
            tally.delivered += 1
            latency = max(now - stamp, 1000)
            tally.histogram[int(math.log2(latency) * BUCKETS_PER_OCTAVE)] += 1
            tally.max_ns = max(tally.max_ns, latency)
            tally.last_ns = now
            fresh.append((sender, seq))
        return fresh


def tls(cafile: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cafile))


async def open_many(url: str, cafile: Path, names: list[str]) -> list[ClientConnection]:
    """Connect one client per name, a few at a time."""
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    context = tls(cafile)

    async def one(name: str) -> ClientConnection:
        async with gate:
            # max_queue=None: a connection nobody reads for a while (idle) still takes frames
            # in, so it answers pings as a real client would.
            connection = await connect(
                f"{url}?name={name}", ssl=context, max_size=None, max_queue=None, open_timeout=30, ping_interval=None
            )
            await connection.recv()  # the welcome
            return connection

    return list(await asyncio.gather(*(one(name) for name in names)))


async def read_until_quiet(
    connections: list[ClientConnection],
    reader: Reader,
    first: int,
    done: Callable[[], bool],
    deadline: float,
    progress: Any = None,
) -> None:
    """Read every connection until `done()` and no frame came for QUIET seconds, or `deadline`.

    `progress`, a shared array with a slot per sender, is kept at the lowest seq of each
    sender that every one of these connections has received: the senders' window.
    """

    async def read(index: int, connection: ClientConnection) -> None:
        try:
            async for frame in connection:
                if isinstance(frame, str):
                    reader.frame(first + index, frame)
        except ConnectionClosed:
            pass
        if not done():
            reader.tally.dropped += 1

    tasks = [asyncio.ensure_future(read(index, connection)) for index, connection in enumerate(connections)]
    receivers = range(first, first + len(connections))
    while time.monotonic() < deadline and not (done() and time.monotonic() - reader.last_frame > QUIET):
        await asyncio.sleep(0.002 if progress is not None else 0.05)
        if progress is not None:
            last = reader.last_seq
            for sender in range(len(progress)):
                progress[sender] = min(last.get((receiver, sender), -1) for receiver in receivers)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


# Receivers in worker processes


def _receivers(url: str, cafile: str, first: int, count: int, pipe: Connection, timeout: float, progress: Any) -> None:
    asyncio.run(_receivers_async(url, Path(cafile), first, count, pipe, time.monotonic() + timeout, progress))


async def _receivers_async(
    url: str, cafile: Path, first: int, count: int, pipe: Connection, deadline: float, progress: Any
) -> None:
    since = time.time_ns()
    connections = await open_many(url, cafile, [f"r{first + index}" for index in range(count)])
    pipe.send("ready")
    reader = Reader(since)
    stopped = asyncio.Event()
    asyncio.get_running_loop().add_reader(pipe.fileno(), stopped.set)  # the parent's "senders done"
    await read_until_quiet(connections, reader, first, stopped.is_set, deadline, progress)
    pipe.send(reader.tally)
    for connection in connections:
        with contextlib.suppress(Exception):
            await connection.close()


class Receivers:
    """`count` receivers shared among `processes` worker processes."""

    def __init__(self, url: str, cafile: Path, count: int, processes: int, timeout: float, senders: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.pipes: list[Connection] = []
        self.workers: list[Any] = []
        self.progress: list[Any] = []  # per worker, per sender: the seq all its receivers have
        shares = [count // processes + (1 if index < count % processes else 0) for index in range(processes)]
        first = 0
        for share in shares:
            if not share:
                continue
            ours, theirs = context.Pipe()
            progress = context.Array("q", [-1] * senders, lock=False)
            worker = context.Process(
                target=_receivers, args=(url, str(cafile), first, share, theirs, timeout, progress)
            )
            self.progress.append(progress)
            worker.start()
            self.pipes.append(ours)
            self.workers.append(worker)
            first += share

    def delivered_to_all(self, sender: int) -> int:
        """The last seq of `sender` that every receiver has (-1: none yet)."""
        return min((progress[sender] for progress in self.progress), default=1 << 62)

    def wait_ready(self, timeout: float) -> None:
        for pipe in self.pipes:
            if not pipe.poll(timeout) or pipe.recv() != "ready":
                raise TimeoutError("receivers did not connect in time")

    def finish(self, timeout: float) -> Tally:
        total = Tally()
        for pipe in self.pipes:
            pipe.send("stop")
        for pipe in self.pipes:
            if pipe.poll(timeout):
                total.add(pipe.recv())
        for worker in self.workers:
            worker.join(5)
            if worker.is_alive():
                worker.kill()
        return total
