"""Sockets for testing the core with plain asyncio: they record frames, and can stall.

`FakeConnection` is what the web layer gives any client; `FakeSink`, what the `chatroom`
protocol adds (frames written straight into the socket by the room's writer).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from app.core.sockets import ConnectionClosed


class FakeConnection:
    def __init__(self, *, sink: bool = False) -> None:
        self.frames: list[bytes] = []
        self.close_code: int | None = None
        self.aborted = asyncio.Event()
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.arrived = asyncio.Condition()
        self.sink = FakeSink(self) if sink else None

    def stall(self) -> None:
        """Stop taking frames, like a peer that stopped reading."""
        self.flowing.clear()

    def flow(self) -> None:
        self.flowing.set()
        if self.sink is not None:
            self.sink.resumed()

    def abort(self) -> None:
        self.aborted.set()

    @property
    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for frame in self.frames for line in frame.split(b"\n")]

    def messages(self) -> list[str]:
        return [event["text"] for event in self.events if event["type"] == "message"]

    async def record(self, frame: bytes) -> None:
        self.frames.append(frame)
        async with self.arrived:
            self.arrived.notify_all()

    async def send_text(self, payload: bytes) -> None:
        await self.flowing.wait()
        if self.close_code is not None:
            raise ConnectionClosed
        await self.record(payload)

    async def close(self, code: int, reason: str) -> None:
        await self.flowing.wait()
        self.close_code = code
        async with self.arrived:
            self.arrived.notify_all()

    async def wait_for(self, predicate: Any, timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout), self.arrived:
            await self.arrived.wait_for(lambda: predicate(self))


class FakeSink:
    def __init__(self, connection: FakeConnection) -> None:
        self.connection = connection
        self.callback: Callable[[], None] | None = None
        self.writes = 0

    def writable(self) -> bool:
        return self.connection.flowing.is_set() and self.connection.close_code is None

    def write(self, payload: bytes) -> None:
        assert self.writable(), "a frame written into a sink that cannot take it"
        self.writes += 1
        self.connection.frames.append(payload)
        asyncio.get_running_loop().create_task(self._notify())

    async def _notify(self) -> None:
        async with self.connection.arrived:
            self.connection.arrived.notify_all()

    def on_writable(self, callback: Callable[[], None]) -> None:
        self.callback = callback

    def resumed(self) -> None:
        if self.callback is not None:
            self.callback()
