"""`Client`: one connected person. Owns the bounded queue of frames waiting for it, the one
task that writes them, and the per-connection limits applied to what it sends."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from app.limits import Strikes, TokenBucket
from app.protocol import CloseCode, ErrorCode, ProtocolError, SendMessage, error_event, parse

if TYPE_CHECKING:
    from app.hub import Hub, Room
    from app.settings import Settings


class ConnectionClosed(Exception):
    """The peer is gone: nothing more can be written to it."""


class Connection(Protocol):
    """What a client needs of its socket; the web layer adapts its WebSocket to this."""

    async def send_text(self, data: str) -> None:
        """Send one text frame; raise `ConnectionClosed` if the peer is gone."""

    async def close(self, code: int, reason: str) -> None:
        """Send a close frame; raise `ConnectionClosed` if the peer is gone."""


_WAKE = ""  # queued only to wake the writer; real frames are never empty


def utf8_length_over(text: str, limit: int) -> bool:
    """Whether `text` takes more than `limit` bytes in UTF-8, encoding it only when in doubt."""
    if len(text) > limit:
        return True
    if len(text) * 4 <= limit:
        return False
    return len(text.encode("utf-8", "surrogatepass")) > limit


class Client:
    """A connection in a room.

    Frames reach it through `push`, which never waits: a client whose queue is full is
    closed with 1013 instead, so the hub never waits for anyone. The writer task is the
    only one that writes to the socket; it sends everything queued since its last write as
    one frame, so a client that falls a little behind costs one write, not one per event.
    """

    def __init__(
        self,
        hub: Hub,
        room: Room,
        name: str,
        key: str,
        connection: Connection,
        abort: Callable[[], None],
        settings: Settings,
    ) -> None:
        self.hub = hub
        self.room = room
        self.name = name
        self.key = key
        self.settings = settings
        self.queue: asyncio.Queue[str] = asyncio.Queue(maxsize=settings.queue_size)
        self._connection = connection
        self._abort_connection = abort
        self._loop = asyncio.get_running_loop()
        now = self._loop.time()
        self._bucket = TokenBucket(settings.rate_limit, settings.rate_burst, now) if settings.rate_limit else None
        self._strikes = Strikes(settings.flood_strikes, now)
        self.close_code: int | None = None
        self._close_reason = ""
        self._deadline: asyncio.TimerHandle | None = None
        self._writer = self._loop.create_task(self._write(), name=f"chatroom writer {room.name}/{name}")

    @property
    def closing(self) -> bool:
        return self.close_code is not None

    def push(self, frame: str) -> None:
        """Queue a frame for this client, or close it as too slow if its queue is full."""
        if self.close_code is not None:
            return
        try:
            self.queue.put_nowait(frame)
        except asyncio.QueueFull:
            self.close(CloseCode.TRY_AGAIN_LATER, "Too slow: fell too far behind the room")

    async def receive(self, data: str | bytes) -> None:
        """Handle one frame from the peer."""
        if self.close_code is not None:
            return
        if not isinstance(data, str):
            self.close(CloseCode.UNSUPPORTED_DATA, "Expected text frames, but got a binary frame")
            return
        limit = self.settings.max_message_bytes
        if utf8_length_over(data, limit):
            self.close(CloseCode.MESSAGE_TOO_BIG, f"Frames are limited to {limit} bytes")
            return
        try:
            command = parse(data)
        except ProtocolError as exc:
            # A bad frame takes a token too: a flood of garbage is a flood.
            if self._bucket is None or self._allowed():
                self.push(error_event(exc.code, exc.detail))
            return
        if isinstance(command, SendMessage):
            if self._bucket is not None and not self._allowed():
                return
            self.hub.publish(self, command.text)

    def _allowed(self) -> bool:
        assert self._bucket is not None
        now = self._loop.time()
        if self._bucket.take(now):
            return True
        if self._strikes.add(now):
            self.close(CloseCode.POLICY_VIOLATION, "Flooding: kept sending over the rate limit")
        else:
            limit = f"{self._bucket.rate:g} messages a second, bursts of {self._bucket.burst}"
            self.push(error_event(ErrorCode.RATE_LIMITED, f"Slow down: at most {limit}; not sent"))
        return False

    def close(self, code: int, reason: str) -> None:
        """Leave the room now and close the connection once what is queued has been written.

        A peer that does not take the close within `settings.close_timeout` is cut off.
        """
        if self.close_code is not None:
            return
        self.close_code = code
        self._close_reason = reason
        self.hub.leave(self)
        if code == CloseCode.TRY_AGAIN_LATER:
            _clear(self.queue)  # it cannot catch up; it resumes from history when it returns
        try:
            self.queue.put_nowait(_WAKE)
        except asyncio.QueueFull:
            _clear(self.queue)
            self.queue.put_nowait(_WAKE)
        self._deadline = self._loop.call_later(self.settings.close_timeout, self._cut_off)

    def _cut_off(self) -> None:
        self._deadline = None
        if not self._writer.done():
            self._writer.cancel()
            self._abort_connection()

    async def wait_closed(self) -> None:
        """Wait until the writer is done: the close was written, or the peer was cut off."""
        await asyncio.wait([self._writer])

    async def finished(self) -> None:
        """The connection is over, whoever ended it: leave, and stop the writer."""
        if self.close_code is None:
            self.close_code = CloseCode.NORMAL
            self.hub.leave(self)
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._writer.cancel()
        _clear(self.queue)
        try:
            await self._writer
        except asyncio.CancelledError:
            # Our own cancel of the writer ends here; the caller's cancellation goes on.
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise

    async def _write(self) -> None:
        queue = self.queue
        send = self._connection.send_text
        try:
            while True:
                frame = await queue.get()
                if queue.qsize():
                    frames = [frame]
                    while queue.qsize():
                        frames.append(queue.get_nowait())
                    frame = "\n".join([part for part in frames if part])
                if frame:
                    await send(frame)
                if self.close_code is not None and not queue.qsize():
                    break
            await self._connection.close(self.close_code, self._close_reason)
        except ConnectionClosed:
            pass


def _clear(queue: asyncio.Queue[str]) -> None:
    while queue.qsize():
        queue.get_nowait()


__all__ = ["Client", "Connection", "ConnectionClosed", "ProtocolError"]
