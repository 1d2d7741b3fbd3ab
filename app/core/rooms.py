"""`Rooms`: the rooms open in this process, each subscribed to in the backend while it has
someone in it (or someone on the way in), and let go once it has nobody."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from app.backends.base import BackendError
from app.core.room import Room
from app.core.stats import READ, Stats

if TYPE_CHECKING:
    from app.backends.base import Backend
    from app.core.member import Member
    from app.core.turn import Turn

_Answer = TypeVar("_Answer")


class Rooms:
    def __init__(
        self,
        backend: Backend,
        recent_size: int,
        turn: Callable[[], Turn],
        left: Callable[[Room, Member], None],
        extras: Callable[[Room, Member], dict[str, Any]],
        stats: Stats,
    ) -> None:
        self._backend = backend
        self._stats = stats
        self._recent_size = recent_size
        self._turn = turn
        self._left = left
        self._extras = extras
        self.open: dict[str, Room] = {}
        # When a room opens here, after the backend's subscription: load what the room needs.
        self.opening: list[Callable[[Room], Awaitable[None]]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._leaving: dict[str, asyncio.Task[None]] = {}  # rooms being unsubscribed

    async def enter(self, name: str) -> Room:
        """The room `name`, opened (subscribed to) if it was not; raises what the backend raised."""
        while True:
            room = self.open.get(name)
            if room is None:
                room = Room(
                    name, self._backend.epoch, self._recent_size, self._turn(), self._left, self._extras, self._stats
                )
                self.open[name] = room
                self._spawn(self._subscribe(room))
            if not room.opened.done():
                room.waiting += 1
                try:
                    await asyncio.shield(room.opened)
                finally:
                    room.waiting -= 1
            if self.open.get(name) is room:
                return room
            # Forgotten at a new epoch meanwhile: this one opens in the new epoch.

    async def holding_open(self, room: Room, question: Awaitable[_Answer]) -> _Answer:
        """The answer to `question` about `room`, which stays open meanwhile. One process
        answers without suspending; a shared backend asks the others."""
        room.waiting += 1
        try:
            answer = await question
        except BaseException:
            room.waiting -= 1
            self.close_if_empty(room)
            raise
        room.waiting -= 1
        if self.open.get(room.name) is not room:
            raise BackendError("the chat's history started anew meanwhile: try again")
        return answer

    def current(self, room: Room) -> bool:
        """Whether `room` is still the one open under its name (not forgotten at a new epoch)."""
        return self.open.get(room.name) is room

    def close_if_empty(self, room: Room) -> None:
        if room.empty and self.open.get(room.name) is room:
            self.drop(room)

    def drop(self, room: Room) -> None:
        del self.open[room.name]
        room.stop()
        self._leaving[room.name] = self._spawn(self._unsubscribe(room))

    def forget(self) -> list[Room]:
        """Forget every room at once, without unsubscribing (the backend forgot them already)."""
        rooms = list(self.open.values())
        self.open.clear()
        for room in rooms:
            room.stop()
        return rooms

    async def stop(self) -> None:
        for room in list(self.open.values()):
            self.drop(room)
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    async def _subscribe(self, room: Room) -> None:
        leaving = self._leaving.get(room.name)
        try:
            if leaving is not None:
                await leaving
            recent = await self._stats.timed(READ, self._backend.subscribe(room.name))
        except Exception as exc:
            if self.open.get(room.name) is room:
                del self.open[room.name]
            room.stop()
            room.opened.set_exception(exc)
            return
        room.recent.extend(recent)
        try:
            for opening in self.opening:
                await opening(room)
        except Exception as exc:
            if self.open.get(room.name) is room:
                self.drop(room)
            room.opened.set_exception(exc)
            return
        room.opened.set_result(None)

    async def _unsubscribe(self, room: Room) -> None:
        try:
            await self._backend.unsubscribe(room.name)
        finally:
            if self._leaving.get(room.name) is asyncio.current_task():
                del self._leaving[room.name]

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task
