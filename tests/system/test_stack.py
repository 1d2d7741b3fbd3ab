"""What the `chatroom` command's stack adds to uvicorn at the HTTP and TLS layers, over real TLS."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import shutil
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.server.http import MAX_PIPELINED
from tests.support.certificates import Certificates
from tests.support.servers import (
    Server,
    chatroom_command,
    client_context,
    free_port,
    open_peer,
    run_server,
    uvicorn_command,
)
from tests.system.test_compression import readme_uvicorn_command
from tests.system.test_control_frames import flood_without_reading, slow_socket

pytestmark = pytest.mark.anyio

CLOSE_TIMEOUT = 1.0  # CHAT_CLOSE_TIMEOUT for this server: 5 s by default
WRITE_TIMEOUT = 1.0  # CHAT_WRITE_TIMEOUT: 10 s by default


@pytest.fixture(scope="module")
def chatroom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("stack")
    port = free_port()
    command = chatroom_command(port, folder / "cert.pem", folder / "key.pem")
    env = {"CHAT_CLOSE_TIMEOUT": str(CLOSE_TIMEOUT), "CHAT_WRITE_TIMEOUT": str(WRITE_TIMEOUT)}
    with run_server(command, port, folder, env=env) as server:
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


async def test_pipelined_requests_that_are_never_read_are_bounded_and_cut_off(chatroom: Server, cert: Path) -> None:
    """A client that pipelines requests without end and reads none of the answers: the server
    queues a few (browsers do not pipeline at all), reads nothing more from it while its
    answers wait, and lets it go."""
    requests = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" * 1000
    tls = await asyncio.to_thread(slow_socket, chatroom, cert)
    cut, growth = await flood_without_reading(chatroom, tls, requests, CLOSE_TIMEOUT + WRITE_TIMEOUT + 4)
    print(f"cut off after {cut:.2f} s; server RSS grew by at most {growth / 2**20:.1f} MB")


def pipeline(port: int, cert: Path, requests: int) -> bytes:
    """Send `requests` pipelined requests in one write, the last one asking to close the
    connection; everything the server sent back until it closed it."""
    connection = client_context(cert).wrap_socket(
        socket.create_connection(("127.0.0.1", port), timeout=10), server_hostname="127.0.0.1"
    )
    with connection:
        request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        connection.sendall((request + b"\r\n") * (requests - 1) + request + b"Connection: close\r\n\r\n")
        received = b""
        with contextlib.suppress(ssl.SSLEOFError, ConnectionResetError):
            while chunk := connection.recv(65536):
                received += chunk
        return received


@pytest.mark.parametrize("requests", [3, MAX_PIPELINED + 1])
async def test_a_few_pipelined_requests_are_all_answered(chatroom: Server, cert: Path, requests: int) -> None:
    received = await asyncio.to_thread(pipeline, chatroom.port, cert, requests)
    assert received.count(b"HTTP/1.1 200 OK\r\n") == requests


async def test_past_that_the_connection_closes_after_the_answers_it_queued(chatroom: Server, cert: Path) -> None:
    received = await asyncio.to_thread(pipeline, chatroom.port, cert, 50)
    answers = received.split(b"HTTP/1.1 200 OK\r\n")[1:]
    assert len(answers) == 1 + MAX_PIPELINED  # the one being answered, and those that waited behind it
    assert b"connection: close\r\n" in answers[-1]


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command, to ask for a renegotiation")
async def test_a_tls_renegotiation_is_refused(chatroom: Server, cert: Path) -> None:
    """Each renegotiation would cost the server a handshake's work and writes, as often as a
    client asks (TLS 1.2; TLS 1.3 has none)."""
    command = ["openssl", "s_client", "-tls1_2", "-connect", f"127.0.0.1:{chatroom.port}", "-CAfile", str(cert)]
    result = await asyncio.to_thread(subprocess.run, command, input=b"R\n", capture_output=True, timeout=30)
    output = (result.stdout + result.stderr).decode(errors="replace")
    assert "RENEGOTIATING" in output  # it asked
    assert "no renegotiation" in output  # and the server's alert said no


WARNING = "served by uvicorn without chatroom's protections"
STACK_OPTIONS = {
    "--ws": "app.server.websocket:ChatWebSocketProtocol",
    "--http": "app.server.http:ChatHttpProtocol",
    "--loop": "app.server.loop:new_event_loop",
}


def warnings_in(log: str) -> list[str]:
    return [line for line in log.splitlines() if WARNING in line]


@pytest.mark.parametrize(
    ("tls", "missing"),
    [(True, ["--ws", "--http", "--loop"]), (False, ["--ws"])],
    ids=["over TLS", "behind a proxy"],
)
def test_plain_uvicorn_says_at_start_what_it_lacks(
    certificates: Certificates, tmp_path: Path, tls: bool, missing: list[str]
) -> None:
    """One warning as the app starts, naming the options to add. Without TLS, uvicorn is behind
    a proxy, which bounds request heads itself: only the WebSocket protocol is missing then."""
    port = free_port()
    if tls:
        command = uvicorn_command(port, certificates.cert, certificates.key)
    else:
        command = [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1", "--port", str(port)]
    with run_server(command, port, tmp_path, scheme="wss" if tls else "ws") as server:
        [warning] = warnings_in(server.read_log())  # by now the app has started: it is listening
    for option, value in STACK_OPTIONS.items():
        assert (f"{option} {value}" in warning) == (option in missing), (option, warning)
    assert "inflates compressed frames (up to 16777216 bytes each)" in warning
    assert "Run `chatroom`" in warning


@pytest.mark.parametrize("how", ["chatroom", "uvicorn as README.md shows it", "uvicorn behind a proxy with --ws"])
def test_on_chatroom_s_stack_it_says_nothing(certificates: Certificates, tmp_path: Path, how: str) -> None:
    port = free_port()
    if how == "chatroom":
        command = chatroom_command(port, certificates.cert, certificates.key)
    elif how == "uvicorn as README.md shows it":
        command = readme_uvicorn_command(port, certificates)
    else:
        command = [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1", "--port", str(port)]
        command += ["--ws", STACK_OPTIONS["--ws"]]
    with run_server(command, port, tmp_path, scheme="ws" if "proxy" in how else "wss") as server:
        log = server.read_log()
    assert "Application startup complete" in log
    assert warnings_in(log) == []
