"""Control frames and fragments against a real `chatroom` over TLS: whatever a client sends,
and whether or not it reads what comes back, what the server holds for it stays bounded, a
flooder is closed or cut off, and everyone else chats on time."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode

from app.core.protocol import CloseCode
from app.server.websocket import MAX_FRAGMENTS
from tests.support.chatters import Chat, summary
from tests.support.servers import (
    ROOT,
    Server,
    chatroom_command,
    client_context,
    free_port,
    open_peer,
    run_server,
    wait_until,
)
from tests.system.test_abuse import settled_rss
from tests.system.test_flood import FLOODED_LATENCY_LIMIT

pytestmark = pytest.mark.anyio

CLOSE_TIMEOUT = 1.0  # CHAT_CLOSE_TIMEOUT for these servers: 5 s by default
WRITE_TIMEOUT = 1.0  # CHAT_WRITE_TIMEOUT for these servers: 10 s by default
# How much more memory the server may take while one client floods it: a connection's
# buffers and its socket's, at most its output's high-water mark (512 KiB over TLS) and a read.
FLOOD_GROWTH_LIMIT = 8 << 20
# What the server may keep of twelve connections that flooded it once they are gone; each
# of them held about a megabyte while it lasted.
RETAINED_LIMIT = 6 << 20
RATE_OFF = {"CHAT_RATE_LIMIT": "0"}  # pings bounded by what the server holds alone, not by the rate


@pytest.fixture
def chatroom_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """Extra CHAT_* variables for `server`; parametrise indirectly to change them."""
    return getattr(request, "param", {})


@pytest.fixture
def server(tmp_path: Path, chatroom_env: dict[str, str]) -> Iterator[Server]:
    port = free_port()
    command = chatroom_command(port, tmp_path / "cert.pem", tmp_path / "key.pem")
    env = {"CHAT_CLOSE_TIMEOUT": str(CLOSE_TIMEOUT), "CHAT_WRITE_TIMEOUT": str(WRITE_TIMEOUT), **chatroom_env}
    with run_server(command, port, tmp_path, env=env) as server:
        yield server
    log = server.read_log()
    assert "Traceback" not in log
    assert "ERROR" not in log


def frames(opcode: Opcode, payload: bytes, count: int) -> bytes:
    """`count` masked frames, as a client sends them."""
    return Frame(opcode, payload).serialize(mask=True, extensions=[]) * count


def slow_socket(server: Server, cert: Path) -> ssl.SSLSocket:
    """A TLS connection to the server that takes little: a tiny receive buffer."""
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.connect(("127.0.0.1", server.port))
    return client_context(cert).wrap_socket(raw, server_hostname="127.0.0.1")


def upgraded_socket(server: Server, cert: Path, query: str) -> ssl.SSLSocket:
    """A `slow_socket` past the WebSocket handshake."""
    tls = slow_socket(server, cert)
    tls.sendall(
        f"GET /ws?{query} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n".encode()
        + b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += tls.recv(1)  # one byte at a time: nothing after the head is taken
    assert head.startswith(b"HTTP/1.1 101"), head
    return tls


def send_until_stopped(tls: ssl.SSLSocket, chunk: bytes, stop: threading.Event) -> str:
    """Send `chunk` over and over, reading nothing, until the server cuts the connection or
    `stop` is set; what ended it."""
    tls.settimeout(0.1)
    try:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                tls.sendall(chunk)  # after a timeout, the same bytes again: TLS resumes the record
    except OSError:  # reset, broken pipe, or the TLS layer's word for either
        return "cut"
    finally:
        tls.close()
    return "stopped"


async def flood_without_reading(server: Server, tls: ssl.SSLSocket, chunk: bytes, deadline: float) -> tuple[float, int]:
    """`tls` sends `chunk` over and over and never reads; returns how long the server took to
    let go of its socket, and the most memory it held meanwhile, over what it held before."""
    port = tls.getsockname()[1]
    stop = threading.Event()
    baseline = server.rss()
    flooding = asyncio.ensure_future(asyncio.to_thread(send_until_stopped, tls, chunk, stop))
    started = time.monotonic()
    peak = baseline
    try:
        while await asyncio.to_thread(server.holds_connection_from, port):
            peak = max(peak, server.rss())
            held = time.monotonic() - started
            memory = f"server RSS {baseline >> 20} -> {peak >> 20} MB"
            assert peak - baseline < FLOOD_GROWTH_LIMIT, f"{memory} in {held:.1f} s"
            assert held < deadline, f"still connected after {deadline} s; {memory}"
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await flooding
    return time.monotonic() - started, peak - baseline


PINGS = frames(Opcode.PING, b"p" * 125, 100)


@pytest.mark.parametrize("chatroom_env", [RATE_OFF], indirect=True)
async def test_a_ping_flood_that_never_reads_stops_being_read_and_is_cut_off(server: Server, tmp_path: Path) -> None:
    """With the rate limit off, nothing but the server's bounds stops it: its pongs fill its
    socket, the server stops reading it (its pings wait in its own connection), and once its
    socket has taken nothing for CHAT_WRITE_TIMEOUT it is cut off."""
    tls = await asyncio.to_thread(upgraded_socket, server, tmp_path / "cert.pem", "name=flooder")
    cut, growth = await flood_without_reading(server, tls, PINGS, WRITE_TIMEOUT + 4)
    print(f"cut off after {cut:.2f} s; server RSS grew by at most {growth / 2**20:.1f} MB")
    assert cut > WRITE_TIMEOUT * 0.8  # by the write deadline, not anything sooner


@pytest.mark.parametrize("chatroom_env", [RATE_OFF], indirect=True)
async def test_what_ping_flooders_leave_behind_is_given_back_at_once(server: Server, tmp_path: Path) -> None:
    """Twelve clients flood pings and never read, each until it is cut off. Their connections'
    buffers, grown to the high-water mark, are freed when they end, not at the next full
    garbage collection (which may be long in coming): the server's memory is back at once."""
    cert = tmp_path / "cert.pem"
    baseline = await settled_rss(server)
    sockets = [await asyncio.to_thread(upgraded_socket, server, cert, f"name=flooder{n}") for n in range(12)]
    stop = threading.Event()
    floods = [asyncio.ensure_future(asyncio.to_thread(send_until_stopped, tls, PINGS, stop)) for tls in sockets]
    try:
        await wait_until(lambda: server.open_sockets() == 0, 30, "every flooder cut off")
    finally:
        stop.set()
        assert set(await asyncio.gather(*floods)) == {"cut"}
    after = await settled_rss(server)
    print(f"server RSS {baseline / 2**20:.1f} MB before 12 ping flooders, {after / 2**20:.1f} MB after")
    assert after - baseline < RETAINED_LIMIT


