"""Real servers for tests: uvicorn or the `chatroom` command in a subprocess, on a free port;
and `Peer`, a websockets client of theirs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from websockets.asyncio.client import ClientConnection, connect

from bench.server import free_port as free_port  # for the tests that start servers
from bench.server import terminate, tree_rss, wait_for_port

ROOT = Path(__file__).resolve().parent.parent.parent
CHATROOM = Path(sys.executable).parent / "chatroom"


@dataclass
class Server:
    process: subprocess.Popen[str]
    port: int
    log: Path
    scheme: str = "wss"
    output: str = field(default="")

    def url(self, query: str = "") -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}/ws?{query}"

    @property
    def origin(self) -> str:
        return f"{'https' if self.scheme == 'wss' else 'http'}://127.0.0.1:{self.port}"

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        """Signal the server and wait for it to exit; returns its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        finally:
            self.output = self.log.read_text()

    def read_log(self) -> str:
        return self.log.read_text()

    def rss(self) -> int:
        """The server's resident memory in bytes: what the operating system gave it and it kept."""
        return tree_rss(psutil.Process(self.process.pid))

    def holds_connection_from(self, port: int) -> bool:
        """Whether the server still has a socket to the client on local port `port`."""
        return any(
            connection.raddr and connection.raddr[1] == port
            for connection in psutil.Process(self.process.pid).net_connections("tcp")
        )

    def open_sockets(self) -> int:
        """TCP connections the server still holds a socket for, in whatever state."""
        return sum(
            connection.status != psutil.CONN_LISTEN
            for connection in psutil.Process(self.process.pid).net_connections("tcp")
        )


async def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll `condition` (state of another process, which cannot be awaited) until it holds;
    returns the seconds it took, or fails saying `what` did not happen within `timeout`."""
    started = time.monotonic()
    while not await asyncio.to_thread(condition):
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what}: not within {timeout} s")
        await asyncio.sleep(0.02)
    return time.monotonic() - started


@contextlib.contextmanager
def run_server(
    command: list[str], port: int, tmp_path: Path, env: Mapping[str, str] | None = None, scheme: str = "wss"
) -> Iterator[Server]:
    """Run `command` (which must listen on `port`) until the block ends, then stop it."""
    log = tmp_path / f"server-{port}.log"
    # History goes to the test's own folder, never to data/ of the checkout.
    defaults = {"PYTHONUNBUFFERED": "1", "CHAT_BACKEND_URL": f"sqlite:///{tmp_path / 'chat.db'}"}
    environment = {**os.environ, **defaults, **(env or {})}
    with log.open("w") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=environment, stdout=out, stderr=subprocess.STDOUT, text=True)
    server = Server(process, port, log, scheme)
    try:
        wait_for_port(port, process, log, timeout=20)
        yield server
    finally:
        terminate(process)


# What `chatroom` runs uvicorn with (README.md): among the rest, bounds on how long a peer may
# take over its close, which plain uvicorn leaves at 10 s for a WebSocket close and 30 s for
# a TLS close.
CHATROOM_STACK = (
    "--loop", "app.server.loop:new_event_loop",
    "--http", "app.server.http:ChatHttpProtocol",
    "--ws", "app.server.websocket:ChatWebSocketProtocol",
)  # fmt: skip


def uvicorn_command(port: int, certfile: Path, keyfile: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1", "--port", str(port),
        "--ssl-certfile", str(certfile), "--ssl-keyfile", str(keyfile), *extra,
    ]  # fmt: skip


def chatroom_command(port: int, certfile: Path, keyfile: Path, *extra: str) -> list[str]:
    return [
        str(CHATROOM), "--host", "127.0.0.1", "--port", str(port), "--cert", str(certfile), "--key", str(keyfile),
        *extra,
    ]  # fmt: skip


def client_context(cafile: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cafile))


Event = dict[str, Any]


class Peer:
    """A websockets client that keeps its welcome and reads events one at a time."""

    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection
        self._pending: list[Event] = []
        self.welcome: Event = {}
        self.seen: list[Event] = []  # every event after the welcome, in order

    @property
    def name(self) -> str:
        return str(self.welcome["name"])

    async def next(self, timeout: float = 10) -> Event:
        event = await self._read(timeout)
        self.seen.append(event)
        return event

    async def _read(self, timeout: float = 10) -> Event:
        while not self._pending:
            frame = await asyncio.wait_for(self.connection.recv(), timeout)
            assert isinstance(frame, str)
            self._pending.extend(json.loads(line) for line in frame.split("\n"))
        return self._pending.pop(0)

    async def next_of(self, kind: str, timeout: float = 10) -> Event:
        while (event := await self.next(timeout))["type"] != kind:
            pass
        return event

    async def say(self, text: str) -> None:
        await self.connection.send(json.dumps({"type": "message", "text": text}))

    def messages(self) -> list[Event]:
        return [event for event in self.seen if event["type"] == "message"]


async def open_peer(server: Server, query: str, cafile: Path, **kwargs: Any) -> Peer:
    # A welcome may be large (a resumed history in one frame): accept frames as a browser does.
    kwargs.setdefault("max_size", None)
    connection = await connect(server.url(query), ssl=client_context(cafile), open_timeout=10, **kwargs)
    peer = Peer(connection)
    peer.welcome = await peer._read()
    assert peer.welcome["type"] == "welcome", peer.welcome
    return peer
