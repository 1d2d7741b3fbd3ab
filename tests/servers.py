"""Real servers for tests: uvicorn or the `chatroom` command in a subprocess, on a free port."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHATROOM = Path(sys.executable).parent / "chatroom"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


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


def wait_for_port(port: int, process: subprocess.Popen[str], log: Path, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before listening:\n{log.read_text()}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"server did not listen on {port} within {timeout} s:\n{log.read_text()}")


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
        wait_for_port(port, process, log)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


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
