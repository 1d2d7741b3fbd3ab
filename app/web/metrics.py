"""`GET /metrics`: the process's `Stats` as Prometheus metrics, through prometheus-client, for
the addresses of `CHAT_METRICS_ALLOW` only (docs/operations.md says what each one means).

The counts themselves are plain integers kept by the core where the work happens
(app/core/stats.py); prometheus-client is never called on the hot path. They become metrics
in one of two ways:

- one process: a collector reads them when `/metrics` is scraped;
- several processes (`PROMETHEUS_MULTIPROC_DIR` set, as `chatroom --workers N` does): the
  library's multiprocess mode, in which every process writes its metrics into files of that
  folder and a scrape of any of them adds them all up. A task of the app hands what was
  counted since the last time to the library's metrics, once every SYNC_INTERVAL, and once
  more as the app stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest, values
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from app.core.stats import LATENCY_BOUNDS, OPERATIONS, Stats
from app.web.operators import Operators

if TYPE_CHECKING:
    from app.core.hub import Hub

MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"  # the library's own setting
SYNC_INTERVAL = 1.0  # seconds between two hand-overs of the counts to the library's metrics
NOT_ALLOWED = "/metrics is served to the addresses of CHAT_METRICS_ALLOW only\n"

Labels = tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Reading:
    """One metric's values at one moment: a counter's or a gauge's, by label values."""

    name: str
    kind: str  # "counter" or "gauge"
    documentation: str
    values: dict[Labels, float]
    labels: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class HistogramReading:
    name: str
    documentation: str
    label: str
    buckets: dict[str, tuple[list[int], float]] = field(default_factory=dict)  # label value -> (counts, sum)


def readings(stats: Stats, rooms: int) -> list[Reading]:
    """Every counter and gauge, read from `stats` (and the number of rooms open here)."""

    def labelled(counts: Iterable[tuple[str | tuple[str, ...], int]]) -> dict[Labels, float]:
        return {(key,) if isinstance(key, str) else key: value for key, value in sorted(counts)}

    return [
        Reading("chatroom_connections_open", "gauge", "WebSocket connections open now", {(): stats.open}),
        Reading("chatroom_connections_opened", "counter", "WebSocket connections opened", {(): stats.opened}),
        Reading(
            "chatroom_connections_closed",
            "counter",
            "WebSocket connections closed, by close code and by who closed them (server or client)",
            labelled(stats.closed.items()),
            ("code", "by"),
        ),
        Reading("chatroom_rooms", "gauge", "Rooms with a connection in this process", {(): rooms}),
        Reading("chatroom_messages_received", "counter", "Frames received from clients", {(): stats.received}),
        Reading("chatroom_messages_stored", "counter", "Chat messages sent here and stored", {(): stats.stored}),
        Reading(
            "chatroom_messages_refused",
            "counter",
            "Client events refused with an error event, by its code",
            labelled((str(code), count) for code, count in stats.refused.items()),
            ("code",),
        ),
        Reading(
            "chatroom_messages_delivered",
            "counter",
            "Chat messages handed to connections by the rooms, once for each connection",
            {(): stats.delivered},
        ),
        Reading("chatroom_frames_written", "counter", "Frames handed to connections", {(): stats.frames}),
        Reading("chatroom_bytes_written", "counter", "Payload bytes of those frames", {(): stats.bytes}),
        Reading(
            "chatroom_slow_readers_dropped",
            "counter",
            "Connections closed with 1013 for falling too far behind (queue_full) or not reading (stalled)",
            {
                ("queue_full",): stats.slow_readers - stats.stalled_readers,
                ("stalled",): stats.stalled_readers,
            },
            ("why",),
        ),
        Reading(
            "chatroom_pacing_stalls",
            "counter",
            "Times a sender was held back until its room or the backend kept up",
            {(): stats.pacing_stalls},
        ),
        Reading(
            "chatroom_pacing_stall_seconds",
            "counter",
            "Seconds senders were held back, in all",
            {(): stats.pacing_seconds},
        ),
        Reading("chatroom_sign_ins", "counter", "Successful sign-ins", {(): stats.sign_ins}),
        Reading(
            "chatroom_sign_in_failures",
            "counter",
            "Refused sign-ins, by the API's error (wrong, throttled, busy, bad_request, ...)",
            labelled(stats.sign_in_failures.items()),
            ("error",),
        ),
    ]


def latency_reading(stats: Stats) -> HistogramReading:
    return HistogramReading(
        "chatroom_backend_seconds",
        "Latency of backend operations: store (a message, until stored), read (history), presence (names)",
        "operation",
        {
            operation: (list(stats.latency[operation].counts), stats.latency[operation].total)
            for operation in OPERATIONS
        },
    )


