"""Floods a chat server at full speed, reconnecting whenever it is closed; a process of its own.

    python -m tests.support.flooder URL CAFILE --seconds S [--mode MODE ...]

One connection per mode at a time, each sending as fast as the socket takes it and reading
whatever comes back (so that it is never dropped merely for being slow):

- `messages`: valid chat messages;
- `garbage`: frames that are not JSON;
- `big`: frames over the size limit;
- `binary`: binary frames.

Prints `flooding` once every mode has a connection open, then at the end one JSON line:
for each mode, how many connections it made, the frames it sent and the close codes it got.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import ssl
import time
from collections import Counter
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

FRAMES: dict[str, str | bytes] = {
    "messages": json.dumps({"type": "message", "text": "flood"}),
    "garbage": "{not json",
    "big": json.dumps({"type": "message", "text": "x" * 5000}),
    "binary": b"\x00" * 100,
}


async def drain(connection: ClientConnection) -> None:
    with contextlib.suppress(ConnectionClosed):
        async for _ in connection:
            pass


async def flood(url: str, context: ssl.SSLContext, mode: str, deadline: float, opened: asyncio.Event) -> dict[str, Any]:
    frame = FRAMES[mode]
    connections, sent, closes = 0, 0, Counter[int]()
    while time.monotonic() < deadline:
        connections += 1
        name = f"flood-{mode}-{connections}"
        async with connect(f"{url}&name={name}", ssl=context, open_timeout=30, max_size=None) as connection:
            opened.set()
            draining = asyncio.ensure_future(drain(connection))
            with contextlib.suppress(ConnectionClosed):
                while time.monotonic() < deadline:
                    await connection.send(frame)
                    sent += 1
                    await asyncio.sleep(0)  # let the other floods, and this one's reader, have a turn
            await connection.close()
            await draining
            closes[connection.close_code or 0] += 1
    return {"connections": connections, "sent": sent, "closes": dict(closes)}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url", help="wss://HOST:PORT/ws?room=ROOM")
    parser.add_argument("cafile")
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--mode", action="append", choices=sorted(FRAMES))
    args = parser.parse_args()
    context = ssl.create_default_context(cafile=args.cafile)
    deadline = time.monotonic() + args.seconds
    modes: list[str] = args.mode or sorted(FRAMES)
    opened = [asyncio.Event() for _ in modes]
    floods = [
        asyncio.ensure_future(flood(args.url, context, mode, deadline, event))
        for mode, event in zip(modes, opened, strict=True)
    ]
    await asyncio.gather(*(event.wait() for event in opened))
    print("flooding", flush=True)
    results = await asyncio.gather(*floods)
    print(json.dumps(dict(zip(modes, results, strict=True))), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
