"""Several real server processes on one real Redis, over TLS: workers, Redis dying or losing data, a server dying."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from app.core.protocol import CloseCode, resume_subprotocols
from bench.server import free_port
from tests.support.certificates import Certificates
from tests.support.redis_server import DURABLE, running_redis
from tests.support.servers import (
    Event,
    Peer,
    Server,
    chatroom_command,
    client_context,
    open_peer,
    run_server,
    uvicorn_command,
)

pytestmark = pytest.mark.anyio


async def open_named(server: Server, name: str, cafile: Path, room: str = "lobby") -> Peer:
    return await open_peer(server, f"name={name}&room={room}", cafile)


def health(server: Server, cafile: Path) -> int:
    context = ssl.create_default_context(cafile=str(cafile))
    try:
        with urllib.request.urlopen(f"{server.origin}/healthz", context=context, timeout=5) as answer:  # noqa: S310
            return int(answer.status)
    except urllib.error.HTTPError as error:
        return error.code


async def wait_for_health(server: Server, cafile: Path, status: int, timeout: float = 15) -> None:
    async with asyncio.timeout(timeout):
        # Another process's state: nothing to await but its answers.
        while await asyncio.to_thread(health, server, cafile) != status:  # noqa: ASYNC110
            await asyncio.sleep(0.1)


@contextlib.contextmanager
def redis_chat_server(certificates: Certificates, tmp_path: Path, redis_url: str, **env: str) -> Iterator[Server]:
    """`uvicorn app.main:app` on Redis, as the README runs it, on a free port."""
    port = free_port()
    variables = {"CHAT_BACKEND_URL": redis_url, "CHAT_RATE_LIMIT": "0", **env}
    with run_server(
        uvicorn_command(port, certificates.cert, certificates.key), port, tmp_path, env=variables
    ) as server:
        yield server


def worker_of(server: Server) -> dict[int, int]:
    """How many WebSocket connections each worker process of `server` holds."""
    held: dict[int, int] = {}
    for worker in psutil.Process(server.process.pid).children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            connections = worker.net_connections(kind="tcp")
            held[worker.pid] = sum(
                1 for c in connections if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == server.port
            )
    return held


async def test_two_workers_behave_as_one_chat(tmp_path: Path, redis_url: str) -> None:
    port = free_port()
    certs = tmp_path / "certs"
    command = chatroom_command(port, certs / "cert.pem", certs / "key.pem", "--workers", "2", "--backend", redis_url)
    with run_server(command, port, tmp_path, env={"CHAT_RATE_LIMIT": "0"}) as server:
        cafile = certs / "cert.pem"
        peers: list[Peer] = []
        # The kernel hands connections to whichever worker accepts first: connect until both have some.
        while len(peers) < 2 or sum(1 for count in worker_of(server).values() if count) < 2:
            assert len(peers) < 40, f"every connection went to one worker: {worker_of(server)}"
            peers.append(await open_named(server, f"p{len(peers)}", cafile))
        names = [peer.name for peer in peers]
        assert peers[-1].welcome["online"] == names  # everyone, whichever worker holds them, in order
        for peer in peers:
            await peer.say(f"from {peer.name}")
        for peer in peers:
            while len(peer.messages()) < len(peers):
                await peer.next()
        orders = [[(event["id"], event["text"]) for event in peer.messages()] for peer in peers]
        assert all(order == orders[0] for order in orders)  # each message once, in one order, everywhere
        assert sorted(text for _, text in orders[0]) == sorted(f"from {name}" for name in names)
        for peer in peers:  # the joins of those who came later, each once
            joins = [event["name"] for event in peer.seen if event["type"] == "join"]
            assert joins == names[names.index(peer.name) + 1 :]
        twin = await connect(server.url("name=P0"), ssl=client_context(cafile), open_timeout=10)
        await asyncio.wait_for(twin.wait_closed(), 10)
        assert twin.close_code == CloseCode.NAME_TAKEN
        for peer in peers:
            await peer.connection.close()


async def test_a_server_killed_with_9_has_its_users_leave_for_the_others(
    certificates: Certificates, tmp_path: Path, redis_url: str
) -> None:
    ttl = {"CHAT_PRESENCE_TTL": "1"}
    with (
        redis_chat_server(certificates, tmp_path, redis_url, **ttl) as doomed,
        redis_chat_server(certificates, tmp_path, redis_url, **ttl) as lasting,
    ):
        ghost = await open_named(doomed, "ghost", certificates.ca)
        watcher = await open_named(lasting, "watcher", certificates.ca)
        assert watcher.welcome["online"] == ["ghost", "watcher"]
        doomed.process.send_signal(signal.SIGKILL)  # no goodbye
        assert doomed.process.wait(10) == -signal.SIGKILL
        started = asyncio.get_running_loop().time()
        assert await watcher.next(timeout=10) == {"type": "leave", "name": "ghost"}
        # 1 s of presence, then a heartbeat of the other server (every 0.25 s) finds it expired.
        assert asyncio.get_running_loop().time() - started < 5
        again = await open_named(lasting, "ghost", certificates.ca)
        assert again.welcome["online"] == ["watcher", "ghost"]
        await again.connection.close()
        await watcher.connection.close()
        with contextlib.suppress(ConnectionClosed):
            await ghost.connection.close()


async def say_until_stored(peer: Peer, text: str, tries: int = 50) -> tuple[Event, list[Event]]:
    """Send `text` again and again until its echo comes back; returns the echo and the refusals."""
    refusals: list[Event] = []
    for _ in range(tries):
        await peer.say(text)
        while True:
            event = await peer.next(timeout=15)
            if event["type"] == "message" and event["text"] == text:
                return event, refusals
            if event["type"] == "error":
                assert event["code"] == "not_stored", event
                refusals.append(event)
                break
        await asyncio.sleep(0.1)
    raise AssertionError(f"{text!r} was never stored: {refusals[-3:]}")


async def test_redis_killed_and_restarted_mid_conversation_loses_nothing(
    certificates: Certificates, tmp_path: Path
) -> None:
    with (
        running_redis(tmp_path / "redis", DURABLE) as redis,
        redis_chat_server(certificates, tmp_path, redis.url) as first,
        redis_chat_server(certificates, tmp_path, redis.url) as second,
    ):
        ann = await open_named(first, "ann", certificates.ca)
        bob = await open_named(second, "bob", certificates.ca)
        said: list[str] = []
        for number in range(20):
            echo, refusals = await say_until_stored(ann if number % 2 else bob, f"before {number}")
            assert not refusals
            said.append(echo["text"])

        redis.kill()  # kill -9, mid-conversation
        await ann.say("while Redis is gone")
        refused = await ann.next_of("error", timeout=15)
        assert refused["code"] == "not_stored"  # told, not dropped in silence
        await wait_for_health(first, certificates.ca, 503)

        redis.start()  # the same port and folder: it replays its append-only file
        # Whichever server reconnects first, the other catches up from the last entry it read.
        for number in range(10):
            speaker = ann if number % 2 else bob
            echo, _ = await say_until_stored(speaker, f"after {number}")
            said.append(echo["text"])
        for server in (first, second):
            await wait_for_health(server, certificates.ca, 200)
        for peer in (ann, bob):
            while [event["text"] for event in peer.messages()][-1:] != [said[-1]]:
                await peer.next()

        for peer in (ann, bob):
            texts = [event["text"] for event in peer.messages()]
            ids = [event["id"] for event in peer.messages()]
            assert texts == said  # every stored message once, nothing that was refused
            assert ids == sorted(set(ids))
        # Presence went on as if nothing had happened: bob's join, and nobody left.
        assert [event for event in ann.seen if event["type"] in ("join", "leave")] == [
            {"type": "join", "name": "bob", "guest": True}
        ]
        assert [event for event in bob.seen if event["type"] in ("join", "leave")] == []
        assert ann.messages() == bob.messages()
        # The history kept across the crash is exactly what everyone saw.
        reader = await open_named(second, "reader", certificates.ca)
        assert reader.welcome["history"] == bob.messages()
        assert reader.welcome["online"] == ["ann", "bob", "reader"]
        for peer in (ann, bob, reader):
            await peer.connection.close()


RECOVERY = 30  # seconds from Redis answering again to a conversation across servers, both healthy


class Person:
    """Someone chatting through one server, whose client reconnects as a page does: resuming
    (`since`, `epoch`, `token`) whenever the server restarts its connection (1012), again a
    moment later while the server cannot take it (1013). Keeps what each connection saw."""

    def __init__(self, server: Server, name: str, cafile: Path) -> None:
        self.server, self.name, self.cafile = server, name, cafile
        self.connections: list[Peer] = []

    @property
    def peer(self) -> Peer:
        return self.connections[-1]

    async def connect(self, timeout: float = RECOVERY) -> None:
        query = f"name={self.name}"
        subprotocols = None
        if self.connections:
            previous = self.peer
            shown = previous.welcome["history"] + previous.messages()
            if shown:
                query += f"&since={shown[-1]['id']}&epoch={previous.welcome['epoch']}"
            subprotocols = resume_subprotocols(previous.welcome["token"])
        async with asyncio.timeout(timeout):
            while True:
                try:
                    peer = await open_peer(self.server, query, self.cafile, subprotocols=subprotocols)
                    self.connections.append(peer)
                    return
                except ConnectionClosed as refused:
                    if close_code(refused) != CloseCode.TRY_AGAIN_LATER:
                        raise
                await asyncio.sleep(0.2)  # as a page waits before it tries again

    async def until_restarted(self, timeout: float = RECOVERY) -> list[Event]:
        """Read until the server restarts the connection (1012); what came before it."""
        seen = len(self.peer.seen)
        code = None
        async with asyncio.timeout(timeout):
            while code is None:
                try:
                    await self.peer.next(timeout)
                except ConnectionClosed as closed:
                    code = close_code(closed)
        assert code == CloseCode.SERVICE_RESTART
        return self.peer.seen[seen:]

    def shown(self) -> dict[str, list[Event]]:
        """Every message this person was shown, by epoch: welcomes' histories, then live ones."""
        shown: dict[str, list[Event]] = {}
        for peer in self.connections:
            shown.setdefault(peer.welcome["epoch"], []).extend(peer.welcome["history"] + peer.messages())
        return shown


