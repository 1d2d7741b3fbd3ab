"""The reconnect storm: every client of one room connecting at once, as after a restart.

Worker processes (`--processes`) each open their share of the connections all at once (no
gate), wait until the gate opens together, and report when each welcome came and why any
connection failed. The parent samples the server's memory meanwhile: the storm's cost is
its peak, not what stays. Each client names itself, as a page does, so that presence is
part of the cost: every join is announced to everyone already in the room.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
import time
from collections import Counter
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from bench.load import tls
from bench.server import Server


@dataclass(frozen=True)
class Storm:
    clients: int


HOLD = 2.0  # seconds the room stays full after the last welcome, joins and all delivered
TIMEOUT = 120.0


def _storm_worker(url: str, cafile: str, first: int, count: int, start_at: float, pipe: Connection) -> None:
    pipe.send(asyncio.run(_storm(url, Path(cafile), first, count, start_at)))


async def _storm(url: str, cafile: Path, first: int, count: int, start_at: float) -> dict[str, Any]:
    context = tls(cafile)
    failures: Counter[str] = Counter()
    welcomed: list[float] = []
    held: list[ClientConnection] = []
    await asyncio.sleep(max(0.0, start_at - time.time()))

    async def one(name: str) -> None:
        try:
            connection = await connect(
                f"{url}?room=storm&name={name}",
                ssl=context,
                max_size=None,
                max_queue=None,  # read by nobody until the end: every join still goes in
                open_timeout=TIMEOUT,
                ping_interval=None,
                compression=None,
            )
            await asyncio.wait_for(connection.recv(), TIMEOUT)  # the welcome
        except ConnectionClosed as closed:
            failures[f"close {closed.rcvd.code if closed.rcvd else 'none'}"] += 1
        except InvalidStatus as refused:
            failures[f"http {refused.response.status_code}"] += 1
        except (OSError, TimeoutError) as exc:
            failures[type(exc).__name__] += 1
        else:
            welcomed.append(time.time())
            held.append(connection)

    await asyncio.gather(*(one(f"s{first + index}") for index in range(count)))
    await asyncio.sleep(HOLD)
    for connection in held:
        await connection.close()
    return {"welcomed": welcomed, "failures": failures}


def _sample_peak(server: Server, stop: threading.Event, peak: list[int]) -> None:
    while not stop.wait(0.05):
        peak[0] = max(peak[0], server.rss_bytes())


def run_storm(server: Server, count: int, processes: int) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    shares = [count // processes + (1 if index < count % processes else 0) for index in range(processes)]
    start_at = time.time() + 1.0 + 0.3 * processes  # once every worker is up: at once
    pipes, workers, first = [], [], 0
    for share in shares:
        ours, theirs = context.Pipe()
        worker = context.Process(
            target=_storm_worker, args=(server.url, str(server.cafile), first, share, start_at, theirs)
        )
        worker.start()
        pipes.append(ours)
        workers.append(worker)
        first += share
    before, peak = server.rss_bytes(), [0]
    stop = threading.Event()
    sampler = threading.Thread(target=_sample_peak, args=(server, stop, peak), daemon=True)
    sampler.start()
    time.sleep(max(0.0, start_at - time.time()))
    cpu_before = server.cpu_seconds()
    welcomed: list[float] = []
    failures: Counter[str] = Counter()
    for pipe in pipes:
        if not pipe.poll(TIMEOUT + HOLD + 30):
            raise TimeoutError("a storm worker did not report")
        report = pipe.recv()
        welcomed += report["welcomed"]
        failures.update(report["failures"])
    cpu = server.cpu_seconds() - cpu_before
    stop.set()
    sampler.join()
    for worker in workers:
        worker.join(5)
    last = max(welcomed, default=start_at)
    return {
        "conns": count,
        "welcomed": len(welcomed),
        "refused": sum(failures.values()),
        "why": ",".join(f"{why}:{n}" for why, n in failures.items()) or "-",
        "last s": last - start_at,
        "conn/s": len(welcomed) / (last - start_at) if welcomed else 0.0,
        # Includes the closes at the end, which a real storm pays too, later.
        "cpu/conn ms": 1000 * cpu / count,
        "peak MiB": peak[0] / 2**20,
        "peak KiB/conn": (peak[0] - before) / 1024 / count,
    }
