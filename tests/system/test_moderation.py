"""Moderation between two real server processes on one real Redis, over TLS: a moderator on
one bans a guest on the other, whose socket closes within a second, and who cannot come
back through either."""

from __future__ import annotations

import asyncio
import json
import ssl
import urllib.request
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from app.core.protocol import CloseCode
from tests.support.certificates import Certificates
from tests.support.servers import Peer, Server, client_context, open_peer
from tests.system.test_scale_out import redis_chat_server

pytestmark = pytest.mark.anyio


def register(server: Server, name: str, cafile: Path) -> str:
    """A new account's session cookie, as `Cookie` sends it back."""
    request = urllib.request.Request(  # noqa: S310 - the test's own server
        f"{server.origin}/api/account",
        data=json.dumps({"name": name, "password": "correct horse battery"}).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, context=ssl.create_default_context(cafile=str(cafile)), timeout=10) as answer:  # noqa: S310
        assert answer.status == 201
        return str(answer.headers["set-cookie"]).partition(";")[0]


async def order(peer: Peer, event: dict[str, object]) -> dict[str, object]:
    await peer.connection.send(json.dumps(event))
    while (answer := await peer.next())["type"] != "moderation":
        assert answer["type"] != "error", answer
    return answer


async def test_a_ban_on_one_server_closes_a_guest_on_another_within_a_second(
    certificates: Certificates, tmp_path: Path, redis_url: str
) -> None:
    with (
        redis_chat_server(certificates, tmp_path, redis_url) as first,
        redis_chat_server(certificates, tmp_path, redis_url) as second,
    ):
        cookie = await asyncio.to_thread(register, first, "Ann", certificates.ca)
        owner = await open_peer(first, "room=lobby", certificates.ca, additional_headers={"Cookie": cookie})
        troll = await open_peer(second, "room=lobby&name=troll", certificates.ca)
        assert (await order(owner, {"type": "claim"}))["owner"] == "Ann"
        started = asyncio.get_running_loop().time()
        banned = await order(owner, {"type": "ban", "name": "troll", "reason": "spam"})
        assert banned["name"] == "troll"
        await asyncio.wait_for(troll.connection.wait_closed(), 5)
        elapsed = asyncio.get_running_loop().time() - started
        assert troll.connection.close_code == CloseCode.FORBIDDEN
        assert troll.connection.close_reason == "Banned from this room by Ann: spam"
        assert elapsed < 1.0, f"closed {elapsed:.2f} s after the ban"
        for server in (first, second):  # the same address under another name, on either server
            again = await connect(server.url("room=lobby&name=other"), ssl=client_context(certificates.ca))
            await asyncio.wait_for(again.wait_closed(), 10)
            assert again.close_code == CloseCode.FORBIDDEN
        elsewhere = await open_peer(second, "room=den&name=troll", certificates.ca)  # a room's ban is the room's
        await elsewhere.connection.close()
        await owner.connection.close()
