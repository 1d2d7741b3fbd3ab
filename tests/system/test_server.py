"""Against real servers over TLS: uvicorn as the README runs it, and the `chatroom` command."""

from __future__ import annotations

import asyncio
import http.client
import json
import signal
import socket
import ssl
import stat
import subprocess
import time
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect

from app.core.protocol import CloseCode
from bench.server import free_port
from tests.support.certificates import Certificates
from tests.support.servers import (
    Server,
    chatroom_command,
    client_context,
    open_peer,
    run_server,
    uvicorn_command,
    wait_until,
)

pytestmark = pytest.mark.anyio

Event = dict[str, Any]


@pytest.fixture
def uvicorn_server(certificates: Certificates, tmp_path: Path) -> Iterator[Server]:
    port = free_port()
    command = uvicorn_command(port, certificates.cert, certificates.key)
    with run_server(command, port, tmp_path, env={"CHAT_RATE_LIMIT": "0"}) as server:
        yield server


async def test_chat_over_wss_with_uvicorn(uvicorn_server: Server, certificates: Certificates) -> None:
    ann = await open_peer(uvicorn_server, "name=ann", certificates.ca, origin=uvicorn_server.origin)
    bob = await open_peer(uvicorn_server, "name=bob", certificates.ca)
    await ann.say("over TLS")
    assert (await bob.next_of("message"))["text"] == "over TLS"
    assert (await ann.next_of("message"))["text"] == "over TLS"
    await ann.connection.close()
    await bob.connection.close()


async def test_a_cross_site_handshake_gets_403(uvicorn_server: Server, certificates: Certificates) -> None:
    with pytest.raises(Exception, match="403"):
        await connect(
            uvicorn_server.url("name=eve"),
            ssl=client_context(certificates.ca),
            origin="https://evil.example",  # type: ignore[arg-type]
        )


async def test_sigterm_closes_every_client_with_1001_and_exits_cleanly(
    uvicorn_server: Server, certificates: Certificates
) -> None:
    peers = [await open_peer(uvicorn_server, f"name=p{number}", certificates.ca) for number in range(3)]
    await peers[0].say("before the end")
    for peer in peers:
        assert (await peer.next_of("message"))["text"] == "before the end"
    uvicorn_server.process.send_signal(signal.SIGTERM)
    for peer in peers:
        await asyncio.wait_for(peer.connection.wait_closed(), 10)
        assert peer.connection.close_code == CloseCode.GOING_AWAY
    # Uvicorn re-raises the signal once it has shut down cleanly, so SIGTERM is the exit status.
    assert await asyncio.to_thread(uvicorn_server.stop) in (0, -signal.SIGTERM)
    log = uvicorn_server.output
    assert "Application shutdown complete" in log
    assert "Traceback" not in log
    assert "ERROR" not in log
    assert "Task was destroyed" not in log


@pytest.fixture
def chatroom_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """Extra CHAT_* variables for `chatroom_server`; parametrise indirectly to change them."""
    return getattr(request, "param", {})


@pytest.fixture
def chatroom_server(tmp_path: Path, chatroom_env: dict[str, str]) -> Iterator[Server]:
    port = free_port()
    certs = tmp_path / "certs"
    command = chatroom_command(port, certs / "cert.pem", certs / "key.pem")
    env = {"CHAT_RATE_LIMIT": "0", "CHAT_PING_INTERVAL": "0.5", "CHAT_PING_TIMEOUT": "0.5", "CHAT_CLOSE_TIMEOUT": "1"}
    with run_server(command, port, tmp_path, env={**env, **chatroom_env}) as server:
        yield server


async def test_chatroom_creates_a_certificate_and_serves_wss(chatroom_server: Server, tmp_path: Path) -> None:
    cert, key = tmp_path / "certs" / "cert.pem", tmp_path / "certs" / "key.pem"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert f"https://127.0.0.1:{chatroom_server.port}/" in chatroom_server.read_log()
    peer = await open_peer(chatroom_server, "name=ann", cert)  # the certificate verifies for 127.0.0.1
    await peer.say("hello")
    assert (await peer.next_of("message"))["text"] == "hello"
    await peer.connection.close()


