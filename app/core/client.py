"""`Client`: one connected person. Owns the bounded queue of frames waiting for it, how those
frames reach its socket, and the per-connection limits applied to what it sends."""

from __future__ import annotations

import asyncio
import hmac
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING

from app.core.limits import Strikes, TokenBucket
from app.core.protocol import (
    MAX_BATCH,
    CloseCode,
    ErrorCode,
    ProtocolError,
    RequestHistory,
    SendMessage,
    error_event,
    parse,
)
from app.core.sockets import Connection, ConnectionClosed, Sink

if TYPE_CHECKING:
    from app.core.hub import Hub, Room
    from app.settings import Settings


_WAKE = b""  # queued only to wake a writer task; real frames are never empty
_TOO_SLOW = "Too slow: fell too far behind the room"


def new_token() -> str:
    """A connection's token (see `Client.token`): 128 random bits."""
    return secrets.token_urlsafe(16)


def utf8_length_over(text: str, limit: int) -> bool:
    """Whether `text` takes more than `limit` bytes in UTF-8, encoding it only when in doubt."""
    if len(text) > limit:
        return True
    if len(text) * 4 <= limit:
        return False
    return len(text.encode("utf-8", "surrogatepass")) > limit


class Client:
    """A connection in a room.

    Frames reach it through `deliver` (the room's fan-out) and `push` (frames for it alone),
    neither of which waits: a client whose queue is full is closed with 1013 instead, so
    the hub never waits for anyone. One writer writes to its socket: its room's writer task
    when the socket is a `Sink`, else a writer task of its own, which sends everything
    queued since its last write as one frame.
    """

    __slots__ = (
        "__weakref__",
        "_abort_connection",
        "_bucket",
        "_close_reason",
        "_closer",
        "_connection",
        "_deadline",
        "_done",
        "_done_waiter",
        "_held",
        "_high",
        "_loop",
        "_low",
        "_queue",
        "_sink",
        "_strikes",
        "_writer",
        "blocked_since",
        "close_code",
        "hub",
        "key",
        "lagging",
        "name",
        "queued",
        "ready",
        "room",
        "settings",
        "token",
    )

    def __init__(
        self,
        hub: Hub,
        room: Room,
        name: str,
        key: str,
        connection: Connection,
        abort: Callable[[], None],
        settings: Settings,
        sink: Sink | None = None,
        token: str | None = None,
    ) -> None:
        self.hub = hub
        self.room = room
        self.name = name
        self.key = key
        self.settings = settings
        # Given in the welcome: a connection presenting it may take this one's name over.
        self.token = token or new_token()
        # With a sink, most frames go straight into the socket: the queue is made only once
        # something has to wait (an asyncio.Queue weighs 3 KiB, idle connections add up).
        self._queue: asyncio.Queue[bytes] | None = None
        self.queued = 0  # bytes in the queue
        # Pacing (see Room.drained): over `_high` queued bytes this client holds up its room's
        # senders until it is back under `_low`; `blocked_since` is when its socket stopped
        # taking data, if it has.
        self._high = settings.queue_bytes // 4
        self._low = settings.queue_bytes // 16
        self.lagging = False
        self.blocked_since: float | None = None
        self.ready = False  # in its room's list of clients with frames for their sink
        self._connection = connection
        self._abort_connection = abort
        self._sink = sink
        self._loop = asyncio.get_running_loop()
        now = self._loop.time()
        self._bucket = TokenBucket(settings.rate_limit, settings.rate_burst, now) if settings.rate_limit else None
        self._strikes = Strikes(settings.flood_strikes, now)
        self.close_code: int | None = None
        self._close_reason = ""
        self._held: list[bytes] | None = None  # frames that must wait for a welcome still being read
        self._deadline: asyncio.TimerHandle | None = None
        self._done = False  # nothing more will be written: closed, or cut off
        self._done_waiter: asyncio.Future[None] | None = None
        self._closer: asyncio.Task[None] | None = None
        self._writer: asyncio.Task[None] | None = None
        if sink is None:
            self._writer = self._loop.create_task(self._write(), name=f"chatroom writer {room.name}/{name}")
        else:
            sink.on_writable(self._socket_writable)

    @property
    def closing(self) -> bool:
        return self.close_code is not None

    @property
    def queue(self) -> asyncio.Queue[bytes]:
        """The bounded queue of frames waiting for this client's socket."""
        if self._queue is None:
            self._queue = asyncio.Queue(maxsize=self.settings.queue_size)
        return self._queue

    @property
    def backlog(self) -> int:
        """How many frames wait in the queue."""
        return self._queue.qsize() if self._queue is not None else 0

    # Frames out

    def deliver(self, frame: bytes) -> None:
        """A frame of the room's fan-out; called by the room's writer only.

        Into a sink with nothing waiting before it, the frame is written at once.
        """
        sink = self._sink
        if sink is not None and not self.backlog and self._held is None:
            if sink.writable():
                if self.close_code is None:
                    sink.write(frame)
                return
            if self.blocked_since is None:  # full: the frame waits for `_socket_writable`
                self.blocked_since = self._loop.time()
        self._enqueue(frame)

    def push(self, frame: bytes) -> None:
        """A frame for this client alone (welcome, error, history page), in order with the rest."""
        self._enqueue(frame)
        if self._sink is not None:
            self.room.ready(self)

    def _enqueue(self, frame: bytes) -> None:
        """Queue a frame, or close the client as too slow if its queue is full.

        Full means `queue_size` frames, or `queue_bytes` bytes: frames carry batches, so the
        count alone would let one slow client hold on to a lot.
        """
        if self.close_code is not None:
            return
        if self._held is not None:
            self._held.append(frame)
            if len(self._held) > self.settings.queue_size:
                self.close(CloseCode.TRY_AGAIN_LATER, _TOO_SLOW)
            return
        queued = self.queued + len(frame)
        if queued > self.settings.queue_bytes and self.queued:
            self.close(CloseCode.TRY_AGAIN_LATER, _TOO_SLOW)
            return
        try:
            self.queue.put_nowait(frame)
        except asyncio.QueueFull:
            self.close(CloseCode.TRY_AGAIN_LATER, _TOO_SLOW)
            return
        self.queued = queued
        if queued > self._high and not self.lagging:
            self.lagging = True
            self.room.lagging(self)

    def hold(self) -> None:
        """Keep frames back until `release`: the welcome has to be read from history first."""
        self._held = []

    def release(self, welcome: bytes) -> None:
        """Queue the welcome, then every frame held back while it was being prepared."""
        held, self._held = self._held or [], None
        self.push(welcome)
        for frame in held:
            self.push(frame)

    def drain(self) -> None:
        """Write what is queued into the sink, as far as it takes it; called by the room's writer."""
        sink = self._sink
        assert sink is not None
        queue = self._queue
        while queue is not None and queue.qsize() and sink.writable():
            frame = queue.get_nowait()
            self._drained(self.queued - len(frame))
            if frame:
                sink.write(frame)
        if self.backlog:
            if self.blocked_since is None:
                self.blocked_since = self._loop.time()
            return  # the sink calls `_socket_writable` when it takes data again
        self.blocked_since = None
        self._queue = None  # empty: let it go until something has to wait again
        if self.close_code is not None and self._closer is None:
            self._closer = self._loop.create_task(self._send_close(), name=f"chatroom close {self.name}")

    def _socket_writable(self) -> None:
        if self.backlog or (self.close_code is not None and self._closer is None):
            self.room.ready(self)

    def _drained(self, queued: int) -> None:
        self.queued = queued
        if self.lagging and queued <= self._low:
            self.lagging = False
            self.room.caught_up(self)

    def _clear(self) -> None:
        queue = self._queue
        while queue is not None and queue.qsize():
            queue.get_nowait()
        self._drained(0)

    async def _write(self) -> None:
        """The writer task of a client without a sink: one frame per wake-up, whatever is queued."""
        queue = self.queue
        send = self._connection.send_text
        carried: bytes | None = None  # taken from the queue, but for the next frame
        try:
            while True:
                frame = carried if carried is not None else await queue.get()
                carried = None
                size = len(frame)
                if queue.qsize():
                    frames = [frame]
                    while queue.qsize():
                        following = queue.get_nowait()
                        if size + len(following) >= MAX_BATCH:
                            carried = following
                            break
                        frames.append(following)
                        size += len(following)
                    frame = b"\n".join([part for part in frames if part])
                self._drained(self.queued - size)
                if frame:
                    self.blocked_since = self._loop.time()
                    await send(frame)
                    self.blocked_since = None
                if self.close_code is not None and carried is None and not queue.qsize():
                    break
            await self._send_close()
        except ConnectionClosed:
            pass
        finally:
            self._set_done()

    async def _send_close(self) -> None:
        assert self.close_code is not None
        try:
            await self._connection.close(self.close_code, self._close_reason)
        except ConnectionClosed:
            pass
        finally:
            self._set_done()

    def _set_done(self) -> None:
        self._done = True
        if self._done_waiter is not None and not self._done_waiter.done():
            self._done_waiter.set_result(None)

    # Frames in

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
        if self._bucket is not None and not self._allowed():
            return
        if isinstance(command, SendMessage):
            self.hub.publish(self, command.text)
            if self.room.waiting_on or self.hub.backend.backlogged:
                # Read nothing more from this sender until the room and the backend keep up:
                # the backlog stays in its TCP window instead of in our queues.
                await self.hub.keep_pace(self)
        elif isinstance(command, RequestHistory):
            await self.hub.send_history(self, command.before, command.limit)

    def _allowed(self) -> bool:
        assert self._bucket is not None
        now = self._loop.time()
        if self._bucket.take(now):
            return True
        if self._strikes.add(now):
            self.close(CloseCode.POLICY_VIOLATION, "Flooding: kept sending over the rate limit")
        else:
            limit = f"{self._bucket.rate:g} messages a second, bursts of {self._bucket.burst}"
            self.push(error_event(ErrorCode.RATE_LIMITED, f"Slow down: at most {limit}; request refused"))
        return False

    def issued(self, token: str) -> bool:
        """Whether `token` is this connection's (compared in constant time)."""
        return hmac.compare_digest(self.token.encode(), token.encode())

    # Closing

    def stalled(self, now: float) -> bool:
        """Whether the socket has taken nothing for `stall_timeout`: the peer is not reading."""
        return self.blocked_since is not None and now - self.blocked_since >= self.settings.stall_timeout

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
            self._clear()  # it cannot catch up; it resumes from history when it returns
        if self._sink is not None:
            self.room.ready(self)
        else:
            try:
                self.queue.put_nowait(_WAKE)
            except asyncio.QueueFull:
                self._clear()
                self.queue.put_nowait(_WAKE)
        self._deadline = self._loop.call_later(self.settings.close_timeout, self._cut_off)

    def _cut_off(self) -> None:
        self._deadline = None
        if not self._done:
            for task in (self._writer, self._closer):
                if task is not None:
                    task.cancel()
            self._set_done()
            self._abort_connection()

    async def wait_closed(self) -> None:
        """Wait until nothing more will be written: the close went out, or the peer was cut off."""
        if not self._done:
            if self._done_waiter is None:
                self._done_waiter = self._loop.create_future()
            await asyncio.shield(self._done_waiter)

    async def finished(self) -> None:
        """The connection is over, whoever ended it: leave, and stop writing."""
        if self.close_code is None:
            self.close_code = CloseCode.NORMAL
            self.hub.leave(self)
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        tasks = [task for task in (self._writer, self._closer) if task is not None]
        for task in tasks:
            task.cancel()
        self._clear()
        self._set_done()
        for task in tasks:
            try:
                await task
            except asyncio.CancelledError:
                # Our own cancel of the writer ends here; the caller's cancellation goes on.
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise


__all__ = ["Client"]
