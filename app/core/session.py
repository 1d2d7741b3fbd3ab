"""`Session`: the inbound half of a connection. What its peer sends is checked (kind of
frame, size, JSON, rate) and handed to the hub, which it knows only as a `Dispatcher`."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Protocol

from app.core.limits import Strikes, TokenBucket
from app.core.protocol import CloseCode, Command, ErrorCode, ProtocolError, SendMessage, error_event, parse
from app.settings import Settings

if TYPE_CHECKING:
    from app.core.identity import Identity
    from app.core.member import Member
    from app.core.room import Room


class Dispatcher(Protocol):
    """What a session asks of the hub."""

    def publish(self, session: Session, text: str) -> None:
        """Say `text` in the session's room."""

    def holds_senders(self, session: Session) -> bool:
        """Whether the session's sender should wait before anything more of it is read."""

    async def keep_pace(self, session: Session) -> None:
        """Return once the session's room and the backend keep up again."""

    async def handle(self, session: Session, command: Command) -> None:
        """Do what any other command asks (`Hub.on` says who handles which)."""


def utf8_length_over(text: str, limit: int) -> bool:
    """Whether `text` takes more than `limit` bytes in UTF-8, encoding it only when in doubt."""
    if len(text) > limit:
        return True
    if len(text) * 4 <= limit:
        return False
    return len(text.encode("utf-8", "surrogatepass")) > limit


class Session:
    """One connection's peer, from its welcome on: `receive` each frame it sends."""

    __slots__ = ("__weakref__", "_bucket", "_dispatcher", "_loop", "_max_bytes", "_strikes", "member", "room")

    def __init__(self, dispatcher: Dispatcher, room: Room, member: Member, settings: Settings) -> None:
        self._dispatcher = dispatcher
        self.room = room
        self.member = member
        self._max_bytes = settings.max_message_bytes
        self._loop = asyncio.get_running_loop()
        now = self._loop.time()
        self._bucket = TokenBucket(settings.rate_limit, settings.rate_burst, now) if settings.rate_limit else None
        self._strikes = Strikes(settings.flood_strikes, now)

    @property
    def name(self) -> str:
        return self.member.name

    @property
    def identity(self) -> Identity:
        return self.member.identity

    async def receive(self, data: str | bytes) -> None:
        """Handle one frame from the peer."""
        member = self.member
        if member.close_code is not None:
            return
        stats = self.room.stats
        stats.received += 1
        if not isinstance(data, str):
            member.close(CloseCode.UNSUPPORTED_DATA, "Expected text frames, but got a binary frame")
            return
        if utf8_length_over(data, self._max_bytes):
            member.close(CloseCode.MESSAGE_TOO_BIG, f"Frames are limited to {self._max_bytes} bytes")
            return
        try:
            command = parse(data)
        except ProtocolError as exc:
            # A bad frame takes a token too: a flood of garbage is a flood.
            if self._bucket is None or self._allowed():
                stats.refused[exc.code] += 1
                member.push(error_event(exc.code, exc.detail))
            return
        if self._bucket is not None and not self._allowed():
            return
        dispatcher = self._dispatcher
        if isinstance(command, SendMessage):
            dispatcher.publish(self, command.text)
            if dispatcher.holds_senders(self):
                # Read nothing more from this sender until the room and the backend keep up:
                # the backlog stays in its TCP window instead of in our queues.
                await dispatcher.keep_pace(self)
        else:
            await dispatcher.handle(self, command)

    def _allowed(self) -> bool:
        assert self._bucket is not None
        now = self._loop.time()
        if self._bucket.take(now):
            return True
        self.room.stats.refused[ErrorCode.RATE_LIMITED] += 1
        if self._strikes.add(now):
            self.member.close(CloseCode.POLICY_VIOLATION, "Flooding: kept sending over the rate limit")
        else:
            limit = f"{self._bucket.rate:g} messages a second, bursts of {self._bucket.burst}"
            self.member.push(error_event(ErrorCode.RATE_LIMITED, f"Slow down: at most {limit}; request refused"))
        return False

    def close(self, code: int, reason: str) -> None:
        """Close the connection (see `Member.close`)."""
        self.member.close(code, reason)

    async def finished(self) -> None:
        """The connection is over, whoever ended it (see `Member.finished`)."""
        await self.member.finished()
