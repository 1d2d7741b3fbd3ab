"""`Member`: the outbound half of a connection in a room.

A member owns the bounded queue of frames waiting for its socket, the one writer of that
socket, and its close. Frames reach it through `deliver` (the room's fan-out) and `push`
(frames for it alone), neither of which waits: a member whose queue is full is closed with
1013 instead, so nobody ever waits for anyone. It knows its room only as an `Owner`.

There are two kinds, one for each way a socket is written:

- `SinkMember`, when the server offers a `Sink` (the `chatroom` command): the hub's fan-out
  writes each frame straight into the socket, and the member's own frames are written at
  the end of the turn, when its room sends; no task per member.
- `TaskMember`, under any other ASGI server: a writer task of its own awaits
  `Connection.send_text`, sending everything queued since its last write as one frame.
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
from collections.abc import Callable
from typing import Any, Protocol

from app.core.identity import Identity
from app.core.protocol import MAX_BATCH, CloseCode
from app.core.sockets import Connection, ConnectionClosed, Sink
from app.core.stats import Stats
from app.settings import Settings

_WAKE = b""  # queued only to wake a writer task; real frames are never empty
_TOO_SLOW = "Too slow: fell too far behind the room"


def new_token() -> str:
    """A connection's token (see `Member.token`): 128 random bits."""
    return secrets.token_urlsafe(16)


class Owner(Protocol):
    """What a member tells the room it is in."""

    stats: Stats  # the process's counts: a member's own frames count there

    def wake(self, member: SinkMember) -> None:
        """`member` has frames of its own for its sink, or a close to send: at the end of this turn."""

    def fell_behind(self, member: Member) -> None:
        """`member` is so far behind that the room's senders should wait for it."""

    def caught_up(self, member: Member) -> None:
        """`member` is no longer far behind."""

    def leave(self, member: Member) -> None:
        """`member` is closing: it is no longer in the room, from now on."""


