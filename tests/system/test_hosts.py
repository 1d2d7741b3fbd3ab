"""Against real servers: a request must name one of the server's hosts, and a page's origin
must have the connection's scheme, as a proxy that is believed reports it."""

from __future__ import annotations

import asyncio
import http.client
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.server import free_port
from tests.support.certificates import Certificates
from tests.support.servers import Server, chatroom_command, client_context, run_server, uvicorn_command

pytestmark = pytest.mark.anyio

SPOOFED = ["evil.example", "evil.example:8443", "127.0.0.1.evil.example", "localhost@evil.example", "[::2]", "x"]
UPGRADE = {
    "Upgrade": "websocket",
    "Connection": "Upgrade",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version": "13",
}


def status(server: Server, path: str, headers: dict[str, str], cafile: Path | None = None) -> int:
    """The status of one request to `server` with exactly these headers (Host included)."""
    connection: http.client.HTTPConnection
    if cafile is not None:
        connection = http.client.HTTPSConnection("127.0.0.1", server.port, context=client_context(cafile), timeout=10)
    else:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.putrequest("GET", path, skip_host=True)
        for name, value in headers.items():
            connection.putheader(name, value)
        connection.endheaders()
        return connection.getresponse().status
    finally:
        connection.close()


@pytest.fixture(params=["chatroom", "uvicorn"])
def server(request: pytest.FixtureRequest, certificates: Certificates, tmp_path: Path) -> Iterator[Server]:
    port = free_port()
    make = chatroom_command if request.param == "chatroom" else uvicorn_command
    with run_server(make(port, certificates.cert, certificates.key), port, tmp_path) as server:
        yield server


async def test_a_spoofed_host_is_refused_on_pages_and_handshakes(server: Server, certificates: Certificates) -> None:
    own = f"127.0.0.1:{server.port}"
    for host in SPOOFED:
        for path in ("/", "/healthz", "/r/lobby/"):
            assert await asyncio.to_thread(status, server, path, {"Host": host}, certificates.ca) == 400, host
        origin = {"Origin": f"https://{host}", "Host": host}
        assert await asyncio.to_thread(status, server, "/ws?name=ann", UPGRADE | origin, certificates.ca) == 400
    for host in (own, f"localhost:{server.port}", "127.0.0.1"):
        assert await asyncio.to_thread(status, server, "/healthz", {"Host": host}, certificates.ca) == 200
        origin = {"Origin": f"https://{host}", "Host": host}
        assert await asyncio.to_thread(status, server, "/ws?name=ann", UPGRADE | origin, certificates.ca) == 101
    # The right host over the wrong scheme: an http page may be anyone's.
    origin = {"Origin": f"http://{own}", "Host": own}
    assert await asyncio.to_thread(status, server, "/ws?name=ann", UPGRADE | origin, certificates.ca) == 403


@pytest.fixture
def plain_http_uvicorn(tmp_path: Path) -> Iterator[Server]:
    """Plain uvicorn on plain HTTP, as behind a proxy that terminates TLS: it believes
    X-Forwarded-Proto from 127.0.0.1 (its default)."""
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1", "--port", str(port)]
    with run_server(command, port, tmp_path, scheme="ws") as server:
        yield server


async def test_behind_a_believed_proxy_the_scheme_it_forwards_is_the_one_compared(plain_http_uvicorn: Server) -> None:
    server = plain_http_uvicorn
    own = f"127.0.0.1:{server.port}"

    def handshake(origin: str, forwarded_proto: str | None = None) -> int:
        headers = UPGRADE | {"Host": own, "Origin": origin}
        if forwarded_proto is not None:
            headers["X-Forwarded-Proto"] = forwarded_proto
        return status(server, "/ws?name=ann", headers)

    assert await asyncio.to_thread(handshake, f"http://{own}") == 101
    assert await asyncio.to_thread(handshake, f"https://{own}") == 403  # no proxy said it was https
    assert await asyncio.to_thread(handshake, f"https://{own}", "https") == 101
    assert await asyncio.to_thread(handshake, f"http://{own}", "https") == 403
    assert "believe its X-Forwarded-Proto" in server.read_log()  # the operator learns why


async def test_chatroom_believes_no_forwarded_scheme_unless_told(certificates: Certificates, tmp_path: Path) -> None:
    for options, believed in (((), False), (("--forwarded-allow-ips", "127.0.0.1"), True)):
        port = free_port()
        command = chatroom_command(port, certificates.cert, certificates.key, *options)
        folder = tmp_path / str(believed)
        folder.mkdir()
        with run_server(command, port, folder) as server:
            own = f"127.0.0.1:{port}"
            headers = UPGRADE | {"Host": own, "Origin": f"http://{own}", "X-Forwarded-Proto": "http"}
            got = await asyncio.to_thread(status, server, "/ws?name=ann", headers, certificates.ca)
            assert got == (101 if believed else 403)
