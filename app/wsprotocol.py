"""Uvicorn's sans-I/O WebSocket protocol, cutting off peers that are gone instead of waiting on them.

Uvicorn ends a connection with `transport.close()`, which over TLS first waits for the
peer's close_notify, for up to 30 seconds. A peer that stopped answering pings, or that
never took the close frame we sent, will not send one: it is abandoned here at once, so
its socket and buffers are given back and its room hears it left, within the ping timeout.

A text frame that is not UTF-8 is closed with 1007 (invalid data), as uvicorn does, but
without logging a traceback for it: anyone can send one, as often as they like.

    uvicorn app.main:app --ws app.wsprotocol:ChatWebSocketProtocol ...   (`chatroom` does this)
"""

from __future__ import annotations

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from app.protocol import CloseCode


class ChatWebSocketProtocol(WebSocketsSansIOProtocol):
    def send_receive_event_to_app(self) -> None:
        if self.curr_msg_data_type == "text" and not self.close_sent and not _utf8(self.frames):
            self.frames = []
            self.conn.send_close(CloseCode.INVALID_DATA, "Expected UTF-8 text")
            self.handle_parser_exception()  # tells the app, writes the close, closes the transport
            return
        super().send_receive_event_to_app()

    def keepalive_timeout(self) -> None:
        super().keepalive_timeout()  # sends close 1011 and starts a graceful close
        self.transport.abort()

    async def run_asgi(self) -> None:
        await super().run_asgi()
        if self.handshake_complete and not self.close_sent and not self.disconnected:
            # The application ended without a close frame getting out: the peer is not reading.
            self.transport.abort()


def _utf8(parts: list[bytes]) -> bool:
    # Decoded once more by uvicorn right after: at most max_message_bytes, a microsecond.
    try:
        (parts[0] if len(parts) == 1 else b"".join(parts)).decode()
    except UnicodeDecodeError:
        return False
    return True