class Member:
    """A connection in a room, as its room sees it: a screen name and a socket to write to."""

    __slots__ = (
        "__weakref__",
        "_close_reason",
        "_closer",
        "_connection",
        "_cut_off_socket",
        "_deadline",
        "_done",
        "_done_waiter",
        "_held",
        "_high",
        "_loop",
        "_low",
        "_queue",
        "address",
        "behind",
        "blocked_since",
        "close_code",
        "identity",
        "key",
        "name",
        "owner",
        "queued",
        "settings",
        "token",
    )

    def __init__(
        self,
        owner: Owner,
        identity: Identity,
        token: str,
        connection: Connection,
        cut_off: Callable[[], None],
        settings: Settings,
    ) -> None:
        self.owner = owner
        self.identity = identity
        self.address: str | None = None  # where the connection comes from (app.web.connections.address_key)
        self.name = identity.name
        self.key = identity.key
        # Given in the welcome: a connection presenting it may take this one's name over.
        self.token = token
        self.settings = settings
        self._connection = connection
        self._cut_off_socket = cut_off
        self._loop = asyncio.get_running_loop()
        # The queue is made only once something has to wait (an asyncio.Queue weighs 3 KiB,
        # idle connections add up); `queued` counts the bytes in it.
        self._queue: asyncio.Queue[bytes] | None = None
        self.queued = 0
        # Pacing (see Room.pace): over `_high` queued bytes this member holds up its room's
        # senders until it is back under `_low`; `blocked_since` is when its socket stopped
        # taking data, if it has.
        self._high = settings.queue_bytes // 4
        self._low = settings.queue_bytes // 16
        self.behind = False
        self.blocked_since: float | None = None
        self.close_code: int | None = None
        self._close_reason = ""
        self._held: list[bytes] | None = None  # frames that must wait for a welcome still being read
        self._deadline: asyncio.TimerHandle | None = None
        self._done = False  # nothing more will be written: closed, or cut off
        self._done_waiter: asyncio.Future[None] | None = None
        self._closer: asyncio.Task[None] | None = None
        self._begin()

    def _begin(self) -> None:
        """Start writing: the socket is ready for the welcome."""

    @property
    def closing(self) -> bool:
        return self.close_code is not None

    @property
    def queue(self) -> asyncio.Queue[bytes]:
        """The bounded queue of frames waiting for this member's socket."""
        if self._queue is None:
            self._queue = asyncio.Queue(maxsize=self.settings.queue_size)
        return self._queue

    @property
    def backlog(self) -> int:
        """How many frames wait in the queue."""
        return self._queue.qsize() if self._queue is not None else 0

    def holds_token(self, token: str) -> bool:
        """Whether `token` is this connection's (compared in constant time)."""
        return hmac.compare_digest(self.token.encode(), token.encode())

    # Frames out

    def deliver(self, frame: bytes) -> None:
        """A frame of the room's fan-out."""
        self._enqueue(frame)

    def push(self, frame: bytes) -> None:
        """A frame for this member alone (welcome, error, history page), in order with the rest."""
        self._count(frame)
        self._enqueue(frame)

    def _count(self, frame: bytes) -> None:
        stats = self.owner.stats
        stats.frames += 1
        stats.bytes += len(frame)

    def _enqueue(self, frame: bytes) -> None:
        """Queue a frame, or close the member as too slow if its queue is full.

        Full means `queue_size` frames, or `queue_bytes` bytes: frames carry batches, so the
        count alone would let one slow member hold on to a lot.
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
        if queued > self._high and not self.behind:
            self.behind = True
            self.owner.fell_behind(self)

    def hold(self) -> None:
        """Keep frames back until `release`: the welcome has to be read from history first."""
        self._held = []

    def release(self, welcome: bytes) -> None:
        """Queue the welcome, then every frame held back while it was being prepared."""
        held, self._held = self._held or [], None
        self.push(welcome)
        for frame in held:  # fan-out frames: counted by the room already
            self._enqueue(frame)

    def _dequeued(self, queued: int) -> None:
        self.queued = queued
        if self.behind and queued <= self._low:
            self.behind = False
            self.owner.caught_up(self)

    def _clear(self) -> None:
        queue = self._queue
        while queue is not None and queue.qsize():
            queue.get_nowait()
        self._dequeued(0)

    def stalled(self, now: float) -> bool:
        """Whether the socket has taken nothing for `stall_timeout`: the peer is not reading."""
        return self.blocked_since is not None and now - self.blocked_since >= self.settings.stall_timeout

    # Closing

    def close(self, code: int, reason: str) -> None:
        """Leave the room now and close the connection once what is queued has been written.

        A peer that does not take the close within `settings.close_timeout` is cut off.
        """
        if self.close_code is not None:
            return
        self.close_code = code
        self._close_reason = reason
        self.owner.leave(self)
        if code == CloseCode.TRY_AGAIN_LATER:
            self._clear()  # it cannot catch up; it resumes from history when it returns
        self._close_soon()
        self._deadline = self._loop.call_later(self.settings.close_timeout, self._cut_off)

    def _close_soon(self) -> None:
        """Have the writer send the close frame after what is queued."""
        raise NotImplementedError

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

    def _tasks(self) -> list[asyncio.Task[None]]:
        return [self._closer] if self._closer is not None else []

    def _cut_off(self) -> None:
        """The peer did not take its close in time: stop waiting for it and drop the socket."""
        self._deadline = None
        if not self._done:
            for task in self._tasks():
                task.cancel()
            self._set_done()
            self._cut_off_socket()

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
            self.owner.leave(self)
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        tasks = self._tasks()
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


class SinkMember(Member):
    """A member whose socket is a `Sink`: the room's fan-out writes into it directly."""

    __slots__ = ("_sink", "woken")

    def __init__(self, *parts: Any, sink: Sink) -> None:
        self._sink = sink
        self.woken = False  # in its room's list of members to write at the end of the turn
        super().__init__(*parts)

    def _begin(self) -> None:
        self._sink.on_writable(self._socket_writable)

    def deliver(self, frame: bytes) -> None:
        """Into a sink with nothing waiting before it, the frame is written at once."""
        if not self.backlog and self._held is None:
            sink = self._sink
            if sink.writable():
                if self.close_code is None:
                    sink.write(frame)
                return
            if self.blocked_since is None:  # full: the frame waits for `_socket_writable`
                self.blocked_since = self._loop.time()
        self._enqueue(frame)

    def push(self, frame: bytes) -> None:
        self._count(frame)
        self._enqueue(frame)
        self.owner.wake(self)

    def drain(self) -> None:
        """Write what is queued into the sink, as far as it takes it; called when the room sends."""
        sink = self._sink
        queue = self._queue
        while queue is not None and queue.qsize() and sink.writable():
            frame = queue.get_nowait()
            self._dequeued(self.queued - len(frame))
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
            self.owner.wake(self)

    def _close_soon(self) -> None:
        self.owner.wake(self)


class TaskMember(Member):
    """A member with a writer task of its own, which awaits each send."""

    __slots__ = ("_writer",)

    def _begin(self) -> None:
        self._writer = self._loop.create_task(self._write(), name=f"chatroom writer {self.name}")

    def _close_soon(self) -> None:
        try:
            self.queue.put_nowait(_WAKE)
        except asyncio.QueueFull:
            self._clear()
            self.queue.put_nowait(_WAKE)

    def _tasks(self) -> list[asyncio.Task[None]]:
        return [self._writer, *super()._tasks()]

    async def _write(self) -> None:
        """One frame per wake-up, whatever is queued."""
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
                self._dequeued(self.queued - size)
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


def new_member(
    owner: Owner,
    identity: Identity,
    token: str,
    connection: Connection,
    cut_off: Callable[[], None],
    settings: Settings,
    sink: Sink | None,
) -> Member:
    """The member for a socket: written through its sink if it has one, else by a task."""
    if sink is not None:
        return SinkMember(owner, identity, token, connection, cut_off, settings, sink=sink)
    return TaskMember(owner, identity, token, connection, cut_off, settings)