class StatsCollector(Collector):
    """One process's metrics, read from its hub's `Stats` at each scrape."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def collect(self) -> Iterator[Metric]:
        stats = self.hub.stats
        for reading in readings(stats, len(self.hub.rooms)):
            family: CounterMetricFamily | GaugeMetricFamily
            if reading.kind == "counter":
                family = CounterMetricFamily(reading.name, reading.documentation, labels=reading.labels)
            else:
                family = GaugeMetricFamily(reading.name, reading.documentation, labels=reading.labels)
            for labels, value in reading.values.items():
                family.add_metric(labels, value)
            yield family
        latency = latency_reading(stats)
        histogram = HistogramMetricFamily(latency.name, latency.documentation, labels=(latency.label,))
        for operation, (counts, total) in latency.buckets.items():
            histogram.add_metric([operation], _cumulative(counts), total)
        yield histogram


def _cumulative(counts: Sequence[int]) -> list[tuple[str, float]]:
    bounds = [*(str(bound) for bound in LATENCY_BOUNDS), "+Inf"]  # as the library writes them: 0.5, 1.0
    buckets, running = [], 0
    for bound, count in zip(bounds, counts, strict=True):
        running += count
        buckets.append((bound, float(running)))
    return buckets


class BulkHistogram(Histogram):
    """A histogram that takes many observations at once, already counted in buckets."""

    def add(self, counts: Sequence[int], total: float) -> None:
        # The library's own per-bucket values (not cumulative), as `observe` increments them.
        for bucket, count in zip(self._buckets, counts, strict=True):
            if count:
                bucket.inc(count)
        self._sum.inc(total)


class Synced:
    """The library's metrics of this process in multiprocess mode, fed from `Stats` by `sync`."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self._counters: dict[str, Counter] = {}
        self._gauges: dict[str, Gauge] = {}
        self._last: dict[tuple[str, Labels], float] = {}
        latency = latency_reading(hub.stats)
        self._histogram = BulkHistogram(
            latency.name, latency.documentation, [latency.label], registry=None, buckets=LATENCY_BOUNDS
        )
        self._last_latency: dict[str, tuple[list[int], float]] = {}

    def sync(self) -> None:
        """Hand the library what was counted since the last time."""
        for reading in readings(self.hub.stats, len(self.hub.rooms)):
            if reading.kind == "gauge":
                gauge = self._gauges.get(reading.name)
                if gauge is None:
                    # "livesum": the processes that run now, added up (those that stopped say so
                    # as they stop; see `forget`).
                    gauge = Gauge(
                        reading.name, reading.documentation, reading.labels, registry=None, multiprocess_mode="livesum"
                    )
                    self._gauges[reading.name] = gauge
                for labels, value in reading.values.items():
                    (gauge.labels(*labels) if labels else gauge).set(value)
                continue
            counter = self._counters.get(reading.name)
            if counter is None:
                counter = Counter(reading.name, reading.documentation, reading.labels, registry=None)
                self._counters[reading.name] = counter
            for labels, value in reading.values.items():
                delta = value - self._last.get((reading.name, labels), 0)
                if delta:
                    (counter.labels(*labels) if labels else counter).inc(delta)
                    self._last[reading.name, labels] = value
        for operation, (counts, total) in latency_reading(self.hub.stats).buckets.items():
            last_counts, last_total = self._last_latency.get(operation, ([0] * len(counts), 0.0))
            if counts != last_counts:
                added = [now - before for now, before in zip(counts, last_counts, strict=True)]
                self._histogram.labels(operation).add(added, total - last_total)
                self._last_latency[operation] = (counts, total)

    @staticmethod
    def forget() -> None:
        """This process stops: its gauges no longer count (its counters do, for good)."""
        mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


_LIVE_GAUGE_FILE = re.compile(r"gauge_live\w+?_(\d+)\.db")


def forget_dead_processes(folder: Path) -> None:
    """Drop the gauges of processes that are gone without saying so (killed): a worker's
    connections must not count as open after it died."""
    for path in folder.glob("gauge_live*_*.db"):
        match = _LIVE_GAUGE_FILE.fullmatch(path.name)
        if match is not None and not _alive(int(match[1])):
            mark_process_dead(int(match[1]), str(folder))  # type: ignore[no-untyped-call]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


class Metrics:
    """The `/metrics` endpoint and, in multiprocess mode, the task that feeds it; `start` and
    `stop` belong to the app's lifespan."""

    def __init__(self, operators: Operators) -> None:
        self.operators = operators
        self._hub: Hub | None = None
        self._registry: CollectorRegistry | None = None
        self._synced: Synced | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def folder(self) -> Path | None:
        """The multiprocess mode's folder, if this process is one of several."""
        folder = os.environ.get(MULTIPROCESS_DIR)
        # The library picks its mode once, as it is imported: set later, the folder is not used.
        return Path(folder) if folder and getattr(values.ValueClass, "_multiprocess", False) else None

    def start(self, hub: Hub) -> None:
        self._hub = hub
        if self.folder is None:
            self._registry = CollectorRegistry(auto_describe=False)
            self._registry.register(StatsCollector(hub))
            ProcessCollector(registry=self._registry)
            return
        self._synced = Synced(hub)
        self._synced.sync()
        self._task = asyncio.get_running_loop().create_task(self._sync_forever(), name="chatroom metrics")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._synced is not None:
            self._synced.sync()  # what was counted since the last hand-over counts too
            self._synced.forget()
            self._synced = None

    async def _sync_forever(self) -> None:
        assert self._synced is not None
        while True:
            await asyncio.sleep(SYNC_INTERVAL)
            self._synced.sync()

    async def endpoint(self, request: Request) -> Response:
        """`GET /metrics`, in Prometheus's text format, to the addresses of CHAT_METRICS_ALLOW."""
        if not self.operators.admit(request.client.host if request.client else None, request.headers):
            return PlainTextResponse(NOT_ALLOWED, status_code=403, headers=_NO_STORE)
        if self._synced is not None:
            self._synced.sync()  # this process's own counts as of now
            folder = self.folder
            assert folder is not None
            body = await run_in_threadpool(_every_process, folder)
        else:
            assert self._registry is not None, "the app has not started"
            body = generate_latest(self._registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST, headers=_NO_STORE)


_NO_STORE = {"cache-control": "no-store"}


def _every_process(folder: Path) -> bytes:
    forget_dead_processes(folder)
    registry = CollectorRegistry(auto_describe=False)
    MultiProcessCollector(registry, str(folder))  # type: ignore[no-untyped-call]
    return generate_latest(registry)
