"""Compression bombs against real servers over TLS: `chatroom`, and uvicorn as README.md shows it.

A frame compressed with permessage-deflate can inflate a thousand times: 16 KB on the wire
can make 16 MB in the server, within the frame limit uvicorn has by default. chatroom's
WebSocket protocol does not negotiate the extension at all, so a compressed frame is a
protocol error, and the size of every frame is its size on the wire: these bombs are under
CHAT_MAX_MESSAGE_BYTES (4096) on the wire, so that nothing else stops them.
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.extensions.permessage_deflate import PerMessageDeflate
from websockets.frames import Frame, Opcode

from tests.support.certificates import Certificates
from tests.support.servers import ROOT, Server, chatroom_command, client_context, free_port, open_peer, run_server

pytestmark = pytest.mark.anyio

# What each bomb inflates to: 4 MB, from under 4 KB on the wire.
BOMB = 4 * 2**20 - 2**16
BOMBS = 80
# The memory a server may take while it is bombed: what its TLS and WebSocket layers buffer
# of the 320 KB sent, not what it would inflate to (320 MB).
BOMBED_GROWTH_LIMIT = 8 << 20
PROTOCOL_ERROR = 1002


def readme_uvicorn_command(port: int, certificates: Certificates) -> list[str]:
    """The plain-uvicorn command line of README.md, "Run it", with this test's port and certificate."""
    lines = (ROOT / "README.md").read_text().splitlines()
    start = next(n for n, line in enumerate(lines) if line.startswith(".venv/bin/uvicorn app.main:app"))
    text = lines[start]
    while text.endswith("\\"):
        start += 1
        text = text[:-1] + lines[start]
    words = shlex.split(text)
    assert words[0] == ".venv/bin/uvicorn"
    command = [sys.executable, "-m", "uvicorn", *words[1:], "--host", "127.0.0.1"]
    values = {"--port": str(port), "--ssl-keyfile": str(certificates.key), "--ssl-certfile": str(certificates.cert)}
    for option, value in values.items():
        command[command.index(option) + 1] = value
    return command


@pytest.fixture(params=["chatroom", "uvicorn as README.md shows it"])
def server(request: pytest.FixtureRequest, certificates: Certificates, tmp_path: Path) -> Iterator[Server]:
    port = free_port()
    if request.param == "chatroom":
        command = chatroom_command(port, certificates.cert, certificates.key)
    else:
        command = readme_uvicorn_command(port, certificates)
    with run_server(command, port, tmp_path) as server:
        yield server
    log = server.read_log()
    assert "Traceback" not in log
    assert "ERROR" not in log


def bombs(count: int) -> bytes:
    """`count` text frames of BOMB bytes each, compressed as permessage-deflate does (with
    the reserved bit it sets), masked as a client sends them."""
    deflate = PerMessageDeflate(
        remote_no_context_takeover=False,
        local_no_context_takeover=True,
        remote_max_window_bits=15,
        local_max_window_bits=15,
    )
    frame = Frame(Opcode.TEXT, b"a" * BOMB).serialize(mask=True, extensions=[deflate])
    assert len(frame) < 4096
    return frame * count


async def test_permessage_deflate_is_not_negotiated(server: Server, certificates: Certificates) -> None:
    async with connect(server.url("name=ann"), ssl=client_context(certificates.ca), compression="deflate") as client:
        assert client.response is not None
        assert "Sec-WebSocket-Extensions" not in client.response.headers
        assert client.protocol.extensions == []


async def test_a_compressed_frame_is_refused_before_it_is_inflated(server: Server, certificates: Certificates) -> None:
    """Eighty frames that would inflate to 4 MB each: the first one is a protocol error
    (1002: a reserved bit set without an extension that uses it), and the server's memory
    does not grow by what they would have inflated to."""
    baseline = server.rss()
    async with connect(server.url("name=bomber"), ssl=client_context(certificates.ca), compression="deflate") as client:
        await client.recv()  # the welcome: the application has the connection
        client.transport.write(bombs(BOMBS))
        with contextlib.suppress(ConnectionClosed):
            while True:
                await asyncio.wait_for(client.recv(), 10)
    growth = server.rss() - baseline
    print(f"{BOMBS} bombs of {BOMB / 2**20:.1f} MiB: server RSS {baseline >> 20} MB, then {growth / 2**20:+.1f} MB")
    assert client.close_code == PROTOCOL_ERROR
    assert growth < BOMBED_GROWTH_LIMIT
    # The server goes on serving.
    peer = await open_peer(server, "name=after", certificates.ca)
    await peer.connection.close()
