"""`/metrics` of real `chatroom` servers over TLS: one process that drops a reader that stopped
reading, and two workers on one Redis whose figures add up whichever of them is scraped."""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from bench.server import free_port
from tests.support.servers import Peer, Server, chatroom_command, client_context, open_peer, run_server
from tests.system.test_scale_out import worker_of
from tests.web.test_metrics import Samples, parse, value

pytestmark = pytest.mark.anyio


def scrape(server: Server, cafile: Path) -> Samples:
    url = f"{server.origin}/metrics"
    with urllib.request.urlopen(url, context=client_context(cafile), timeout=10) as answer:  # noqa: S310
        assert answer.status == 200
        return parse(answer.read().decode())


async def scrape_until(server: Server, cafile: Path, what: str, condition: object, timeout: float = 15) -> Samples:
    """Scrape until `condition(samples)` holds: the workers hand their counts over once a second."""
    assert callable(condition)
    samples: Samples = {}
    try:
        async with asyncio.timeout(timeout):
            while True:
                samples = await asyncio.to_thread(scrape, server, cafile)
                if condition(samples):
                    return samples
                await asyncio.sleep(0.2)  # another process's state: nothing to await but its answers
    except TimeoutError:
        chatroom = {f"{name}{dict(labels)}": count for (name, labels), count in samples.items() if "chatroom" in name}
        raise AssertionError(f"{what}: not within {timeout} s; the last scrape: {chatroom}") from None


def mute_socket(server: Server, cafile: Path, name: str) -> ssl.SSLSocket:
    """A WebSocket that completes its handshake as `name`, then never reads anything."""
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # fills up quickly
    raw.connect(("127.0.0.1", server.port))
    tls = client_context(cafile).wrap_socket(raw, server_hostname="127.0.0.1")
    tls.sendall(
        f"GET /ws?name={name} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    assert tls.recv(12) == b"HTTP/1.1 101"
    return tls


async def test_a_reader_that_stopped_reading_is_counted_as_dropped(tmp_path: Path) -> None:
    port = free_port()
    certs = tmp_path / "certs"
    env = {"CHAT_RATE_LIMIT": "0", "CHAT_PING_INTERVAL": "60", "CHAT_CLOSE_TIMEOUT": "1"}
    with run_server(chatroom_command(port, certs / "cert.pem", certs / "key.pem"), port, tmp_path, env=env) as server:
        cafile = certs / "cert.pem"
        before = await asyncio.to_thread(scrape, server, cafile)
        sender = await open_peer(server, "name=sender", cafile)
        mute = await asyncio.to_thread(mute_socket, server, cafile, "mute")
        padding = "y" * 3000
        sent = 0
        while True:  # each message paced by its echo: a frame of its own for the mute reader
            await sender.say(f"{sent} {padding}")
            sent += 1
            event = await sender.next()
            while event["type"] != "message" and event != {"type": "leave", "name": "mute"}:
                event = await sender.next()
            if event["type"] == "leave":
                break
            assert sent < 20_000, "the mute reader was never dropped"
        after = await scrape_until(
            server,
            cafile,
            "the mute reader's close counted",
            lambda samples: value(samples, "chatroom_connections_closed_total", code="1013", by="server") == 1,
        )
        dropped = sum(value(after, "chatroom_slow_readers_dropped_total", why=why) for why in ("queue_full", "stalled"))
        assert dropped == 1
        assert value(after, "chatroom_messages_stored_total") - value(before, "chatroom_messages_stored_total") == sent
        assert value(after, "chatroom_pacing_stalls_total") >= 1  # the sender waited for the mute reader once at least
        assert value(after, "chatroom_connections_open") == 1
        mute.close()
        await sender.connection.close()


def stale_counts(folder: Path) -> None:
    """What an earlier run would have left in the folder: a worker's files, with big numbers."""
    script = (
        "from prometheus_client import Counter\n"
        "Counter('chatroom_messages_stored', 'x', registry=None).inc(1000)\n"
        "Counter('chatroom_connections_opened', 'x', registry=None).inc(1000)\n"
    )
    environment = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(folder)}
    subprocess.run([sys.executable, "-c", script], env=environment, check=True, timeout=30)
    assert list(folder.glob("counter_*.db"))


async def test_two_workers_add_up_whichever_is_scraped(tmp_path: Path, redis_url: str) -> None:
    folder = tmp_path / "metrics"
    folder.mkdir()
    stale_counts(folder)
    port = free_port()
    certs = tmp_path / "certs"
    command = chatroom_command(port, certs / "cert.pem", certs / "key.pem", "--workers", "2", "--backend", redis_url)
    env = {"CHAT_RATE_LIMIT": "0", "PROMETHEUS_MULTIPROC_DIR": str(folder)}
    with run_server(command, port, tmp_path, env=env) as server:
        cafile = certs / "cert.pem"
        peers: list[Peer] = []
        while len(peers) < 2 or sum(1 for count in worker_of(server).values() if count) < 2:
            assert len(peers) < 40, f"every connection went to one worker: {worker_of(server)}"
            peers.append(await open_peer(server, f"name=p{len(peers)}", cafile))
        for peer in peers:
            await peer.say(f"from {peer.name}")
        for peer in peers:
            while len(peer.messages()) < len(peers):
                await peer.next()
        count = len(peers)

        def everyone_counted(samples: Samples) -> bool:
            return (
                value(samples, "chatroom_messages_stored_total") == count
                and value(samples, "chatroom_messages_delivered_total") == count * count
                and value(samples, "chatroom_connections_opened_total") == count
                and value(samples, "chatroom_connections_open") == count
            )

        # Each worker stored only its own clients' messages: the sum is every worker's.
        await scrape_until(server, cafile, "both workers' figures in one scrape", everyone_counted)
        for _ in range(6):  # whichever worker answers (a new connection each time), the same sums
            assert everyone_counted(await asyncio.to_thread(scrape, server, cafile))
        pids = {path.stem.rpartition("_")[2] for path in folder.glob("counter_*.db")}
        assert len(pids) == 2  # the two workers', and the stale one's gone
        for peer in peers:
            await peer.connection.close()
        await scrape_until(
            server,
            cafile,
            "every close counted, nobody open",
            lambda samples: (
                value(samples, "chatroom_connections_closed_total", code="1000", by="client") == count
                and value(samples, "chatroom_connections_open") == 0
            ),
        )
