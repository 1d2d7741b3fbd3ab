"""What `chatroom` runs uvicorn on, and the check that says when the app is served without it.

Served by plain uvicorn without chatroom's loop and protocols, the app says at start what is
left open, and with which options to close it (`StackCheck`; SECURITY.md, "Plain uvicorn").
"""

from __future__ import annotations

import asyncio
import logging

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

from app.server.http import ChatHttpProtocol
from app.server.loop import has_tls_deadlines
from app.server.websocket import ChatWebSocketProtocol
from app.settings import Settings

logger = logging.getLogger("chatroom")

# What `chatroom` runs uvicorn on: time limits uvicorn lacks on TLS handshakes and closes
# (the loop) and on request heads, with bounds on what a client can make the server hold
# (the protocols).
LOOP = "app.server.loop:new_event_loop"
HTTP = "app.server.http:ChatHttpProtocol"
WS = "app.server.websocket:ChatWebSocketProtocol"


def missing_protections(config: uvicorn.Config, loop: asyncio.AbstractEventLoop, settings: Settings) -> dict[str, str]:
    """The options of chatroom's stack that a loaded uvicorn config lacks, each with what is
    open without it. Without TLS, uvicorn is behind a proxy (docs/deployment.md), which has
    limits of its own on requests; WebSocket frames go through it as they are."""
    missing = {}
    ws = config.ws_protocol_class
    if not (isinstance(ws, type) and issubclass(ws, ChatWebSocketProtocol)):
        gaps = ["uvicorn's WebSocket protocol answers every ping and keeps reading a client that reads nothing"]
        if config.ws_per_message_deflate:
            gaps.append(f"inflates compressed frames (up to {config.ws_max_size} bytes each)")
        elif config.ws_max_size > settings.max_message_bytes:
            gaps.append(f"takes frames of up to {config.ws_max_size} bytes")
        missing[f"--ws {WS}"] = ", and ".join(gaps)
    if config.is_ssl:
        http = config.http_protocol_class
        if not (isinstance(http, type) and issubclass(http, ChatHttpProtocol)):
            missing[f"--http {HTTP}"] = "no deadline or size limit on request heads, no limit on pipelined requests"
        if not has_tls_deadlines(loop):
            missing[f"--loop {LOOP}"] = "no deadline on TLS handshakes, 30 s for a TLS close"
    return missing


class StackCheck:
    """Says once, as the app starts under uvicorn, what is left open if uvicorn does not run
    it on chatroom's stack: one warning that names the options to add.

    Only uvicorn's lifespan knows its config; it is the owner of the `receive` it passes (an
    implementation detail, checked at every step: under another server, or a uvicorn that
    changed, the check says nothing).
    """

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            config = getattr(getattr(receive, "__self__", None), "config", None)
            if isinstance(config, uvicorn.Config) and config.loaded:
                missing = missing_protections(config, asyncio.get_running_loop(), self.settings)
                if missing:
                    logger.warning(
                        "chatroom: served by uvicorn without chatroom's protections: %s. Run `chatroom`, "
                        'or give uvicorn these options too: %s (SECURITY.md, "Plain uvicorn")',
                        "; ".join(missing.values()),
                        " ".join(missing),
                    )
        await self.app(scope, receive, send)
