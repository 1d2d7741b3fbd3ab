"""The seam between the hub and where messages live.

A backend stores each room's history and carries each room's events to every process
that has clients in that room. The hub never knows which backend it holds: it subscribes
to the rooms its clients are in, publishes what they say, and fans out whatever the
backend delivers, its own clients' messages included, so one process and many behave alike.
"""

from __future__ import annotations

import asyncio
import secrets
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.core.messages import Message
    from app.settings import Settings

Deliver = Callable[[str, bytes, "Message | None"], None]
"""`deliver(room, event_json, message)`: one event for a room; `message` is set for chat messages."""

Evict = Callable[[str, str], None]
"""`evict(room, key)`: another process took over the name `key` holds here in `room` (`take_over`)."""


class BackendError(Exception):
    """The backend could not do what was asked (store a message, read history)."""


class Backend(ABC):
    def __init__(self, url: str, settings: Settings) -> None:
        self.url = url
        self.settings = settings
        self._deliver: Deliver | None = None
        self._evict: Evict | None = None
        # Names this history's lifetime: message ids are comparable only within one epoch.
        # A backend whose history can be lost (memory://) starts a new one each time.
        self.epoch = secrets.token_hex(8)

    async def start(self, deliver: Deliver, evict: Evict | None = None) -> None:
        """Connect, migrate or whatever the backend needs; then events go to `deliver`, and
        names taken over by other processes to `evict`."""
        self._deliver = deliver
        self._evict = evict

    async def stop(self) -> None:
        """Let go of every resource; nothing is delivered afterwards."""
        self._deliver = None

    @property
    def backlogged(self) -> bool:
        """Whether publishing should pause until `ready`: messages wait to be stored."""
        return False

    async def ready(self) -> None:  # noqa: B027 - most backends are never backlogged
        """Return once the backend takes messages again without piling them up."""

    @abstractmethod
    async def subscribe(self, room: str) -> list[Message]:
        """From now on, deliver `room`'s events to this process.

        Returns the room's latest messages (at most `settings.welcome_history`, oldest
        first); every message after them is delivered, none before them.
        """

    @abstractmethod
    async def unsubscribe(self, room: str) -> None:
        """This process has no client left in `room`."""

    @abstractmethod
    def publish(self, room: str, name: str, text: str) -> asyncio.Future[Message]:
        """Give the message an id and a time, store it, then deliver it to every subscriber.

        Returns at once, so a sender's next message can be read while this one is stored;
        the future settles when the message is stored, or fails with `BackendError`.
        """

    def store_pending(self) -> None:  # noqa: B027 - most backends store as they publish
        """Store what was published and deliver it now, if that can be done at once.

        A room calls this right before it sends what it has, so that a message published
        during one turn of the event loop goes out in the next, with the rest of its batch.
        """

    @abstractmethod
    def announce(self, room: str, event: bytes) -> None:
        """Deliver a presence event (`join` or `leave`; not stored) to this process's subscriber
        of `room`, in order with its other events.

        In one process that is everyone. A backend shared by several processes carries joins
        and leaves to the others itself, through `claim` and `release`.
        """

    # Presence. One process knows who is online from its own rooms, so by default a name is
    # claimed by the hub's own check and nothing else is needed; a backend shared by several
    # processes overrides these to make names unique across them and to tell who is online.

    async def claim(self, room: str, key: str, name: str, token: str | None = None) -> bool:
        """Take screen name `name` (compared by `key`) in `room` for a newcomer of this process,
        whose welcome will give it `token` (None: nobody may take the name over); False if
        someone holds the name, in any process. Raises `BackendError` if it cannot tell.

        Must not suspend when there is nothing to ask anyone: the hub's check that the name is
        free in this process and its use of the name then happen with nothing in between.
        """
        return True

    async def take_over(self, room: str, key: str, token: str, new_token: str) -> str | None:
        """Take the name `key` over from the connection of another process whose welcome gave
        it `token`, for a newcomer of this process whose welcome will give it `new_token`.

        Returns the name as the others know it; None if no other process holds the name
        for a connection with that token. That process's hub is told through `evict`.
        """
        return None

    def retoken(self, room: str, key: str, token: str) -> None:  # noqa: B027 - one process keeps tokens itself
        """A name held here passed to a newer connection of this process, whose token is `token`."""

    def release(self, room: str, key: str, name: str) -> None:  # noqa: B027 - nothing to undo in one process
        """The holder of a claimed name has left `room`; called after its `leave` is announced."""

    def online(self, room: str) -> list[str] | None:
        """Who is online in `room` in every process, in the order they came, as of the events
        delivered here so far; None if the hub's own members are everyone (one process)."""
        return None

    # Health

    async def check(self) -> str | None:
        """None when the backend works; otherwise what is wrong, for `GET /healthz` (503)."""
        return None

    @abstractmethod
    async def history(self, room: str, before: int | None, limit: int) -> tuple[list[Message], bool]:
        """The `limit` messages just before id `before` (the latest if None), oldest first,
        and whether older ones exist."""

    @abstractmethod
    async def since(self, room: str, after: int, upto: int, limit: int) -> tuple[list[Message], bool]:
        """The messages with `after` < id <= `upto`, oldest first: the latest `limit` of them,
        and whether there were more (a gap before the first one returned)."""
