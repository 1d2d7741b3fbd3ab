"""The event loop `chatroom` runs on: asyncio's own, with time limits on TLS.

Uvicorn creates its listening socket with `loop.create_server(..., ssl=context)` and passes
no TLS timeouts, so asyncio's defaults apply: a peer may take 60 seconds over its TLS
handshake (or never start it: a TCP connection that stays silent), and 30 seconds to answer
a TLS close. Neither can be set through uvicorn; both can on the loop, which is what this
loop does for every TLS server it creates:

- `ssl_handshake_timeout` = `handshake_timeout` (10 s by default): a connection whose TLS
  handshake is not done by then is aborted, before any HTTP;
- `ssl_shutdown_timeout` = `close_timeout` (5 s by default): a peer that does not answer our
  close_notify is cut off instead of holding its socket.

Why asyncio's loop and not uvloop, which uvicorn picks when it is installed: under storms of
connections that come and go, a uvloop server's memory grows with every cycle and does not
come back (measured here: 57 MB to 188 MB over ten thousand connections, still rising, with
TLS or without), while asyncio's levels off after the first storm (SECURITY.md). asyncio's
price is a 256 KiB read buffer per open TLS connection, and some speed.

    uvicorn app.main:app --loop app.loop:new_event_loop ...   (`chatroom` does this)
"""

from __future__ import annotations

import asyncio
from typing import Any

from app.settings import Settings


class TimedTLSLoop(asyncio.SelectorEventLoop):
    """asyncio's loop, whose TLS servers time out handshakes and closes unless told otherwise."""

    handshake_timeout: float | None = None
    shutdown_timeout: float | None = None

    async def create_server(self, *args: Any, **kwargs: Any) -> asyncio.Server:
        if kwargs.get("ssl") is not None:
            kwargs.setdefault("ssl_handshake_timeout", self.handshake_timeout)
            kwargs.setdefault("ssl_shutdown_timeout", self.shutdown_timeout)
        return await super().create_server(*args, **kwargs)


def new_event_loop(settings: Settings | None = None) -> asyncio.AbstractEventLoop:
    """A loop whose TLS servers time out as `settings` say.

    Uvicorn calls this with no arguments in each worker; the settings then come from the
    `CHAT_*` environment variables, which `chatroom` sets for its workers.
    """
    settings = settings if settings is not None else Settings.from_env()
    loop = TimedTLSLoop()
    loop.handshake_timeout = settings.handshake_timeout
    loop.shutdown_timeout = settings.close_timeout
    return loop
