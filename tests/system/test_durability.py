"""Restarts of a real server on the SQLite default: nothing a client received is ever lost."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import signal
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from bench.server import free_port
from tests.support.certificates import Certificates
from tests.support.servers import Server, client_context, run_server, uvicorn_command

pytestmark = pytest.mark.anyio

Event = dict[str, Any]


def start(certificates: Certificates, tmp_path: Path) -> contextlib.AbstractContextManager[Server]:
    port = free_port()
    env = {"CHAT_RATE_LIMIT": "0", "CHAT_BACKEND_URL": f"sqlite:///{tmp_path / 'durable.db'}"}
    return run_server(uvicorn_command(port, certificates.cert, certificates.key), port, tmp_path, env=env)


async def open_socket(server: Server, query: str, certificates: Certificates) -> ClientConnection:
    return await connect(server.url(query), ssl=client_context(certificates.ca), max_size=None, open_timeout=10)


async def events(connection: ClientConnection) -> list[Event]:
    frame = await asyncio.wait_for(connection.recv(), 10)
    assert isinstance(frame, str)
    return [json.loads(line) for line in frame.split("\n")]


async def whole_history(server: Server, certificates: Certificates) -> list[Event]:
    """Every message of the lobby, by paging back from the welcome to the first one."""
    connection = await open_socket(server, "name=auditor", certificates)
    (welcome, *_) = await events(connection)
    messages: list[Event] = welcome["history"]
    more = bool(messages)
    while more:
        await connection.send(json.dumps({"type": "history", "before": messages[0]["id"], "limit": 100}))
        while (page := next((e for e in await events(connection) if e["type"] == "history"), None)) is None:
            pass
        messages[:0] = page["messages"]
        more = page["more"]
    await connection.close()
    return messages


async def test_sigterm_and_restart_keep_the_history_and_its_ids(certificates: Certificates, tmp_path: Path) -> None:
    with start(certificates, tmp_path) as server:
        ann = await open_socket(server, "name=ann", certificates)
        await events(ann)
        for number in range(150):
            await ann.send(json.dumps({"type": "message", "text": f"before {number}"}))
        received: list[Event] = []
        while len(received) < 150:
            received.extend(event for event in await events(ann) if event["type"] == "message")
        assert await asyncio.to_thread(server.stop) in (0, -signal.SIGTERM)
        with contextlib.suppress(ConnectionClosed):
            await ann.recv()
    with start(certificates, tmp_path) as restarted:
        history = await whole_history(restarted, certificates)
        assert history == received
        bob = await open_socket(restarted, "name=bob", certificates)
        await events(bob)
        await bob.send(json.dumps({"type": "message", "text": "after"}))
        after = next(event for event in await events(bob) if event["type"] == "message")
        assert after["id"] > received[-1]["id"]
        await bob.close()


async def test_kill_9_during_a_flood_loses_no_message_any_client_received(
    certificates: Certificates, tmp_path: Path
) -> None:
    received: list[Event] = []
    with start(certificates, tmp_path) as server:
        reader = await open_socket(server, "name=reader", certificates)
        flooder = await open_socket(server, "name=flooder", certificates)
        await events(reader)

        async def flood() -> None:
            with contextlib.suppress(ConnectionClosed):
                for number in itertools.count():
                    await flooder.send(json.dumps({"type": "message", "text": f"flood {number}"}))
                    if number % 50 == 0:
                        await asyncio.sleep(0)

        async def drain_flooder() -> None:
            with contextlib.suppress(ConnectionClosed):
                async for _ in flooder:
                    pass

        tasks = [asyncio.ensure_future(flood()), asyncio.ensure_future(drain_flooder())]
        with contextlib.suppress(ConnectionClosed):
            while len(received) < 3000:
                received.extend(event for event in await events(reader) if event["type"] == "message")
            server.process.send_signal(signal.SIGKILL)  # mid-flood: commits are under way
            while True:
                received.extend(event for event in await events(reader) if event["type"] == "message")
        await asyncio.wait_for(asyncio.gather(*tasks), 10)
        assert server.process.wait(10) == -signal.SIGKILL
    with start(certificates, tmp_path) as restarted:
        history = await whole_history(restarted, certificates)
    stored = {message["id"]: message for message in history}
    assert len(received) >= 3000
    assert all(stored.get(message["id"]) == message for message in received)