async def test_a_ping_flood_over_the_rate_that_never_reads_is_cut_off(server: Server, tmp_path: Path) -> None:
    """At the default rate it is closed with 1008 after its burst; as it does not read its
    close either, it is cut off CHAT_CLOSE_TIMEOUT later."""
    tls = await asyncio.to_thread(upgraded_socket, server, tmp_path / "cert.pem", "name=flooder")
    cut, growth = await flood_without_reading(server, tls, PINGS, CLOSE_TIMEOUT + 4)
    print(f"cut off after {cut:.2f} s; server RSS grew by at most {growth / 2**20:.1f} MB")


@pytest.mark.parametrize("kind", ["ping", "pong"])
async def test_a_control_frame_flood_that_reads_is_closed_1008(server: Server, tmp_path: Path, kind: str) -> None:
    """Pings and unsolicited pongs take tokens as messages do (5 a second, bursts of 10 by
    default), and a client that keeps sending them is closed as a flooder is."""
    peer = await open_peer(server, f"name={kind}er", tmp_path / "cert.pem")
    sent = 0
    with contextlib.suppress(ConnectionClosed):
        async with asyncio.timeout(10):
            while True:
                payload = sent.to_bytes(125, "big")
                await (peer.connection.ping(payload) if kind == "ping" else peer.connection.pong(payload))
                sent += 1
                await asyncio.sleep(0)  # let the connection's reader see the close
    await asyncio.wait_for(peer.connection.wait_closed(), 10)
    assert peer.connection.close_code == CloseCode.POLICY_VIOLATION
    assert (peer.connection.close_reason or "").startswith("Flooding")
    assert sent >= 10 + 10  # its burst, then its strikes


