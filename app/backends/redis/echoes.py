"""`Echoes`: a message published here settles once it is stored and read back here.

In a room this process reads, a message stored in Redis is this process's to send only
once its reader delivers it: should the epoch change in between (Redis lost data), the
message is in no history this process's clients will see, and its sender must hear
`not_stored` rather than nothing.
"""

from __future__ import annotations

import asyncio
from functools import partial

from app.backends.base import BackendError
from app.backends.redis.rooms import RoomState
from app.core.messages import Message


class Echoes:
    def __init__(self, rooms: dict[str, RoomState]) -> None:
        self._rooms = rooms  # the rooms this process reads, shared with the backend
        self._waiting: set[asyncio.Future[Message]] = set()  # published here, neither echoed nor failed

    def wait_for(self, state: RoomState, stored: asyncio.Future[Message]) -> asyncio.Future[Message]:
        """What settles once `stored` (a message of the room `state`) is stored and read back."""
        echoed: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._waiting.add(echoed)
        echoed.add_done_callback(self._waiting.discard)
        stored.add_done_callback(partial(self._stored, state, echoed))
        return echoed

    def _stored(self, state: RoomState, echoed: asyncio.Future[Message], stored: asyncio.Future[Message]) -> None:
        error = BackendError("the message was not stored") if stored.cancelled() else stored.exception()
        if echoed.done():
            return  # failed already: a new epoch began
        if error is not None:
            echoed.set_exception(error)
            return
        message = stored.result()
        state.written = max(state.written, message.id)
        if message.id <= state.last_id or self._rooms.get(state.name) is not state:
            echoed.set_result(message)  # read back already, or nobody reads the room here any more
        else:
            state.echoes[message.id] = (echoed, message)

    @staticmethod
    def read_back(state: RoomState, message: Message) -> None:
        """The reader delivered `message`: what was published here up to it is echoed."""
        for number in [number for number in state.echoes if number <= message.id]:
            # (One below it was trimmed away before it could be read: stored all the same.)
            echoed, stored = state.echoes.pop(number)
            if not echoed.done():
                echoed.set_result(stored)

    @staticmethod
    def let_go(state: RoomState) -> None:
        """The room is read here no more: what waits for its echo is stored, and that is all."""
        for echoed, message in state.echoes.values():
            if not echoed.done():
                echoed.set_result(message)

    def fail_all(self, error: BaseException) -> None:
        """A new epoch: nothing published under the old one will be read back."""
        for future in list(self._waiting):
            if not future.done():
                future.set_exception(error)
