"""A `Connection` for testing the core with plain asyncio: it records frames, and can stall."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from app.client import ConnectionClosed


class FakeConnection:
    def __init__(self, *, stalled: bool = False) -> None:
        self.frames: list[str] = []
        self.close_code: int | None = None
        self.aborted = asyncio.Event()
        self._flowing = asyncio.Event()
        if not stalled:
            self._flowing.set()
        self.arrived = asyncio.Condition()

    def stall(self) -> None:
        """Stop taking frames, like a peer that stopped reading: `send_text` blocks."""
        self._flowing.clear()

    def abort(self) -> None:
        self.aborted.set()

    @property
    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for frame in self.frames for line in frame.split("\n")]

    def messages(self) -> list[str]:
        return [event["text"] for event in self.events if event["type"] == "message"]

    async def send_text(self, data: str) -> None:
        await self._flowing.wait()
        if self.close_code is not None:
            raise ConnectionClosed
        self.frames.append(data)
        async with self.arrived:
            self.arrived.notify_all()

    async def close(self, code: int, reason: str) -> None:
        await self._flowing.wait()
        self.close_code = code
        async with self.arrived:
            self.arrived.notify_all()

    async def wait_for(self, predicate: Any, timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout), self.arrived:
            await self.arrived.wait_for(lambda: predicate(self))
