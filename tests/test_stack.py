"""What the `chatroom` command's stack adds to uvicorn at the HTTP and TLS layers, over real TLS."""

from __future__ import annotations

import asyncio
import http.client
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import Server, chatroom_command, client_context, free_port, open_peer, run_server

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def chatroom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("stack")
    port = free_port()
    with run_server(chatroom_command(port, folder / "cert.pem", folder / "key.pem"), port, folder) as server:
        yield server
    log = server.read_log()
    assert "Traceback" not in log
    assert "ERROR" not in log


@pytest.fixture(scope="module")
def cert(chatroom: Server) -> Path:
    return chatroom.log.parent / "cert.pem"


def response_headers(port: int, cert: Path, path: str) -> list[tuple[str, str]]:
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=client_context(cert), timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        return response.getheaders()
    finally:
        connection.close()


@pytest.mark.parametrize("path", ["/", "/static/app.js", "/healthz", "/nowhere"])
async def test_chatroom_does_not_say_what_serves_it(chatroom: Server, cert: Path, path: str) -> None:
    """No `server: uvicorn` header: it tells a scanner which bugs to try, and nobody else needs it."""
    headers = await asyncio.to_thread(response_headers, chatroom.port, cert, path)
    assert "server" not in {name.lower() for name, _ in headers}
    assert "date" in {name.lower() for name, _ in headers}  # uvicorn's other default header stays


async def test_nor_does_its_websocket_handshake(chatroom: Server, cert: Path) -> None:
    peer = await open_peer(chatroom, "name=ann", cert)
    response = peer.connection.response
    assert response is not None
    assert response.status_code == 101
    assert "Server" not in response.headers
    await peer.connection.close()
