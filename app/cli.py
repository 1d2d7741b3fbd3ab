"""The `chatroom` command: serve the chat over https/wss with sensible production settings."""

from __future__ import annotations

import argparse
import os
import socket
import ssl
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import uvicorn

from app.devcert import ensure_dev_certificate
from app.settings import Settings


def tls_context(config: uvicorn.Config, default: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
    """Uvicorn's context, held to TLS 1.2 or newer whatever the system's OpenSSL defaults."""
    context = default()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def parse_args(argv: Sequence[str] | None, defaults: Settings) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="chatroom",
        description="Serve the chat room over https/wss. Every option has a CHAT_* environment variable.",
    )
    parser.add_argument("--host", default=defaults.host, help="address to listen on; 0.0.0.0 opens it to the LAN")
    parser.add_argument("--port", type=int, default=defaults.port)
    parser.add_argument("--cert", default=defaults.certfile, help="PEM certificate (created if missing)")
    parser.add_argument("--key", default=defaults.keyfile, help="PEM private key (created if missing)")
    parser.add_argument("--backend", default=defaults.backend_url, help="backend URL, e.g. memory://")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (needs a shared backend)")
    parser.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    try:
        defaults = Settings.from_env()
    except ValueError as exc:
        sys.exit(f"chatroom: {exc}")
    args = parse_args(argv, defaults)
    settings = Settings.from_env(
        host=args.host, port=args.port, certfile=args.cert, keyfile=args.key, backend_url=args.backend
    )
    certfile, keyfile = Path(settings.certfile), Path(settings.keyfile)
    if ensure_dev_certificate(certfile, keyfile, settings.host):
        print(f"chatroom: created a self-signed development certificate in {certfile.parent}/", flush=True)
    # Workers build their app from the environment (create_app reads CHAT_*), so hand it on.
    os.environ.update(settings.to_env())
    print(f"chatroom: open {_url(settings)} in a browser", flush=True)
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=args.workers,
        log_level=args.log_level,
        ssl_certfile=str(certfile),
        ssl_keyfile=str(keyfile),
        ssl_context_factory=tls_context,
        # Time limits uvicorn lacks: on TLS handshakes and closes (the loop), on request heads.
        loop="app.loop:new_event_loop",
        http="app.httpprotocol:ChatHttpProtocol",
        ws="app.wsprotocol:ChatWebSocketProtocol",
        # Refuse an oversized frame in the parser (close 1009), before it is buffered.
        ws_max_size=settings.max_message_bytes,
        ws_ping_interval=settings.ping_interval,
        ws_ping_timeout=settings.ping_timeout,
        # Compressing every frame once per client costs more CPU than it saves on short lines.
        ws_per_message_deflate=False,
        # Each client's answer to its 1001, then its TLS close, may take close_timeout each.
        timeout_graceful_shutdown=int(2 * settings.close_timeout) + 5,
    )


def _url(settings: Settings) -> str:
    host = settings.host
    if host in ("0.0.0.0", "::"):
        host = socket.gethostname()
    elif ":" in host:
        host = f"[{host}]"
    return f"https://{host}:{settings.port}/"


if __name__ == "__main__":
    main()
