"""`python -m bench.core`: the core's fan-out alone, CPU time per delivery, without sockets.

One sender says a message a turn to a room of RECEIVERS members whose sinks take every
frame at once and keep nothing: what is measured is the core's own work for a message (its
parsing, publishing, batching, and the fan-out to every member), nothing of TLS or the
kernel. Its figures are steadier than the benchmark's on a busy machine (process CPU time,
the best of several runs), so it shows what a change to the hot path costs.

    python -m bench.core                 # 100 receivers, 20000 messages, best of 7
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable

from app.backends.memory import MemoryBackend
from app.core.hub import Hub
from app.settings import Settings


class NullSink:
    """A socket that takes every frame at once and keeps none."""

    def __init__(self) -> None:
        self.frames = 0

    def writable(self) -> bool:
        return True

    def write(self, payload: bytes) -> None:
        self.frames += 1

    def on_writable(self, callback: Callable[[], None]) -> None:
        pass


class NullConnection:
    async def send_text(self, payload: bytes) -> None:
        pass

    async def close(self, code: int, reason: str) -> None:
        pass


async def one_run(receivers: int, messages: int) -> float:
    """CPU seconds per delivery of one run."""
    settings = Settings(backend_url="memory://", rate_limit=0)
    hub = Hub(MemoryBackend("memory://", settings), settings)
    await hub.start()
    sinks = [NullSink() for _ in range(receivers)]
    for number, sink in enumerate(sinks):
        await hub.join(NullConnection(), lambda: None, "bench", f"r{number}", sink=sink)
    sender = await hub.join(NullConnection(), lambda: None, "bench", "sender", sink=NullSink())
    await asyncio.sleep(0.2)  # the joins go out (PRESENCE_DELAY)
    before = [sink.frames for sink in sinks]
    frame = '{"type":"message","text":"' + "x" * 60 + '"}'
    started = time.process_time()
    for _ in range(messages):
        await sender.receive(frame)
        await asyncio.sleep(0)  # the end of the turn: the message goes out, a frame of its own
    await asyncio.sleep(0)
    spent = time.process_time() - started
    delivered = sum(sink.frames - count for sink, count in zip(sinks, before, strict=True))
    assert delivered == receivers * messages, (delivered, receivers * messages)
    await hub.stop()
    return spent / delivered


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.core", description=__doc__.split("\n\n")[0])
    parser.add_argument("--receivers", type=int, default=100)
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    results = sorted(asyncio.run(one_run(args.receivers, args.messages)) for _ in range(args.runs))
    print(
        f"core fan-out, {args.receivers} receivers: ns per delivery best {results[0] * 1e9:.0f}, "
        f"median {results[len(results) // 2] * 1e9:.0f}, worst {results[-1] * 1e9:.0f} ({args.runs} runs)"
    )


if __name__ == "__main__":
    main()