def close_code(closed: ConnectionClosed) -> int | None:
    return closed.rcvd.code if closed.rcvd is not None else None


async def hear(peer: Peer, text: str) -> None:
    while not any(event["text"] == text for event in peer.messages()):
        await peer.next(timeout=15)


@pytest.mark.parametrize("comes_back", ["empty", "from an older snapshot"])
async def test_redis_losing_data_mid_conversation_heals_by_itself(
    comes_back: str, certificates: Certificates, tmp_path: Path
) -> None:
    """Without persistence, kill -9 of Redis loses everything; a restart from an older RDB
    snapshot (or a failover to a replica that was behind) loses the end. Ids the servers
    gave out would be given out again: they agree on a new epoch, every client starts afresh
    in it, and the conversation goes on, with no restart of the servers."""
    with (
        running_redis(tmp_path / "redis") as redis,
        redis_chat_server(certificates, tmp_path, redis.url) as first,
        redis_chat_server(certificates, tmp_path, redis.url) as second,
    ):
        ann, bob = Person(first, "ann", certificates.ca), Person(second, "bob", certificates.ca)
        for person in (ann, bob):
            await person.connect()
        for number in range(6):
            if number == 3 and comes_back != "empty":
                redis.save()  # the snapshot has the first three messages
            echo, refusals = await say_until_stored((ann if number % 2 else bob).peer, f"before {number}")
            assert not refusals
        for person in (ann, bob):
            await hear(person.peer, "before 5")
        old = ann.peer.welcome["epoch"]

        redis.kill()
        await ann.peer.say("while Redis is gone")
        assert (await ann.peer.next_of("error", timeout=15))["code"] == "not_stored"
        redis.start()
        started = time.monotonic()
        await ann.peer.say("as Redis comes back")  # refused, or not read at all: never stored in the old epoch
        for person in (ann, bob):
            before = await person.until_restarted()
            assert [event for event in before if event["type"] == "message"] == []
            assert all(event["code"] == "not_stored" for event in before if event["type"] == "error")
            await person.connect()
        restarted = time.monotonic() - started
        for person in (ann, bob):
            welcome = person.peer.welcome
            assert welcome["epoch"] != old
            assert welcome["gap"] is True  # the ids it had mean nothing in the new epoch: start afresh
            kept = [] if comes_back == "empty" else ["before 0", "before 1", "before 2"]
            assert [message["text"] for message in welcome["history"]] == kept
        assert ann.peer.welcome["epoch"] == bob.peer.welcome["epoch"]

        for number in range(4):
            speaker, listener = (ann, bob) if number % 2 else (bob, ann)
            echo, _ = await say_until_stored(speaker.peer, f"after {number}")
            await hear(listener.peer, echo["text"])
        for server in (first, second):
            await wait_for_health(server, certificates.ca, 200, timeout=RECOVERY)
        recovered = time.monotonic() - started
        print(
            f"Redis back {comes_back}: connections restarted within {restarted:.2f} s, "
            f"conversation across both servers and /healthz 200 within {recovered:.2f} s"
        )
        assert recovered < RECOVERY

        for person in (ann, bob):
            for epoch, messages in person.shown().items():
                ids = [message["id"] for message in messages]
                assert ids == sorted(set(ids)), f"{person.name} was shown an id twice in epoch {epoch}"
        new = ann.peer.welcome["epoch"]
        assert ann.shown()[new] == bob.shown()[new]
        after = [message["text"] for message in ann.shown()[new] if message["text"].startswith("after")]
        assert after == [f"after {number}" for number in range(4)]
        # Nothing stored after the recovery is lost: a newcomer's welcome has it all.
        reader = await open_named(first, "reader", certificates.ca)
        assert reader.welcome["epoch"] == new
        assert reader.welcome["history"] == ann.shown()[new]
        for peer in (ann.peer, bob.peer, reader):
            await peer.connection.close()


