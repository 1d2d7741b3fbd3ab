"""Uvicorn's sans-I/O WebSocket protocol, with what a chat server needs on top.

`chatroom` serves with this protocol; plain uvicorn can too:

    uvicorn app.main:app --ws app.server.websocket:ChatWebSocketProtocol ...

1. A sink (`app.core.client.Sink`), offered to the application as the ASGI extension
   "chatroom.sink": it writes a whole text frame into the transport at once. A room
   serialises a fan-out frame once and its writer hands the same bytes to every member's
   sink, without one task, await or copy per member through the ASGI `send` path (frames
   from the server are not masked, so every member's bytes are the same).
2. Peers that are gone are cut off instead of waited on. Uvicorn ends a connection with
   `transport.close()`, which over TLS first waits for the peer's close_notify, for up to
   30 seconds. A peer that stopped answering pings, or that never took the close frame we
   sent, will not send one: it is abandoned at once, so its socket and buffers are given
   back and its room hears it left within the ping timeout.
3. A text frame that is not UTF-8 is closed with 1007 (invalid data), as uvicorn does, but
   without logging a traceback for it: anyone can send one, as often as they like.
4. When the server stops, uvicorn closes at once every connection whose close frame is out,
   without waiting for the peer's answer. A peer that is still sending then gets a TCP
   reset, which can destroy the close frame before it has read it: it sees 1006 instead of
   our 1001. Here the closing handshake is left to finish, within CHAT_CLOSE_TIMEOUT, as it
   would at any other time (uvicorn waits for its connections to end before it exits).
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState
from websockets.http11 import Request

from app.core.protocol import CloseCode
from app.core.sockets import SINK_EXTENSION
from app.server.app_settings import of_server

_TEXT_FIN = 0x81  # FIN bit and opcode 1 (text)

# Over TLS, each transport write is encrypted into a memory buffer that keeps, for the life
# of the connection, the size of the largest write it ever held. Writing a long frame (a
# welcome listing a big room) in pieces keeps that at ~11 KiB instead of the frame's size:
# measured, 2000 idle connections in one room went from 75 to 67 KiB each.
WRITE_CHUNK = 8192


def text_frame_header(length: int) -> bytes:
    """The header of an unmasked, unfragmented text frame with a payload of `length` bytes."""
    if length < 126:
        return bytes((_TEXT_FIN, length))
    if length < 65536:
        return struct.pack("!BBH", _TEXT_FIN, 126, length)
    return struct.pack("!BBQ", _TEXT_FIN, 127, length)


class FrameSink:
    """Writes text frames straight into one connection's transport."""

    __slots__ = ("_on_writable", "_protocol")

    def __init__(self, protocol: ChatWebSocketProtocol) -> None:
        self._protocol = protocol
        self._on_writable: Callable[[], None] | None = None

    def writable(self) -> bool:
        protocol = self._protocol
        return (
            protocol.handshake_complete
            and not protocol.close_sent
            and not protocol.disconnected
            and protocol.writable.is_set()
            and not protocol.transport.is_closing()
        )

    def write(self, payload: bytes) -> None:
        frame = text_frame_header(len(payload)) + payload
        write = self._protocol.transport.write
        if len(frame) <= WRITE_CHUNK:
            write(frame)
            return
        view = memoryview(frame)
        for start in range(0, len(frame), WRITE_CHUNK):
            write(view[start : start + WRITE_CHUNK])

    def on_writable(self, callback: Callable[[], None]) -> None:
        self._on_writable = callback

    def resumed(self) -> None:
        if self._on_writable is not None:
            self._on_writable()


class ChatWebSocketProtocol(WebSocketsSansIOProtocol):
    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.sink = FrameSink(self)
        # How long a peer gets to answer our close frame (uvicorn's own is 10 s, fixed).
        self.close_timeout = of_server(app_state).close_timeout

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if scope is not None:  # the upgrade was accepted: the application runs
            scope["extensions"][SINK_EXTENSION] = {"sink": self.sink}

    async def send(self, message: Any) -> None:
        await super().send(message)
        if self.handshake_complete and self.request is not None:
            # Kept by uvicorn only to answer the handshake: 2 KiB of headers per connection.
            self.request = self.response = None  # type: ignore[assignment]

    def resume_writing(self) -> None:
        super().resume_writing()
        self.sink.resumed()

    def shutdown(self) -> None:
        if self.close_sent and self.close_timer is not None:
            self.stop_keepalive()  # our close is out and its timer running: let the peer answer it
            return
        super().shutdown()

    def send_receive_event_to_app(self) -> None:
        if self.curr_msg_data_type != "text" or self.close_sent:
            super().send_receive_event_to_app()
            return
        # uvicorn's own, but a frame that is not UTF-8 is no error of ours to log.
        data = self.frames[0] if len(self.frames) == 1 else b"".join(self.frames)
        self.frames = []
        try:
            text = data.decode()
        except UnicodeDecodeError:
            self.conn.send_close(CloseCode.INVALID_DATA, "Expected UTF-8 text")
            self.handle_parser_exception()  # tells the app, writes the close, closes the transport
            return
        self.queue.put_nowait({"type": "websocket.receive", "text": text})
        if not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()

    def keepalive_timeout(self) -> None:
        super().keepalive_timeout()  # sends close 1011 and starts a graceful close
        self.transport.abort()

    async def run_asgi(self) -> None:
        await super().run_asgi()
        if self.handshake_complete and not self.close_sent and not self.disconnected:
            # The application ended without a close frame getting out: the peer is not reading.
            self.transport.abort()


__all__ = ["SINK_EXTENSION", "ChatWebSocketProtocol", "FrameSink", "text_frame_header"]
