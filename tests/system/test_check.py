"""`chatroom check`: every fault that would keep the server from starting or working, one line
each, exit status 1; a good setup, 0. The real command, on real files, ports and Redis."""

from __future__ import annotations

import contextlib
import datetime
import os
import socket
import socketserver
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from app.server.devcert import ensure_dev_certificate
from bench.server import free_port
from tests.support.certificates import Certificates
from tests.support.servers import CHATROOM, chatroom_command, run_server


def check(tmp_path: Path, *options: str, env: dict[str, str] | None = None) -> tuple[int, list[str]]:
    """Run `chatroom check` in `tmp_path`; its exit status and the lines it printed about problems."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith("CHAT_")}
    environment.update(env or {})
    command = [str(CHATROOM), "check", "--port", str(free_port()), *options]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=tmp_path, env=environment)
    lines = result.stderr.splitlines()
    assert all(line.startswith("chatroom check: ") for line in lines), result.stderr
    return result.returncode, [line.removeprefix("chatroom check: ") for line in lines]


def with_certificates(certificates: Certificates) -> tuple[str, ...]:
    return ("--cert", str(certificates.cert), "--key", str(certificates.key))


def test_a_good_setup_passes_and_changes_nothing(tmp_path: Path, certificates: Certificates) -> None:
    result = subprocess.run(
        [str(CHATROOM), "check", "--port", str(free_port()), *with_certificates(certificates)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert (result.returncode, result.stderr) == (0, "")
    assert "ready to serve" in result.stdout
    assert list(tmp_path.iterdir()) == []  # no database made, no certificate
    assert check(tmp_path, "--check")[0] == 0  # `--check` is the same; no certificate yet is fine too


def test_a_good_setup_on_redis_passes(tmp_path: Path, certificates: Certificates, redis_url: str) -> None:
    assert check(tmp_path, *with_certificates(certificates), "--backend", redis_url, "--workers", "2") == (0, [])


def test_settings_out_of_range_each_get_a_line(tmp_path: Path) -> None:
    env = {"CHAT_QUEUE_SIZE": "0", "CHAT_RATE_LIMIT": "fast", "CHAT_METRICS_ALLOW": "everyone", "CHAT_RATE_LIMT": "9"}
    status, lines = check(tmp_path, env=env)
    assert status == 1
    assert lines == [
        "CHAT_METRICS_ALLOW='everyone': metrics_allow: expected addresses or networks, but got 'everyone'",
        "CHAT_QUEUE_SIZE='0': queue_size must be at least 1, got 0",
        "CHAT_RATE_LIMIT: expected a number, but got 'fast'",
        "CHAT_RATE_LIMT: no such setting (README.md, Configuration, lists them)",
    ]


@pytest.mark.parametrize("fault", ["garbage", "folder", "mismatched", "expired"])
def test_a_certificate_that_cannot_be_used(tmp_path: Path, certificates: Certificates, fault: str) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    ensure_dev_certificate(cert, key, "127.0.0.1")
    if fault == "garbage":
        cert.write_text("not a certificate\n")
    elif fault == "folder":
        cert.unlink()
        cert.mkdir()
    elif fault == "mismatched":
        key.write_bytes(certificates.key.read_bytes())  # another certificate's key
    else:
        old = trustme.CA().issue_cert("127.0.0.1", not_after=datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC))
        old.cert_chain_pems[0].write_to_path(str(cert))
        old.private_key_pem.write_to_path(str(key))
    status, lines = check(tmp_path, "--cert", str(cert), "--key", str(key))
    assert status == 1
    expected = {
        "garbage": f"certificate {cert}: not a PEM certificate",
        "folder": f"certificate {cert}: unreadable (Is a directory)",
        "mismatched": f"certificate {cert} and key {key}: cannot be used together",
        "expired": f"certificate {cert}: expired on 2020-01-01",
    }[fault]
    assert len(lines) == 1
    assert lines[0].startswith(expected), lines


def test_a_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        status, lines = check(tmp_path, "--port", str(port))
    assert (status, lines) == (1, [f"127.0.0.1:{port}: in use by another program (a chatroom already running?)"])


def test_a_sqlite_file_held_by_a_running_server(tmp_path: Path) -> None:
    database = tmp_path / "chat.db"
    port = free_port()
    certs = tmp_path / "certs"
    backend = f"sqlite:///{database}"
    with run_server(
        chatroom_command(port, certs / "cert.pem", certs / "key.pem", "--backend", backend), port, tmp_path
    ):
        status, lines = check(tmp_path, "--backend", backend)
        assert (status, lines) == (
            1,
            [f"{database}: in use by a running chatroom server (one process serves a SQLite file)"],
        )
    assert check(tmp_path, "--backend", backend) == (0, [])  # stopped: free again


def test_a_metrics_folder_that_is_not_one(tmp_path: Path) -> None:
    taken = tmp_path / "metrics"
    taken.write_text("a file where the folder should be\n")
    status, lines = check(tmp_path, env={"PROMETHEUS_MULTIPROC_DIR": str(taken)})
    assert (status, lines) == (1, [f"PROMETHEUS_MULTIPROC_DIR={taken}: not a folder"])


def test_workers_on_a_single_process_backend(tmp_path: Path) -> None:
    status, lines = check(tmp_path, "--workers", "2", "--backend", "memory://")
    assert (status, lines) == (1, ["--workers 2: memory:// serves one process; share redis://HOST:PORT/DB"])


def test_redis_unreachable(tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    status, lines = check(tmp_path, "--backend", url)
    assert status == 1
    assert len(lines) == 1
    assert lines[0].startswith(f"Redis at {url} does not answer: ")


class OldRedis(socketserver.BaseRequestHandler):
    """Answers as Redis 6.0 would to what the check asks (a stand-in: Debian has no older Redis).

    RESP: every command is an array of bulk strings; INFO gets the server section.
    """

    VERSION = "6.0.16"

    def handle(self) -> None:
        reader = self.request.makefile("rb")
        while True:
            header = reader.readline()
            if not header:
                return
            assert header.startswith(b"*"), header
            words = []
            for _ in range(int(header[1:])):
                length = int(reader.readline()[1:])
                words.append(reader.read(length + 2)[:-2].decode().upper())
            if words[0] == "INFO":
                body = f"# Server\r\nredis_version:{self.VERSION}\r\nredis_mode:standalone\r\n".encode()
                self.request.sendall(b"$%d\r\n%s\r\n" % (len(body), body))
            elif words[0] == "PING":
                self.request.sendall(b"+PONG\r\n")
            else:  # CLIENT SETINFO, which Redis 6.0 does not know either
                self.request.sendall(f"-ERR unknown command '{words[0]}'\r\n".encode())


@contextlib.contextmanager
def old_redis() -> Iterator[str]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), OldRedis)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"redis://127.0.0.1:{server.server_address[1]}/0"
    finally:
        server.shutdown()
        server.server_close()


def test_redis_too_old(tmp_path: Path) -> None:
    with old_redis() as url:
        status, lines = check(tmp_path, "--backend", url)
    assert (status, lines) == (1, [f"Redis at {url} is version 6.0.16: chatroom needs 6.2 or newer"])


def test_every_fault_at_once_one_line_each(tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("garbage\n")
    (tmp_path / "key.pem").write_text("garbage\n")
    with old_redis() as url:
        status, lines = check(
            tmp_path, "--cert", str(cert), "--key", str(tmp_path / "key.pem"), "--backend", url,
            env={"CHAT_STALL_TIMEOUT": "soon"},
        )  # fmt: skip
    assert status == 1
    assert [line.split(":")[0] for line in lines] == ["CHAT_STALL_TIMEOUT", f"certificate {cert}", "Redis at redis"]
