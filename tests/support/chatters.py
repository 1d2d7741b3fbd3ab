"""People chatting at the pace people type, each timing every chatter's message to them:
the latency that a test of load or abuse keeps an eye on."""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time

from websockets.exceptions import ConnectionClosed

from tests.support.servers import Peer


class Chat:
    """People chatting within the rate limit, each timing every chatter's message to them."""

    def __init__(self, peers: list[Peer]) -> None:
        self.peers = peers
        self.latencies: list[float] = []
        self.flood_seen = 0
        self._expected = 0
        self._received = 0
        self._arrived = asyncio.Condition()
        self._readers = [asyncio.ensure_future(self._read(peer)) for peer in peers]

    async def _read(self, peer: Peer) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                event = await peer.next(timeout=60)
                if event["type"] != "message":
                    continue
                if event["name"].startswith("flood-"):
                    self.flood_seen += 1
                    continue
                self.latencies.append(time.monotonic() - float(event["text"].split()[1]))
                async with self._arrived:
                    self._received += 1
                    self._arrived.notify_all()

    async def talk(self, seconds: float, interval: float = 0.25) -> list[float]:
        """Each says something every `interval` (4 a second: under the limit of 5) for `seconds`;
        returns the latencies of this round once every message has reached every chatter."""
        first = len(self.latencies)
        deadline = time.monotonic() + seconds
        number = 0
        while time.monotonic() < deadline:
            for peer in self.peers:
                await peer.say(f"{number} {time.monotonic()}")
            self._expected += len(self.peers) ** 2
            number += 1
            await asyncio.sleep(interval)  # the pace of people typing is the point
        async with asyncio.timeout(20), self._arrived:
            await self._arrived.wait_for(lambda: self._received == self._expected)
        return self.latencies[first:]

    async def close(self) -> None:
        for peer in self.peers:
            await peer.connection.close()
        await asyncio.gather(*self._readers)


def p99(latencies: list[float]) -> float:
    """What 99% of `latencies` are within (the one that 1% are above, or equal)."""
    ordered = sorted(latencies)
    return ordered[int(len(ordered) * 0.99)]


def summary(latencies: list[float]) -> str:
    ms = sorted(latency * 1000 for latency in latencies)
    return f"{len(ms)} deliveries, median {statistics.median(ms):.1f} ms, p99 {p99(ms):.1f} ms, max {ms[-1]:.1f} ms"