def fetch_headers(port: int, cert: Path, path: str) -> tuple[int, dict[str, str]]:
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=client_context(cert), timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        return response.status, {name.lower(): value for name, value in response.getheaders()}
    finally:
        connection.close()


@pytest.mark.parametrize(("path", "status"), [("/", 200), ("/static/app.js", 200), ("/nowhere", 404)])
async def test_chatroom_sends_the_security_headers_over_tls(
    chatroom_server: Server, tmp_path: Path, path: str, status: int
) -> None:
    got, headers = await asyncio.to_thread(fetch_headers, chatroom_server.port, tmp_path / "certs" / "cert.pem", path)
    assert got == status
    policy = headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy
    assert "unsafe-eval" not in policy
    assert "frame-ancestors 'none'" in policy
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["strict-transport-security"].startswith("max-age=")
    assert int(headers["strict-transport-security"].removeprefix("max-age=").split(";")[0]) >= 31536000


def tls_client(cert: Path, version: ssl.TLSVersion) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(cert))
    context.set_ciphers("DEFAULT:@SECLEVEL=0")  # let this client offer old versions
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # offering them is the point
        context.minimum_version = version
        context.maximum_version = version
    return context


def handshake(port: int, context: ssl.SSLContext) -> str | None:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        return tls.version()


async def test_chatroom_offers_tls_1_2_and_newer_only(chatroom_server: Server, tmp_path: Path) -> None:
    cert = tmp_path / "certs" / "cert.pem"
    assert (
        await asyncio.to_thread(handshake, chatroom_server.port, tls_client(cert, ssl.TLSVersion.TLSv1_2)) == "TLSv1.2"
    )
    for old in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1):
        with pytest.raises(ssl.SSLError):
            await asyncio.to_thread(handshake, chatroom_server.port, tls_client(cert, old))


async def test_chatroom_refuses_an_oversized_frame_with_1009(chatroom_server: Server, tmp_path: Path) -> None:
    peer = await open_peer(chatroom_server, "name=ann", tmp_path / "certs" / "cert.pem")
    await peer.connection.send(json.dumps({"type": "message", "text": "x" * 5000}))
    await asyncio.wait_for(peer.connection.wait_closed(), 10)
    assert peer.connection.close_code == CloseCode.MESSAGE_TOO_BIG