async def test_pings_within_the_rate_are_each_answered(server: Server, tmp_path: Path) -> None:
    """A client's keepalive pings get their pongs, payload and all."""
    peer = await open_peer(server, "name=keepalive", tmp_path / "cert.pem")
    for number in range(5):
        pong = await peer.connection.ping(f"ping {number}")
        await asyncio.wait_for(pong, 5)
    await peer.connection.close()
    assert peer.connection.close_code == CloseCode.NORMAL


async def test_a_reading_ping_flooder_does_not_slow_the_others(server: Server, tmp_path: Path) -> None:
    """Three people chat while a client floods pings at full speed and reads every pong,
    reconnecting whenever it is closed: every message reaches everyone on time, and the
    flooder's connections end with 1008."""
    cert = tmp_path / "cert.pem"
    chat = Chat([await open_peer(server, f"name=chatter{number}", cert) for number in range(3)])
    quiet = await chat.talk(seconds=2)
    pinger = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.support.pinger", server.url("room=lobby"), str(cert), "--seconds", "5",
        cwd=ROOT, stdout=subprocess.PIPE,
    )  # fmt: skip
    assert pinger.stdout is not None
    assert await asyncio.wait_for(pinger.stdout.readline(), 30) == b"flooding\n"
    flooded = await chat.talk(seconds=4)
    report: dict[str, Any] = json.loads(await asyncio.wait_for(pinger.stdout.readline(), 30))
    assert await asyncio.wait_for(pinger.wait(), 30) == 0
    await chat.close()
    print(f"quiet: {summary(quiet)}; pinged: {summary(flooded)}; pinger: {report}")
    assert max(flooded) < FLOODED_LATENCY_LIMIT
    closes = {int(code): count for code, count in report["closes"].items()}
    assert closes.get(CloseCode.POLICY_VIOLATION, 0) > report["connections"] / 2, closes


async def test_a_message_in_endless_fragments_is_closed_1009(server: Server, tmp_path: Path) -> None:
    """Empty continuation frames add nothing to a message's size, but each one is a frame the
    server holds on to until the message ends: a message has at most 64 frames."""
    cert = tmp_path / "cert.pem"
    async with connect(server.url("name=fragments"), ssl=client_context(cert)) as connection:
        await connection.recv()  # the welcome

        async def fragments() -> AsyncIterator[str]:
            yield "{"
            for _ in range(10_000):
                yield ""

        with contextlib.suppress(ConnectionClosed):
            await connection.send(fragments())
        await asyncio.wait_for(connection.wait_closed(), 10)
    assert connection.close_code == CloseCode.MESSAGE_TOO_BIG


async def test_a_message_in_64_frames_is_taken(server: Server, tmp_path: Path) -> None:
    peer = await open_peer(server, "name=streamer", tmp_path / "cert.pem")
    frame = json.dumps({"type": "message", "text": "in pieces" + "." * 100})
    pieces = [frame[:-62], *frame[-62:]]  # and websockets ends it with an empty frame of its own
    assert len(pieces) + 1 == MAX_FRAGMENTS

    async def fragments() -> AsyncIterator[str]:
        for piece in pieces:
            yield piece

    await peer.connection.send(fragments())
    assert (await peer.next_of("message"))["text"] == "in pieces" + "." * 100
    await peer.connection.close()
