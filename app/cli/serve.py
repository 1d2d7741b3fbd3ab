"""`chatroom [OPTIONS]`: serve the chat over https/wss with sensible production settings.

It runs uvicorn on chatroom's own loop and protocols (app/server/stack.py); plain uvicorn
runs on them with the same options (README.md, "Run it").
"""

from __future__ import annotations

import argparse
import os
import socket
import ssl
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from urllib.parse import urlsplit

import uvicorn
from uvicorn.supervisors import Multiprocess

from app.logs import log_config
from app.server.allocator import run_on_jemalloc
from app.server.devcert import ensure_dev_certificate
from app.server.metrics_folder import prepare_metrics_folder
from app.server.stack import HTTP, LOOP, WS
from app.settings import SINGLE_PROCESS_BACKENDS, Settings


def tls_context(config: uvicorn.Config, default: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
    """Uvicorn's context, held to TLS 1.2 or newer, without renegotiation, whatever the system's
    OpenSSL defaults (OpenSSL 3 refuses a client's renegotiation already; 1.1 does not)."""
    context = default()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # Each renegotiation costs a handshake's work, as often as a client asks for one.
    context.options |= ssl.OP_NO_RENEGOTIATION
    return context


def parse_args(argv: Sequence[str] | None, defaults: Settings) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="chatroom",
        description="Serve the chat room over https/wss. Every option has a CHAT_* environment variable.",
        epilog="Accounts, beside a running server: chatroom users --help",
    )
    parser.add_argument("--host", default=defaults.host, help="address to listen on; 0.0.0.0 opens it to the LAN")
    parser.add_argument("--port", type=int, default=defaults.port)
    parser.add_argument("--cert", default=defaults.certfile, help="PEM certificate (created if missing)")
    parser.add_argument("--key", default=defaults.keyfile, help="PEM private key (created if missing)")
    parser.add_argument("--backend", default=defaults.backend_url, help="backend URL, e.g. memory://")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (needs a shared backend)")
    parser.add_argument(
        "--forwarded-allow-ips",
        default=",".join(defaults.forwarded_allow_ips),
        help="comma-separated addresses or networks of reverse proxies whose X-Forwarded-For and "
        "X-Forwarded-Proto to believe (default: none)",
    )
    parser.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    parser.add_argument(
        "--check",
        action="store_true",
        help="say what would keep the server from starting or working, one line each, and exit "
        "(1 if anything, 0 if nothing); `chatroom check` does the same",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    arguments = sys.argv[1:] if argv is None else list(argv)
    if arguments[:1] == ["check"]:
        arguments = [*arguments[1:], "--check"]
    if "--check" in arguments:  # before the settings are read: it says what is wrong with them
        from app.check import check_command  # it reads the backends' names: only when asked

        sys.exit(check_command(arguments, parse_args))
    run_on_jemalloc(sys.argv[1:] if argv is None else argv)
    try:
        defaults = Settings.from_env()
    except ValueError as exc:
        sys.exit(f"chatroom: {exc}")
    args = parse_args(argv, defaults)
    try:
        settings = Settings.from_env(
            host=args.host,
            port=args.port,
            certfile=args.cert,
            keyfile=args.key,
            backend_url=args.backend,
            forwarded_allow_ips=tuple(item.strip() for item in args.forwarded_allow_ips.split(",") if item.strip()),
        )
    except ValueError as exc:
        sys.exit(f"chatroom: {exc}")
    if args.workers > 1 and urlsplit(settings.backend_url).scheme in SINGLE_PROCESS_BACKENDS:
        sys.exit(
            f"chatroom: {settings.backend_url} serves one process; for --workers {args.workers}, "
            "share a backend between them: --backend redis://HOST:PORT/DB"
        )
    certfile, keyfile = Path(settings.certfile), Path(settings.keyfile)
    if ensure_dev_certificate(certfile, keyfile, settings.host):
        print(f"chatroom: created a self-signed development certificate in {certfile.parent}/", flush=True)
    # Workers build their app from the environment (create_app reads CHAT_*), so hand it on.
    os.environ.update(settings.to_env())
    print(f"chatroom: open {_url(settings)} in a browser", flush=True)
    config = ChatConfig(
        "app.main:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=args.workers,
        log_level=args.log_level,
        log_config=log_config(settings.log_format, args.log_level),
        ssl_certfile=str(certfile),
        ssl_keyfile=str(keyfile),
        ssl_context_factory=tls_context,
        # Uvicorn believes X-Forwarded-For from 127.0.0.1 unless told otherwise: any local
        # client could claim any address, and a cap of its own for each.
        proxy_headers=bool(settings.forwarded_allow_ips),
        forwarded_allow_ips=list(settings.forwarded_allow_ips),
        loop=LOOP,
        http=HTTP,
        ws=WS,
        # What WS does whatever uvicorn's options say; said here for whoever reads the config.
        ws_max_size=settings.max_message_bytes,
        ws_per_message_deflate=False,
        ws_ping_interval=settings.ping_interval,
        ws_ping_timeout=settings.ping_timeout,
        # Each client's answer to its 1001, then its TLS close, may take close_timeout each.
        timeout_graceful_shutdown=int(2 * settings.close_timeout) + 5,
        # `server: uvicorn` on every response tells a scanner what to try, and nobody else needs it.
        server_header=False,
    )
    remove_metrics_folder = prepare_metrics_folder(args.workers)  # before workers import prometheus-client
    try:
        serve(config)
    finally:
        remove_metrics_folder()


class ChatConfig(uvicorn.Config):
    def bind_socket(self) -> socket.socket:
        sock = super().bind_socket()
        # Accepted connections inherit this before their handshake, so the window they
        # advertise stays small from the first packet: a sender that outruns the server
        # waits in its own TCP connection rather than in megabytes of ours (the kernel
        # grows receive buffers up to tcp_rmem's maximum otherwise, 32 MiB here). Chat
        # frames are at most a few KiB: 64 KiB in flight per connection is plenty.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        return sock


RECEIVE_BUFFER = 32 * 1024  # the kernel doubles it for its bookkeeping


def serve(config: uvicorn.Config) -> None:
    """What `uvicorn.run` does, on a listening socket we made."""
    server = uvicorn.Server(config)
    sock = config.bind_socket()
    try:
        if config.workers > 1:
            Multiprocess(config, sockets=[sock]).run()
        else:
            server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    if config.workers == 1 and not server.started:
        sys.exit(3)  # uvicorn's startup failure status


def _url(settings: Settings) -> str:
    host = settings.host
    if host in ("0.0.0.0", "::"):
        host = socket.gethostname()
    elif ":" in host:
        host = f"[{host}]"
    return f"https://{host}:{settings.port}/"
