"""Say goodbye (close 1001) to every client before the server stops.

Uvicorn, told to stop, closes WebSockets itself with 1012 (service restart). Clients of a
server that is going away should hear 1001, after the frames already queued for them. So
the lifespan chains the SIGINT and SIGTERM handlers the server installed: on a signal we
close every client, give the writers up to `close_timeout` to deliver, and only then pass
the signal on to the server.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

from app.core.hub import Hub

SIGNALS = (signal.SIGINT, signal.SIGTERM)


def close_clients_before_exit(hub: Hub, timeout: float) -> Callable[[], None]:
    """Install the chained handlers; returns the function that puts the previous ones back."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None  # only the main thread has signal handlers (not so under TestClient)
    loop = asyncio.get_running_loop()
    previous: dict[int, Any] = {sig: signal.getsignal(sig) for sig in SIGNALS}
    draining: set[asyncio.Task[None]] = set()
    signalled = False

    def pass_on(sig: int, frame: FrameType | None) -> None:
        handler = previous[sig]
        if callable(handler):
            handler(sig, frame)
        else:  # nobody else handles it: let the default action happen
            signal.signal(sig, handler)
            signal.raise_signal(sig)

    async def drain(sig: int) -> None:
        clients = hub.close_all()
        if clients:
            await asyncio.wait([asyncio.ensure_future(client.wait_closed()) for client in clients], timeout=timeout)
        pass_on(sig, None)

    def on_signal(sig: int, frame: FrameType | None) -> None:
        nonlocal signalled
        if signalled:  # a second signal: do not make the user wait twice
            pass_on(sig, frame)
            return
        signalled = True
        # Runs between two bytecodes of whatever the loop was doing: only schedule here.
        loop.call_soon_threadsafe(lambda: draining.add(loop.create_task(drain(sig))))

    for sig in SIGNALS:
        signal.signal(sig, on_signal)

    def restore() -> None:
        for sig, handler in previous.items():
            if signal.getsignal(sig) is on_signal:
                signal.signal(sig, handler)

    return restore
