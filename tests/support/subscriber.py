"""`Delivered`: a backend's subscriber for tests, recording what it delivers as a hub would receive it."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any

from app.core.messages import Message


class Delivered:
    """What a backend delivers (`app.backends.base.Subscriber`); waits for what a test expects."""

    def __init__(self, on_message: Callable[[Message], None] | None = None) -> None:
        self.events: list[tuple[str, bytes, Message | None]] = []
        self.evicted: list[tuple[str, str]] = []  # names taken over by another process
        self.notices: list[tuple[str, dict[str, Any]]] = []
        self.epoch_changes: list[int] = []  # how many events had come at each new epoch
        self.changes: list[tuple[str, str, Message]] = []  # (room, kind, the message as it is now)
        self.ephemeral_events: list[tuple[str, str, bytes]] = []  # (room, the key it is not for, event)
        self.arrived = asyncio.Condition()
        self._on_message = on_message

    def deliver(self, room: str, event: bytes, message: Message | None) -> None:
        if message is not None and self._on_message is not None:
            self._on_message(message)
        self.events.append((room, event, message))
        self._notify()

    def changed(self, room: str, kind: str, message: Message) -> None:
        self.changes.append((room, kind, message))
        self._notify()

    def ephemeral(self, room: str, key: str, event: bytes) -> None:
        self.ephemeral_events.append((room, key, event))
        self._notify()

    def evict(self, room: str, key: str) -> None:
        self.evicted.append((room, key))
        self._notify()

    def notice(self, kind: str, fields: dict[str, Any]) -> None:
        self.notices.append((kind, fields))
        self._notify()

    def epoch_changed(self) -> None:
        self.epoch_changes.append(len(self.events))
        self._notify()

    def _notify(self) -> None:
        async def notify() -> None:
            async with self.arrived:
                self.arrived.notify_all()

        asyncio.get_running_loop().create_task(notify())

    def messages(self, room: str | None = None) -> list[Message]:
        return [message for name, _, message in self.events if message is not None and room in (None, name)]

    def by_epoch(self, room: str | None = None) -> list[list[Message]]:
        """The messages delivered in each epoch in turn, the first being the one it started in."""
        bounds = [0, *self.epoch_changes, len(self.events)]
        return [
            [message for name, _, message in self.events[start:end] if message is not None and room in (None, name)]
            for start, end in itertools.pairwise(bounds)
        ]

    def presence(self, room: str) -> list[bytes]:
        return [event for name, event, message in self.events if message is None and name == room]

    async def wait_for(self, predicate: Callable[[Delivered], bool], timeout: float = 5) -> None:
        async with asyncio.timeout(timeout), self.arrived:
            await self.arrived.wait_for(lambda: predicate(self))
