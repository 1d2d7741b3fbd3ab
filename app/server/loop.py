"""The event loop `chatroom` runs on: uvicorn's own choice, with time limits on TLS.

Uvicorn creates its listening socket with `loop.create_server(..., ssl=context)` and passes
no TLS timeouts, so asyncio's defaults apply: a peer may take 60 seconds over its TLS
handshake (or never start it: a TCP connection that stays silent), and 30 seconds to answer
a TLS close. Neither can be set through uvicorn; both can on the loop, which is what this
loop does for every TLS server it creates:

- `ssl_handshake_timeout` = `handshake_timeout` (10 s by default): a connection whose TLS
  handshake is not done by then is aborted, before any HTTP;
- `ssl_shutdown_timeout` = `close_timeout` (5 s by default): a peer that does not answer our
  close_notify is cut off instead of holding its socket.

    uvicorn app.main:app --loop app.server.loop:new_event_loop ...   (`chatroom` does this)
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from app.settings import Settings


class _TimedTLSServers:
    """Mixed into an event loop class: default TLS timeouts for `create_server`."""

    handshake_timeout: float
    shutdown_timeout: float

    async def create_server(self, *args: Any, **kwargs: Any) -> asyncio.Server:
        if kwargs.get("ssl") is not None:
            kwargs.setdefault("ssl_handshake_timeout", self.handshake_timeout)
            kwargs.setdefault("ssl_shutdown_timeout", self.shutdown_timeout)
        server: asyncio.Server = await super().create_server(*args, **kwargs)  # type: ignore[misc]
        return server


def has_tls_deadlines(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether `loop` is one of these: uvicorn was given `--loop app.server.loop:new_event_loop`."""
    return isinstance(loop, _TimedTLSServers)


class SelectorLoop(_TimedTLSServers, asyncio.SelectorEventLoop):
    pass


@functools.cache
def loop_class() -> type[_TimedTLSServers]:
    """uvloop's loop when uvloop is installed (as uvicorn's "auto" picks), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return SelectorLoop

    class UVLoop(_TimedTLSServers, uvloop.Loop):  # type: ignore[misc]
        pass

    return UVLoop


def new_event_loop(settings: Settings | None = None) -> asyncio.AbstractEventLoop:
    """A loop whose TLS servers time out as `settings` say.

    Uvicorn calls this with no arguments in each worker; the settings then come from the
    `CHAT_*` environment variables, which `chatroom` sets for its workers.
    """
    settings = settings if settings is not None else Settings.from_env()
    loop = loop_class()()
    loop.handshake_timeout = settings.handshake_timeout
    loop.shutdown_timeout = settings.close_timeout
    assert isinstance(loop, asyncio.AbstractEventLoop)
    return loop
