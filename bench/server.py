"""The server under test: the `chatroom` command, on a free port, over TLS, rate limit off."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Server:
    url: str
    cafile: Path
    process: psutil.Process

    def cpu_seconds(self) -> float:
        """CPU time of the server and its workers so far."""
        return tree_cpu_seconds(self.process)

    def rss_bytes(self) -> int:
        return tree_rss(self.process)


def tree_cpu_seconds(process: psutil.Process) -> float:
    """CPU time of `process` and its descendants (a server and its workers) so far."""
    total = 0.0
    for each in (process, *process.children(recursive=True)):
        with contextlib.suppress(psutil.NoSuchProcess):
            times = each.cpu_times()
            total += times.user + times.system
    return total


def tree_rss(process: psutil.Process) -> int:
    """Resident memory of `process` and its descendants: what the system gave them and they kept."""
    total = 0
    for each in (process, *process.children(recursive=True)):
        with contextlib.suppress(psutil.NoSuchProcess):
            total += each.memory_info().rss
    return total


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.contextmanager
def chatroom(workdir: Path, backend: str, workers: int = 1) -> Iterator[Server]:
    """Run `chatroom` in `workdir` (history, certificate and log go there) until the block ends.

    The rate limit is off (one client sends for many) and so is the per-address connection
    cap (every client comes from 127.0.0.1); every other limit keeps its default.
    """
    port = free_port()
    backend_url = {"memory": "memory://", "sqlite": f"sqlite:///{workdir / 'bench.db'}"}.get(backend, backend)
    env = {
        **os.environ,
        "CHAT_RATE_LIMIT": "0",
        "CHAT_MAX_CONNECTIONS_PER_IP": "0",
        "CHAT_BACKEND_URL": backend_url,
        "PYTHONPATH": str(ROOT),
    }
    cert, key = workdir / "cert.pem", workdir / "key.pem"
    command = [
        sys.executable, "-m", "app.cli", "--host", "127.0.0.1", "--port", str(port), "--cert", str(cert),
        "--key", str(key), "--workers", str(workers), "--log-level", "warning",
    ]  # fmt: skip
    log = (workdir / "server.log").open("w")
    process = subprocess.Popen(command, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
    try:
        wait_for_port(port, process, workdir / "server.log")
        yield Server(f"wss://127.0.0.1:{port}/ws", cert, psutil.Process(process.pid))
    finally:
        terminate(process)
        log.close()


def terminate(process: subprocess.Popen[Any], timeout: float = 15) -> None:
    """SIGTERM, as a service manager would stop the server; SIGKILL if it takes longer than `timeout`."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_for_port(port: int, process: subprocess.Popen[Any], log: Path, timeout: float = 30) -> None:
    """Return once `process` listens on 127.0.0.1:`port`; fail, with its log, if it exits or
    takes longer than `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode} before listening:\n{log.read_text()}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"the server did not listen on {port} within {timeout} s:\n{log.read_text()}")
