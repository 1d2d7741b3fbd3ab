"""The resume token against real servers on one Redis: it takes a name over through its
header, within a process and across two, and whatever becomes of a connection that shows
it, no token ever reaches a server's log."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Subprotocol

from app.core.protocol import SUBPROTOCOL, CloseCode, resume_subprotocols
from bench.server import free_port
from tests.support.certificates import Certificates
from tests.support.servers import Peer, Server, chatroom_command, client_context, open_peer, run_server, uvicorn_command

pytestmark = pytest.mark.anyio

CAP = 6  # connections per address: small, so that the test can reach it


@pytest.fixture(params=["default", "debug"])
def log_level(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def servers(
    log_level: str, certificates: Certificates, tmp_path: Path, redis_url: str
) -> Iterator[tuple[Server, Server]]:
    """`chatroom` and plain uvicorn sharing one Redis, at their default log level, and at
    debug, where uvicorn's WebSocket layer logs every request header and every frame."""
    env = {"CHAT_BACKEND_URL": redis_url, "CHAT_RATE_LIMIT": "0", "CHAT_MAX_CONNECTIONS_PER_IP": str(CAP)}
    level = () if log_level == "default" else ("--log-level", log_level)
    first, second = free_port(), free_port()
    with (
        run_server(chatroom_command(first, certificates.cert, certificates.key, *level), first, tmp_path, env) as one,
        run_server(uvicorn_command(second, certificates.cert, certificates.key, *level), second, tmp_path, env) as two,
    ):
        yield one, two


def offering(token: str) -> list[Subprotocol]:
    return [Subprotocol(offered) for offered in resume_subprotocols(token)]


async def refused(server: Server, query: str, cafile: Path, token: str) -> int:
    """The close code of a connection that shows `token` and is refused after its handshake."""
    connection = await connect(server.url(query), ssl=client_context(cafile), subprotocols=offering(token))
    with pytest.raises(ConnectionClosed):
        await connection.recv()  # a welcome would be a failure: a refused connection gets none
    assert connection.close_code is not None
    return connection.close_code


async def test_no_token_reaches_a_log_whatever_becomes_of_its_connection(
    servers: tuple[Server, Server], log_level: str, certificates: Certificates
) -> None:
    chatroom, uvicorn = servers
    ca = certificates.ca
    tokens: list[str] = []  # every token either server gave out

    async def enter(server: Server, query: str, token: str | None = None) -> Peer:
        options = {"subprotocols": offering(token)} if token is not None else {}
        peer = await open_peer(server, query, ca, **options)
        assert peer.connection.subprotocol == (SUBPROTOCOL if token is not None else None)
        tokens.append(peer.welcome["token"])
        return peer

    bob = await enter(chatroom, "name=bob")
    ann = await enter(chatroom, "name=ann")
    # Taken over, again and again: within each process and from one to the other.
    for server in (chatroom, chatroom, uvicorn, uvicorn, chatroom, uvicorn, chatroom):
        back = await enter(server, "name=ann", ann.welcome["token"])
        assert back.welcome["name"] == "ann"
        with pytest.raises(ConnectionClosed):
            await ann.next()
        assert ann.connection.close_code == CloseCode.REPLACED
        ann = back
    assert [event["type"] for event in bob.seen] == []  # nobody saw ann leave or come back
    live = ann.welcome["token"]

    # Shown where it does not count: another room, another name, a guest, a name refused.
    for server in (chatroom, uvicorn):
        for query in ("name=ann&room=den", "name=cy", "room=den", "name=ann&room=DEN&since=3&epoch=x"):
            other = await enter(server, query, live)
            assert other.welcome["name"] != "ann" or other.welcome["room"] == "den"
            await other.connection.close()
        assert await refused(server, "name=%E2%80%AE", ca, live) == CloseCode.INVALID_NAME
        # Spent, guessed, mangled: the name is held, and refused.
        spent = [token for token in tokens if token != live]
        for wrong in (*spent, live[:-1], live + "A", live.upper(), secrets.token_urlsafe(16)):
            assert await refused(server, "name=ann", ca, wrong) == CloseCode.NAME_TAKEN
        # From another site: refused before the handshake is through.
        with pytest.raises(InvalidStatus, match="403"):
            await connect(
                server.url("name=ann"),
                ssl=client_context(ca),
                subprotocols=offering(live),
                origin="https://evil.example",  # type: ignore[arg-type]
            )

    # At the cap: refused with 4429 before anything is looked at.
    crowd = [await enter(chatroom, f"name=crowd{number}") for number in range(CAP - 2)]  # ann and bob are there
    assert await refused(chatroom, "name=ann", ca, live) == CloseCode.TOO_MANY_CONNECTIONS
    for peer in crowd:
        await peer.connection.close()

    # In the URL, the old way: refused even though it matches, and the reason says where
    # it belongs.
    for server in (chatroom, uvicorn):
        connection = await connect(server.url(f"name=ann&token={live}"), ssl=client_context(ca))
        with pytest.raises(ConnectionClosed):
            await connection.recv()
        assert connection.close_code == CloseCode.INVALID_NAME
        assert connection.close_reason is not None
        assert "Sec-WebSocket-Protocol" in connection.close_reason

    await ann.say("still ann")
    assert (await bob.next_of("message"))["name"] == "ann"
    for peer in (ann, bob):
        await peer.connection.close()
    for server in servers:
        server.stop()
        log = server.output
        assert '"WebSocket /ws?name=ann&token=[redacted]"' in log  # the log has the connections
        if log_level == "debug":
            assert "chatroom.token.[redacted]" in log  # the offered subprotocol, at debug
        for token in tokens:
            assert token not in log
