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
   Frames are limited to CHAT_MAX_MESSAGE_BYTES (close 1009, by the parser, before the
   frame is buffered) and permessage-deflate is never negotiated, whatever uvicorn's
   --ws-max-size and --ws-per-message-deflate say: with it, a frame that passes the size
   check on the wire can inflate a thousand times.
4. When the server stops, uvicorn closes at once every connection whose close frame is out,
   without waiting for the peer's answer. A peer that is still sending then gets a TCP
   reset, which can destroy the close frame before it has read it: it sees 1006 instead of
   our 1001. Here the closing handshake is left to finish, within CHAT_CLOSE_TIMEOUT, as it
   would at any other time (uvicorn waits for its connections to end before it exits).
5. What a peer can make the server write stays bounded, whether or not it reads. Uvicorn
   answers every ping at once and goes on reading whatever the socket's state: a client
   that sends pings and never reads grows the server by its pongs without end. Here:
   - nothing more is read from a peer while its socket is full (over the transport's
     high-water mark): what it sends waits in its own TCP connection;
   - a ping is answered only while its pong fits under that mark; past it, only the latest
     ping is answered, once the socket drains (RFC 6455, 5.5.3, allows that);
   - a socket that does not drain (back under its low-water mark) within CHAT_WRITE_TIMEOUT
     belongs to a peer that stopped reading: it is cut off;
   - pings and pongs from the peer take tokens as messages do (CHAT_RATE_LIMIT,
     CHAT_RATE_BURST), from a bucket of their own; a peer that keeps sending them over the
     rate (CHAT_FLOOD_STRIKES) is closed with 1008, as a flooder of messages is;
   - a message may come in at most MAX_FRAGMENTS frames (close 1009 beyond): each one is
     held until the message is complete, even an empty one.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Callable, Sequence
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState
from websockets.extensions import ServerExtensionFactory
from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import State
from websockets.server import ServerProtocol

from app.core.limits import Strikes, TokenBucket
from app.core.protocol import CloseCode
from app.core.sockets import SINK_EXTENSION
from app.server.app_settings import of_server

# Frames one message may come in. Browsers send a message in one frame; a library that
# streams one sends a few. The limit is not on bytes (CHAT_MAX_MESSAGE_BYTES is) but on the
# frames held until the message ends: empty ones cost nothing on the wire.
MAX_FRAGMENTS = 64
FLOODING = "Flooding: kept sending pings or pongs over the rate limit"
_PONG_HEADER = 2  # bytes before an unmasked control frame's payload

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


class _Gone(asyncio.Transport):
    """The transport of a connection that ended: closed, and holding nothing.

    A connection's protocol lives on in the reference cycles of the application's objects
    until a full garbage collection; its transport, with TLS buffers that can have grown to
    the high-water mark, must not live on with it.
    """

    def is_closing(self) -> bool:
        return True

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass

    def write(self, data: Any) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


_GONE = _Gone()


class ServerConnection(ServerProtocol):
    """websockets' server side of a connection, which shows every control frame from the peer
    to `on_control` before it handles it, and holds at most MAX_FRAGMENTS frames a message.

    `refuse` fails the connection from inside the parser: the frames after it are dropped, and
    the protocol sends the close once the data it was given is parsed.
    """

    def __init__(
        self,
        on_control: Callable[[Frame], bool],
        *,
        extensions: Sequence[ServerExtensionFactory] | None,
        max_size: int | None,
        logger: logging.Logger,
    ) -> None:
        super().__init__(extensions=extensions, max_size=max_size, logger=logger)
        self._on_control = on_control
        self._fragments = 0  # frames of the message being received
        self.refusal: tuple[int, str] | None = None

    def refuse(self, code: int, reason: str) -> None:
        if self.refusal is None:
            self.refusal = (code, reason)

    def recv_frame(self, frame: Frame) -> None:
        if self.refusal is not None:
            return
        opcode = frame.opcode
        if opcode is Opcode.PING or opcode is Opcode.PONG:
            if not self._on_control(frame):
                return
        elif opcode is Opcode.CONT:
            self._fragments += 1
            if self._fragments > MAX_FRAGMENTS:
                self.refuse(CloseCode.MESSAGE_TOO_BIG, f"A message may come in at most {MAX_FRAGMENTS} frames")
                return
        elif opcode is Opcode.TEXT or opcode is Opcode.BINARY:
            self._fragments = 1
        super().recv_frame(frame)