@pytest.fixture
async def silent_peer(chatroom_server: Server, tmp_path: Path) -> AsyncIterator[ssl.SSLSocket]:
    """Completes the WebSocket handshake as `mute`, then never reads or answers anything."""
    context = client_context(tmp_path / "certs" / "cert.pem")

    def open_socket() -> ssl.SSLSocket:
        raw = socket.socket()
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # fills up quickly
        raw.connect(("127.0.0.1", chatroom_server.port))
        tls = context.wrap_socket(raw, server_hostname="127.0.0.1")
        tls.sendall(
            b"GET /ws?name=mute HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        assert tls.recv(12) == b"HTTP/1.1 101"
        return tls

    tls = await asyncio.to_thread(open_socket)
    yield tls
    tls.close()


async def test_a_vanished_peer_is_reaped_by_pings(
    chatroom_server: Server, silent_peer: ssl.SSLSocket, tmp_path: Path
) -> None:
    watcher = await open_peer(chatroom_server, "name=watcher", tmp_path / "certs" / "cert.pem")
    # Pings every 0.5 s, 0.5 s to answer (CHAT_PING_*): the mute peer is gone within seconds.
    assert await watcher.next_of("leave", timeout=10) == {"type": "leave", "name": "mute"}
    await watcher.connection.close()


@pytest.mark.parametrize(
    "chatroom_env",
    # Pings a minute apart: the mute peer must be dropped for its full queue, not by pings. A
    # short history, so that what the server holds afterwards is not the chat's own history.
    [{"CHAT_PING_INTERVAL": "60", "CHAT_HISTORY_LIMIT": "100", "CHAT_WELCOME_HISTORY": "100"}],
    indirect=True,
)
async def test_a_reader_that_stops_reading_is_dropped_and_nobody_waits_for_it(
    chatroom_server: Server, silent_peer: ssl.SSLSocket, tmp_path: Path
) -> None:
    """Once the kernel's buffers for the mute peer are full, its queue fills; then it leaves at
    once and its socket is cut CHAT_CLOSE_TIMEOUT (1 s here) later, the server's memory is back
    where it was, and the reader got every message, none of them late."""
    cert = tmp_path / "certs" / "cert.pem"
    sender = await open_peer(chatroom_server, "name=sender", cert)
    reader = await open_peer(chatroom_server, "name=reader", cert)
    mute_port = silent_peer.getsockname()[1]
    baseline = chatroom_server.rss()
    padding = "y" * 3000
    sent_at: list[float] = []
    latencies: list[float] = []
    left: list[str] = []

    async def read() -> None:
        while (event := await reader.next(timeout=20)).get("text") != "end":
            if event["type"] == "message":
                number = int(event["text"].split()[0])
                assert number == len(latencies)  # every message, in order
                latencies.append(time.monotonic() - sent_at[number])
            elif event["type"] == "leave":
                left.append(event["name"])

    reading = asyncio.ensure_future(read())
    # Paced by its echo, each message is a frame of its own for everyone, so the mute peer's
    # queue grows by a frame a message (the server batches what arrives together into one frame).
    started = time.monotonic()
    while "mute" not in left:
        assert time.monotonic() - started < 40, f"the mute peer is still there after {len(sent_at)} messages"
        sent_at.append(time.monotonic())
        await sender.say(f"{len(sent_at) - 1} {padding}")
        await sender.next_of("message")
    cut_off = await wait_until(
        lambda: not chatroom_server.holds_connection_from(mute_port), 10, "the server let go of the mute socket"
    )
    await sender.say("end")
    await asyncio.wait_for(reading, 20)
    memory = chatroom_server.rss()
    print(
        f"mute peer dropped after {len(sent_at)} messages ({len(sent_at) * len(padding) >> 20} MB), "
        f"{time.monotonic() - started:.1f} s; its socket cut {cut_off:.2f} s after it left; "
        f"reader latency max {max(latencies) * 1000:.1f} ms; server RSS {baseline >> 20} -> {memory >> 20} MB"
    )
    assert left == ["mute"]
    assert cut_off < 1 + 2  # CHAT_CLOSE_TIMEOUT, and time to see it from outside
    # The room waits for the mute peer at most CHAT_STALL_TIMEOUT (0.25 s), never its 1 s deadline.
    assert max(latencies) < 0.25 + 0.25
    assert memory < baseline * 1.10
    await sender.connection.close()
    await reader.connection.close()


def test_chatroom_refuses_workers_on_a_single_process_backend(tmp_path: Path) -> None:
    command = chatroom_command(free_port(), tmp_path / "cert.pem", tmp_path / "key.pem", "--workers", "2")
    result = subprocess.run(command, capture_output=True, text=True, timeout=30, cwd=tmp_path)
    assert result.returncode == 1
    assert "serves one process" in result.stderr
    assert "redis://" in result.stderr


@pytest.mark.parametrize("stack", ["chatroom", "uvicorn"])
async def test_a_binary_frame_from_a_client_alone_in_its_room_closes_it_with_1003_at_once(
    stack: str, certificates: Certificates, tmp_path: Path
) -> None:
    port = free_port()
    if stack == "chatroom":
        command = chatroom_command(port, certificates.cert, certificates.key)
    else:
        command = uvicorn_command(port, certificates.cert, certificates.key)
    with run_server(command, port, tmp_path) as server:
        alone = await open_peer(server, "name=ann&room=attic", certificates.ca)
        started = asyncio.get_running_loop().time()
        await alone.connection.send(b"\x00\x01")
        await asyncio.wait_for(alone.connection.wait_closed(), 10)
        assert alone.connection.close_code == CloseCode.UNSUPPORTED_DATA
        # Not cut off when the close timeout (5 s by default) ran out: the close went out at once.
        assert asyncio.get_running_loop().time() - started < 2
