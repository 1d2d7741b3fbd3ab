"""Uvicorn's sans-I/O WebSocket protocol, cutting off peers that are gone instead of waiting on them.

Uvicorn ends a connection with `transport.close()`, which over TLS first waits for the
peer's close_notify, for up to 30 seconds. A peer that stopped answering pings, or that
never took the close frame we sent, will not send one: it is abandoned here at once, so
its socket and buffers are given back and its room hears it left, within the ping timeout.

    uvicorn app.main:app --ws app.wsprotocol:ChatWebSocketProtocol ...   (`chatroom` does this)
"""

from __future__ import annotations

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol


class ChatWebSocketProtocol(WebSocketsSansIOProtocol):
    def keepalive_timeout(self) -> None:
        super().keepalive_timeout()  # sends close 1011 and starts a graceful close
        self.transport.abort()

    async def run_asgi(self) -> None:
        await super().run_asgi()
        if self.handshake_complete and not self.close_sent and not self.disconnected:
            # The application ended without a close frame getting out: the peer is not reading.
            self.transport.abort()
