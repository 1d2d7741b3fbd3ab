"""A real `redis-server` for tests, on a free port of 127.0.0.1, that a test may kill and start again."""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.server import free_port

# For tests that only need a Redis: nothing written to disk, so nothing to wait for.
EPHEMERAL = ("--save", "", "--appendonly", "no")
# "Nothing lost": every write is in the append-only file, fsynced, before Redis answers it, so
# even kill -9 of redis-server (or of the machine) loses no message a client was told about.
DURABLE = ("--save", "", "--appendonly", "yes", "--appendfsync", "always")


def redis_server_path() -> str:
    path = shutil.which("redis-server")
    if path is None:
        pytest.fail("redis-server is not installed: ./scripts/test installs it (Debian package redis-server)")
    return path


class RedisServer:
    def __init__(self, folder: Path, options: tuple[str, ...] = EPHEMERAL) -> None:
        self.folder = folder
        self.options = options
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        folder.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10) -> None:
        command = [
            redis_server_path(), "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder),
            "--daemonize", "no", "--loglevel", "warning", *self.options,
        ]  # fmt: skip
        log = (self.folder / "redis.log").open("ab")
        with log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=self.folder)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}: {self.log()}")
            if self.ping():
                return
            time.sleep(0.02)
        raise TimeoutError(f"redis-server did not answer on {self.port} within {timeout} s: {self.log()}")

    def ping(self) -> bool:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1) as probe:
            probe.sendall(b"PING\r\n")
            return probe.recv(7) == b"+PONG\r\n"
        return False

    def kill(self) -> None:
        """kill -9: no goodbye, no last write to disk."""
        self.stop(signal.SIGKILL)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(10)
        self.process = None

    def flush(self) -> None:
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as connection:
            connection.sendall(b"FLUSHALL\r\n")
            assert connection.recv(5) == b"+OK\r\n"

    def save(self) -> None:
        """Write a snapshot (dump.rdb in its folder), which it loads when it starts again."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=30) as connection:
            connection.sendall(b"SAVE\r\n")
            assert connection.recv(5) == b"+OK\r\n"

    def log(self) -> str:
        path = self.folder / "redis.log"
        return path.read_text(errors="replace") if path.exists() else ""


@contextlib.contextmanager
def running_redis(folder: Path, options: tuple[str, ...] = EPHEMERAL) -> Iterator[RedisServer]:
    server = RedisServer(folder, options)
    server.start()
    try:
        yield server
    finally:
        server.stop()
