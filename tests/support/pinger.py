"""Floods a chat server with control frames, reconnecting whenever it is closed; a process of its own.

    python -m tests.support.pinger URL CAFILE --seconds S [--kind ping|pong]

One connection at a time, over a bare TLS stream: pings (or unsolicited pongs) with 125-byte
payloads, a hundred to a write, as fast as the socket takes them, while it reads
whatever comes back, so that it is never dropped merely for being slow (tests/flooder.py
does the same with data frames, through a WebSocket library).

Prints `flooding` once its first connection is open, then at the end one JSON line: how many
connections it made, the frames it sent and the close codes it got (0: none, it was cut off).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import ssl
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.uri import parse_uri

PAYLOAD = 125  # the largest a control frame may carry
BATCH = 100  # frames a write


async def flood_once(
    url: str, context: ssl.SSLContext, frames: bytes, deadline: float, opened: Callable[[], None]
) -> tuple[int, int]:
    """One connection: floods until it is closed or cut off, or the deadline; the frames it
    sent and the close code it got."""
    uri = parse_uri(url)
    protocol = ClientProtocol(uri)  # only to make the handshake and read what comes back
    reader, writer = await asyncio.open_connection(uri.host, uri.port, ssl=context, server_hostname=uri.host)
    sent = 0
    try:
        protocol.send_request(protocol.connect())
        writer.write(b"".join(protocol.data_to_send()))
        while protocol.state is State.CONNECTING:
            protocol.receive_data(await reader.read(65536))
        if protocol.handshake_exc is not None:
            raise protocol.handshake_exc
        opened()

        async def read() -> None:
            while protocol.close_rcvd is None and (data := await reader.read(65536)):
                protocol.receive_data(data)
                protocol.events_received()  # its pongs: nothing to do with them

        reading = asyncio.ensure_future(read())
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            while not reading.done() and time.monotonic() < deadline:
                writer.write(frames)
                await writer.drain()
                sent += BATCH
                await asyncio.sleep(0)  # let the reader have its turn
        reading.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError, ssl.SSLError):
            await reading
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await writer.wait_closed()
    return sent, protocol.close_rcvd.code if protocol.close_rcvd is not None else 0


def announce() -> None:
    print("flooding", flush=True)


async def flood(url: str, context: ssl.SSLContext, kind: str, deadline: float) -> dict[str, Any]:
    opcode = Opcode.PING if kind == "ping" else Opcode.PONG
    frames = Frame(opcode, b"p" * PAYLOAD).serialize(mask=True, extensions=[]) * BATCH
    connections, sent, closes = 0, 0, Counter[int]()
    while time.monotonic() < deadline:
        connections += 1
        opened = announce if connections == 1 else (lambda: None)
        frames_sent, code = await flood_once(f"{url}&name={kind}er-{connections}", context, frames, deadline, opened)
        sent += frames_sent
        closes[code] += 1
    return {"connections": connections, "sent": sent, "closes": dict(closes)}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url", help="wss://HOST:PORT/ws?room=ROOM")
    parser.add_argument("cafile")
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--kind", choices=["ping", "pong"], default="ping")
    args = parser.parse_args()
    context = ssl.create_default_context(cafile=args.cafile)
    report = await flood(args.url, context, args.kind, time.monotonic() + args.seconds)
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
