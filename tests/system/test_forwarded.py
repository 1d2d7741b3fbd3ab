"""Which client address a real `chatroom` believes: the connection's own, whatever the
client's X-Forwarded-For says, unless it is told to trust a proxy (`--forwarded-allow-ips`)."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from app.core.protocol import CloseCode
from bench.server import free_port
from tests.support.certificates import Certificates
from tests.support.servers import Server, chatroom_command, client_context, run_server

pytestmark = pytest.mark.anyio

CAP = 3
# What a client may claim to be: addresses of every kind, the loopback and the server's own
# among them, lists as a chain of proxies writes them, and things that are no address at all.
CLAIMS = [
    *(f"198.51.100.{number}" for number in range(1, 9)),
    *(f"2001:db8:{number}::1" for number in range(1, 5)),
    "127.0.0.1",
    "::1",
    "10.0.0.1, 192.0.2.1",
    "192.0.2.2,192.0.2.3",
    "[2001:db8::9]:443",
    "unknown",
    "",
]


@contextlib.contextmanager
def chatroom(certificates: Certificates, tmp_path: Path, *options: str) -> Iterator[Server]:
    port = free_port()
    command = chatroom_command(port, certificates.cert, certificates.key, *options)
    with run_server(command, port, tmp_path, {"CHAT_MAX_CONNECTIONS_PER_IP": str(CAP)}) as server:
        yield server


@contextlib.asynccontextmanager
async def opened(server: Server, cafile: Path, name: str, forwarded_for: str | None) -> AsyncIterator[ClientConnection]:
    """A connection past its handshake, its welcome or refusal not read yet."""
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for is not None else {}
    async with connect(server.url(f"name={name}"), ssl=client_context(cafile), additional_headers=headers) as ws:
        yield ws


async def welcomed(connection: ClientConnection) -> bool:
    """Whether the connection got in (a welcome) rather than being closed at once."""
    try:
        frame = await connection.recv()
    except ConnectionClosed:
        assert connection.close_code == CloseCode.TOO_MANY_CONNECTIONS, connection.close_code
        return False
    assert '"type":"welcome"' in str(frame)
    return True


async def test_by_default_a_local_client_is_capped_whatever_address_it_claims(
    certificates: Certificates, tmp_path: Path
) -> None:
    ca = certificates.ca
    with chatroom(certificates, tmp_path) as server:
        async with contextlib.AsyncExitStack() as stack:
            held = [await stack.enter_async_context(opened(server, ca, f"n{i}", CLAIMS[i])) for i in range(CAP)]
            assert [await welcomed(connection) for connection in held] == [True] * CAP
            for number, claim in enumerate(CLAIMS):
                async with opened(server, ca, f"x{number}", claim) as extra:
                    assert not await welcomed(extra), claim  # counted as 127.0.0.1: at its cap
            async with opened(server, ca, "plain", None) as extra:
                assert not await welcomed(extra)


async def test_with_forwarded_allow_ips_the_address_a_trusted_proxy_forwards_is_counted(
    certificates: Certificates, tmp_path: Path
) -> None:
    ca = certificates.ca
    with chatroom(certificates, tmp_path, "--forwarded-allow-ips", "127.0.0.1,::1") as server:
        async with contextlib.AsyncExitStack() as stack:
            for claim in ("198.51.100.1", "2001:db8:1::1"):
                held = [await stack.enter_async_context(opened(server, ca, f"{claim}-{i}", claim)) for i in range(CAP)]
                assert [await welcomed(connection) for connection in held] == [True] * CAP
                async with opened(server, ca, "one-more", claim) as extra:
                    assert not await welcomed(extra)  # this client's cap
            async with opened(server, ca, "other", "2001:db8:1:0:ffff::2") as extra:
                assert not await welcomed(extra)  # the same /64
            # Every other client has a cap of its own, the proxy itself too.
            for number, other in enumerate(("198.51.100.2", "10.0.0.1, 192.0.2.1", "2001:db8:2::1", None)):
                async with opened(server, ca, f"free{number}", other) as extra:
                    assert await welcomed(extra), other


@pytest.mark.parametrize("proxies", ["localhost", "127.0.0.1,not-an-address", "300.1.2.3"])
def test_chatroom_refuses_a_proxy_that_is_not_an_address_and_says_why(proxies: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [*chatroom_command(free_port(), tmp_path / "c.pem", tmp_path / "k.pem"), "--forwarded-allow-ips", proxies],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode != 0
    assert "forwarded_allow_ips: expected addresses or networks" in done.stderr
