"""The endpoint's adapter between Starlette's WebSocket and the core's `Connection`."""

from __future__ import annotations

import pytest
from starlette.types import Message
from starlette.websockets import WebSocket

from app.core.sockets import ConnectionClosed
from app.web.endpoint import _Socket

pytestmark = pytest.mark.anyio


def closed_under_the_app() -> WebSocket:
    """A WebSocket whose server closed it by itself (uvicorn does for a frame over
    ws_max_size, or one that is not UTF-8) and now refuses whatever the app sends."""

    async def receive() -> Message:
        return {"type": "websocket.connect"}

    async def send(message: Message) -> None:
        if message["type"] == "websocket.accept":
            return
        raise RuntimeError(f"Unexpected ASGI message '{message['type']}', after sending 'websocket.close'.")

    return WebSocket({"type": "websocket", "path": "/ws", "headers": []}, receive, send)


async def test_a_send_refused_after_the_server_closed_means_the_peer_is_gone() -> None:
    websocket = closed_under_the_app()
    await websocket.accept()
    socket = _Socket(websocket)
    with pytest.raises(ConnectionClosed):
        await socket.send_text(b'{"type":"join","name":"ann"}')
    with pytest.raises(ConnectionClosed):
        await socket.close(1001, "Server shutting down")
