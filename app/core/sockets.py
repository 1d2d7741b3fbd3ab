"""What the core needs of a WebSocket: the ports that the web layer and the server implement.

The core writes frames through a `Connection` (any ASGI server, through Starlette) or,
when the server offers one, a `Sink` (the `chatroom` command's WebSocket protocol,
app/server/websocket.py), which takes whole frames without awaiting anything.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

# The ASGI extension under which a server offers each connection's sink:
# `scope["extensions"][SINK_EXTENSION] == {"sink": sink}`.
SINK_EXTENSION = "chatroom.sink"


class ConnectionClosed(Exception):
    """The peer is gone: nothing more can be written to it."""


class Connection(Protocol):
    """What a member needs of its WebSocket; the web layer adapts Starlette's to this."""

    async def send_text(self, payload: bytes) -> None:
        """Send one text frame holding `payload` (UTF-8); raise `ConnectionClosed` if the peer is gone."""

    async def close(self, code: int, reason: str) -> None:
        """Send a close frame; raise `ConnectionClosed` if the peer is gone."""


class Sink(Protocol):
    """A socket that takes whole text frames at once, without awaiting anything.

    With one, the hub's fan-out writes each frame straight into the members' sockets: no
    task, no await and no copy per member. Without it (any other ASGI server), each member
    has a writer task of its own that awaits `Connection.send_text`.
    """

    def writable(self) -> bool:
        """Whether the socket takes data now: open, and its buffer under the high-water mark."""

    def write(self, payload: bytes) -> None:
        """Write one text frame holding `payload`."""

    def on_writable(self, callback: Callable[[], None]) -> None:
        """Call `callback` whenever the socket takes data again after being full."""
