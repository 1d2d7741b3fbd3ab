"""Uvicorn's sans-I/O WebSocket protocol, cutting off peers that are gone instead of waiting on them.

Uvicorn ends a connection with `transport.close()`, which over TLS first waits for the
peer's close_notify, for up to 30 seconds. A peer that stopped answering pings, or that
never took the close frame we sent, will not send one: it is abandoned here at once, so
its socket and buffers are given back and its room hears it left, within the ping timeout.

A text frame that is not UTF-8 is closed with 1007 (invalid data), as uvicorn does, but
without logging a traceback for it: anyone can send one, as often as they like.

When the server stops, uvicorn closes at once every connection whose close frame is out,
without waiting for the peer's answer. A peer that is still sending then gets a TCP reset,
which can destroy the close frame before it has read it: it sees 1006 instead of our 1001.
Here the closing handshake is left to finish, within CHAT_CLOSE_TIMEOUT, as it would at
any other time (uvicorn waits for its connections to end before it exits).

    uvicorn app.main:app --ws app.wsprotocol:ChatWebSocketProtocol ...   (`chatroom` does this)
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState

from app.protocol import CloseCode
from app.settings import Settings


class ChatWebSocketProtocol(WebSocketsSansIOProtocol):
    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        settings = app_state.get("settings")
        # How long a peer gets to answer our close frame (uvicorn's own is 10 s, fixed).
        self.close_timeout = (settings if isinstance(settings, Settings) else Settings.from_env()).close_timeout

    def shutdown(self) -> None:
        if self.close_sent and self.close_timer is not None:
            self.stop_keepalive()  # our close is out and its timer running: let the peer answer it
            return
        super().shutdown()

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