def register(server: Server, cafile: Path, name: str) -> str:
    """A new account, signed in: its session's cookie, as a `Cookie` header's value."""
    request = urllib.request.Request(  # noqa: S310 - the test's own server
        f"{server.origin}/api/account",
        data=json.dumps({"name": name, "password": "correct horse battery"}).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    context = ssl.create_default_context(cafile=str(cafile))
    with urllib.request.urlopen(request, context=context, timeout=10) as answer:  # noqa: S310
        assert answer.status == 201
        return str(answer.headers["set-cookie"]).partition(";")[0]


async def test_two_accounts_on_two_servers_message_each_other_and_see_each_other_come_go_and_die(
    certificates: Certificates, tmp_path: Path, redis_url: str
) -> None:
    ttl = {"CHAT_PRESENCE_TTL": "1"}
    with (
        redis_chat_server(certificates, tmp_path, redis_url, **ttl) as here,
        redis_chat_server(certificates, tmp_path, redis_url, **ttl) as doomed,
    ):
        ca = certificates.ca
        ann_cookie = await asyncio.to_thread(register, here, ca, "ann")
        bob_cookie = await asyncio.to_thread(register, doomed, ca, "bob")
        ann = await open_peer(here, "room=lobby", ca, additional_headers={"Cookie": ann_cookie})
        assert ann.welcome["buddies"] == []
        await ann.connection.send(json.dumps({"type": "buddy_add", "name": "Bob"}))
        assert await ann.next_of("buddy") == {"type": "buddy", "name": "bob", "online": False, "away": False}
        bob = await open_peer(doomed, "room=den", ca, additional_headers={"Cookie": bob_cookie})
        assert await ann.next_of("buddy") == {"type": "buddy", "name": "bob", "online": True, "away": False}
        ann_there = await open_peer(doomed, "room=attic", ca, additional_headers={"Cookie": ann_cookie})
        await ann.connection.send(json.dumps({"type": "dm", "to": "bob", "text": "across servers"}))
        for peer in (ann, bob, ann_there):  # every connection of both, on both servers
            sent = await peer.next_of("dm")
            assert (sent["id"], sent["from"], sent["to"], sent["text"]) == (1, "ann", "bob", "across servers")
        await bob.connection.send(json.dumps({"type": "away", "message": "lunch"}))
        assert await ann.next_of("away") == {"type": "away", "name": "bob", "message": "lunch"}
        await ann.connection.send(json.dumps({"type": "dm", "to": "bob", "text": "hungry?"}))
        assert [(await ann.next_of("dm"))["text"] for _ in range(2)] == ["hungry?", "lunch"]
        assert (await bob.next_of("dm"))["text"] == "hungry?"
        reply = await bob.next_of("dm")
        assert (reply["from"], reply["text"], reply["auto"]) == ("bob", "lunch", True)
        await ann_there.connection.close()
        doomed.process.send_signal(signal.SIGKILL)  # no goodbye: bob's process is taken for dead
        assert doomed.process.wait(10) == -signal.SIGKILL
        started = asyncio.get_running_loop().time()
        assert await ann.next_of("buddy") == {"type": "buddy", "name": "bob", "online": False, "away": False}
        assert asyncio.get_running_loop().time() - started < 5  # 1 s of presence, then the other's heartbeat
        again = await open_peer(here, "room=lobby", ca, additional_headers={"Cookie": ann_cookie})
        assert again.welcome["buddies"] == [{"name": "bob", "online": False, "away": False}]
        assert [(c["with"], c["last"]) for c in again.welcome["conversations"]] == [("bob", 3)]
        for peer in (again, ann):
            await peer.connection.close()
