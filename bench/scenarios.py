"""The scenarios: the same shapes as ../shared/bench/compare.sh, so figures can be set side by side."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from bench.load import Reader, Receivers, Tally, message, open_many, read_until_quiet, tls
from bench.server import Server
from bench.storm import Storm


@dataclass(frozen=True)
class Fanout:
    receivers: int
    senders: int
    rate: float = 0.0  # messages a second in all; 0 = flat out, `window` in flight per sender
    window: int = 64
    duration: float = 5.0
    senders_receive: bool = False  # the senders are receivers too (and count as such)


SCENARIOS: dict[str, Any] = {
    "fanout100": Fanout(receivers=100, senders=1, window=64),
    "fanout1000": Fanout(receivers=1000, senders=1, rate=200),
    "fanout50x50": Fanout(receivers=0, senders=50, rate=500, senders_receive=True),
    "idle2000": 2000,
    "history5000": 5000,
    "storm2000": Storm(2000),
    "storm10000": Storm(10000),
}


async def _send(
    connections: list[ClientConnection],
    fanout: Fanout,
    reader: Reader,
    until: float,
    sent: list[int],
    receivers: Receivers,
) -> None:
    """Each sender sends its share of the rate, or as fast as its window allows: at most
    `window` of its messages not yet delivered to every receiver."""

    async def echoes(index: int, connection: ClientConnection) -> None:
        async for frame in connection:
            if isinstance(frame, str):
                reader.frame(index, frame)

    async def send(index: int, connection: ClientConnection) -> None:
        interval = len(connections) / fanout.rate if fanout.rate else 0.0
        next_at = time.monotonic() + interval * index / len(connections)
        while time.monotonic() < until:
            if interval:
                next_at += interval
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            else:
                while sent[index] - 1 - receivers.delivered_to_all(index) >= fanout.window:
                    await asyncio.sleep(0.0005)
                    if time.monotonic() >= until:
                        return
            await connection.send(message(index, sent[index]))
            sent[index] += 1

    readers = [asyncio.ensure_future(echoes(index, connection)) for index, connection in enumerate(connections)]
    await asyncio.gather(*(send(index, connection) for index, connection in enumerate(connections)))
    for task in readers:
        task.cancel()


async def run_fanout(server: Server, fanout: Fanout, processes: int) -> dict[str, Any]:
    deadline = time.monotonic() + fanout.duration + 60
    receivers = Receivers(server.url, server.cafile, fanout.receivers, processes, fanout.duration + 300, fanout.senders)
    receivers.wait_ready(120)
    since = time.time_ns()
    senders = await open_many(server.url, server.cafile, [f"s{index}" for index in range(fanout.senders)])
    await asyncio.sleep(1.0)  # presence of everyone who just came has gone out
    sender_reader = Reader(since)
    sent = [0] * fanout.senders
    cpu_before, started = server.cpu_seconds(), time.monotonic()
    await _send(senders, fanout, sender_reader, started + fanout.duration, sent, receivers)
    if fanout.senders_receive:
        await read_until_quiet(senders, sender_reader, 0, lambda: True, deadline)
    tally = receivers.finish(60)
    if fanout.senders_receive:
        tally.add(sender_reader.tally)
    elapsed = time.monotonic() - started
    cpu = server.cpu_seconds() - cpu_before
    for connection in senders:
        await connection.close()
    total_sent = sum(sent)
    expected = total_sent * (fanout.receivers + (fanout.senders if fanout.senders_receive else 0))
    return _fanout_row(tally, total_sent, expected, elapsed, cpu)


def _fanout_row(tally: Tally, sent: int, expected: int, elapsed: float, cpu: float) -> dict[str, Any]:
    return {
        "sent": sent,
        "delivered": tally.delivered,
        "lost%": 100 * (expected - tally.delivered) / expected if expected else 0.0,
        "dropped": tally.dropped,
        "dups": tally.duplicates,
        "deliv/s": tally.delivered / elapsed if elapsed else 0.0,
        "p50ms": tally.percentile_ms(0.50),
        "p90ms": tally.percentile_ms(0.90),
        "p99ms": tally.percentile_ms(0.99),
        "maxms": tally.max_ns / 1e6,
        "per_frame": tally.delivered / tally.frames if tally.frames else 0.0,
        "cpu/1k": 1e6 * cpu / tally.delivered if tally.delivered else float("nan"),
    }


async def run_idle(server: Server, count: int, processes: int) -> dict[str, Any]:
    before = server.rss_bytes()
    cpu_before, started = server.cpu_seconds(), time.monotonic()
    connections = await open_many(server.url, server.cafile, [f"i{index}" for index in range(count)])
    connect_s = time.monotonic() - started
    await asyncio.sleep(3.0)  # hold them, as compare.sh's idle2000 does
    after = server.rss_bytes()

    async def answers(connection: ClientConnection) -> bool:
        try:
            await asyncio.wait_for(await connection.ping(), 10)
        except Exception:
            return False
        return True

    pongs = sum(await asyncio.gather(*(answers(connection) for connection in connections)))
    cpu = server.cpu_seconds() - cpu_before
    for connection in connections:
        await connection.close()
    return {
        "conns": count,
        "conn/s": count / connect_s,
        "cpu/conn ms": 1000 * cpu / count,
        "KiB/conn": (after - before) / 1024 / count,
        "rss MiB": after / 2**20,
        "pong": pongs,
    }


async def run_history(server: Server, count: int, repeats: int = 3) -> dict[str, Any]:
    since = time.time_ns()
    (writer,) = await open_many(server.url, server.cafile, ["writer"])
    reader = Reader(since)
    window = asyncio.Semaphore(64)
    stored = asyncio.Event()

    async def echoes() -> None:
        async for frame in writer:
            if isinstance(frame, str):
                for _ in reader.frame(0, frame):
                    window.release()
                if reader.tally.delivered >= count:
                    stored.set()

    echoing = asyncio.ensure_future(echoes())
    for seq in range(count):
        await window.acquire()
        await writer.send(message(0, seq))
    await asyncio.wait_for(stored.wait(), 120)
    echoing.cancel()
    last_text = f"bench:0:{count - 1}:"
    timings = []
    for repeat in range(repeats):
        started = time.monotonic()
        async with connect(f"{server.url}?name=newcomer{repeat}", ssl=tls(server.cafile), max_size=None) as fresh:
            welcome = await fresh.recv()
            timings.append(1000 * (time.monotonic() - started))
            assert isinstance(welcome, str)
            assert last_text in welcome, "the welcome lacks the last message"
    await writer.close()
    return {"stored": count, "welcome ms": min(timings), "runs": " ".join(f"{t:.1f}" for t in timings)}