class ChatWebSocketProtocol(WebSocketsSansIOProtocol):
    conn: ServerConnection

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        settings = of_server(app_state)
        self.conn = ServerConnection(
            self._control_frame,
            # No permessage-deflate, whatever uvicorn's --ws-per-message-deflate says: a frame
            # of 4 KB can inflate to 4 MB, and only its size on the wire is known before it is read.
            extensions=[],
            # The application's limit, whatever uvicorn's --ws-max-size says (16 MiB by default).
            max_size=min(config.ws_max_size, settings.max_message_bytes),
            logger=self.conn.logger,  # type: ignore[arg-type]
        )
        self.sink = FrameSink(self)
        # How long a peer gets to answer our close frame (uvicorn's own is 10 s, fixed).
        self.close_timeout = settings.close_timeout
        self._write_timeout = settings.write_timeout
        self._write_deadline: asyncio.TimerHandle | None = None
        self._high_water = 0  # the transport's: over it, it pauses our writing
        self._pongs = 0  # bytes of pongs websockets holds for the transport
        self._unanswered: bytes | None = None  # the latest ping, held back while the socket is full
        # Pings and pongs take tokens as messages do, from a bucket of their own.
        now = self.loop.time()
        self._control_bucket = (
            TokenBucket(settings.rate_limit, settings.rate_burst, now) if settings.rate_limit else None
        )
        self._control_strikes = Strikes(settings.flood_strikes, now)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._high_water = self.transport.get_write_buffer_limits()[1]

    def connection_lost(self, exc: Exception | None) -> None:
        self._end_write_deadline()
        super().connection_lost(exc)
        self.transport = _GONE

    def data_received(self, data: bytes) -> None:
        conn = self.conn
        conn.receive_data(data)
        if conn.parser_exc is not None:
            self.handle_parser_exception()
            return
        if conn.refusal is not None:
            if not self.transport.is_closing():
                conn.fail(*conn.refusal)
                self.handle_parser_exception()  # tells the app, writes the close, closes the transport
            return
        self.handle_events()
        self._flush()

    def _control_frame(self, frame: Frame) -> bool:
        """A ping or a pong from the peer: whether websockets should go on with it."""
        bucket = self._control_bucket
        if bucket is not None:
            now = self.loop.time()
            if not bucket.take(now):
                if self._control_strikes.add(now):
                    self.conn.refuse(CloseCode.POLICY_VIOLATION, FLOODING)
                return False  # dropped: a ping over the rate gets no pong
        if frame.opcode is Opcode.PING:
            self._answer(bytes(frame.data))
            return False  # answered here, within the bounds, not by websockets at once
        return True

    def _answer(self, payload: bytes) -> None:
        size = _PONG_HEADER + len(payload)
        room = self._high_water - self.transport.get_write_buffer_size() - self._pongs
        if self._unanswered is None and size <= room and self.conn.state is State.OPEN:
            self.conn.send_pong(payload)
            self._pongs += size
        else:
            self._unanswered = payload

    def _flush(self) -> None:
        """Write what websockets holds for the peer, and the ping held back if it fits now."""
        if self._unanswered is not None and self.writable.is_set() and self.conn.state is State.OPEN:
            self.conn.send_pong(self._unanswered)
            self._unanswered = None
        self._pongs = 0
        output = self.conn.data_to_send()
        if output and not self.transport.is_closing():
            self.transport.write(b"".join(output))

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
        self._hold_reading()  # uvicorn resumes reading after a close, whatever the socket's state

    async def receive(self) -> Any:
        message = await super().receive()
        self._hold_reading()  # uvicorn resumes reading once the app has taken every message
        return message

    def pause_writing(self) -> None:
        super().pause_writing()
        # What the peer sends now waits in its own TCP connection until it takes what we wrote.
        self.transport.pause_reading()
        self._end_write_deadline()
        self._write_deadline = self.loop.call_later(self._write_timeout, self._write_timed_out)

    def resume_writing(self) -> None:
        super().resume_writing()
        self._end_write_deadline()
        if not self.read_paused:
            self.transport.resume_reading()
        self._flush()
        self.sink.resumed()

    def _hold_reading(self) -> None:
        if not self.writable.is_set() and not self.disconnected:
            self.transport.pause_reading()

    def _write_timed_out(self) -> None:
        self._write_deadline = None
        # It took nothing for write_timeout: a close frame would not reach it either.
        self.transport.abort()

    def _end_write_deadline(self) -> None:
        if self._write_deadline is not None:
            self._write_deadline.cancel()
            self._write_deadline = None

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


__all__ = [
    "MAX_FRAGMENTS",
    "SINK_EXTENSION",
    "ChatWebSocketProtocol",
    "FrameSink",
    "ServerConnection",
    "text_frame_header",
]
