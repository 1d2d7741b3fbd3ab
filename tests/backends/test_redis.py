"""The Redis backend against a real redis-server: one order for every process, grouped writes,
shared presence, and two apps that behave as one chat."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from app.backends.base import BackendError
from app.backends.redis import RedisBackend
from app.backends.redis import retention as redis_retention
from app.backends.redis.commands import WRITE
from app.backends.redis.reader import BLOCK_MS
from app.backends.redis.retention import Retention
from app.core.messages import Message
from app.core.protocol import CloseCode, join_event, leave_event
from app.settings import Settings
from app.web.accounts import PLAIN_COOKIE
from tests.support.redis_faults import reconnection_held, start_heartbeats, stop_heartbeats, writes_held
from tests.support.redis_server import RedisServer, running_redis
from tests.support.subscriber import Delivered
from tests.support.web import Event, Events, another_browser, app_with, chat

pytestmark = pytest.mark.anyio


def online(backend: RedisBackend, room: str) -> list[str]:
    """Who `backend`'s process has online in `room`, by name."""
    return [person.name for person in backend.presence.online(room)]


@pytest.fixture
async def open_backend(redis_url: str) -> AsyncIterator[Callable[..., Any]]:
    """Start Redis backends (as separate processes would) on the test's empty Redis; all stopped at the end."""
    started: list[RedisBackend] = []

    async def start(**overrides: Any) -> tuple[RedisBackend, Delivered]:
        overrides.setdefault("presence_ttl", 1.0)
        backend = RedisBackend(redis_url, Settings(backend_url=redis_url, **overrides))
        delivered = Delivered()
        await backend.start(delivered)
        started.append(backend)
        return backend, delivered

    yield start
    for backend in started:
        await backend.stop()  # those a test did not stop itself


async def test_every_process_gets_every_message_once_in_one_order_with_integer_ids(
    open_backend: Callable[..., Any],
) -> None:
    (first, got_first), (second, got_second) = await open_backend(), await open_backend()
    assert first.epoch == second.epoch  # created once, by whoever came first
    for backend in (first, second):
        assert await backend.subscribe("den") == []
    stored = []
    for number in range(60):
        stored.append((first if number % 2 else second).publish("den", "ann", f"m{number}"))
        if number % 7 == 0:
            await asyncio.sleep(0)
    results = [await future for future in stored]
    for delivered in (got_first, got_second):
        await delivered.wait_for(lambda d: len(d.messages()) == 60)
    assert [message.id for message in got_first.messages()] == list(range(1, 61))
    assert got_first.messages() == got_second.messages()  # the same ids, texts and bytes
    assert sorted(results, key=lambda message: message.id) == got_first.messages()
    for parity in (0, 1):  # each process's messages keep the order it published them in
        ids = [message.id for number, message in enumerate(results) if number % 2 == parity]
        assert ids == sorted(ids)


async def test_a_message_read_back_is_its_wire_form_byte_for_byte(open_backend: Callable[..., Any]) -> None:
    backend, delivered = await open_backend()
    await backend.subscribe("den")
    text = 'quote " backslash \\ newline \n emoji \U0001f600 nul \x00 </script>'
    stored = await backend.publish("den", "Ann", text)
    await delivered.wait_for(lambda d: len(d.messages()) == 1)
    (message,) = delivered.messages()
    reference = Message("den", stored.id, "Ann", text, stored.ts)
    assert message.json == stored.json == reference.json
    assert (message.name, message.text, message.ts) == ("Ann", text, stored.ts)


async def test_writes_of_one_loop_turn_go_to_redis_together(
    open_backend: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    backend, delivered = await open_backend()
    await backend.subscribe("den")
    round_trips: list[int] = []
    run_many = WRITE.run_many

    async def counted(redis: Any, calls: list[list[Any]], raise_on_error: bool = True) -> Any:
        round_trips.append(len(calls))
        return await run_many(redis, calls, raise_on_error)

    monkeypatch.setattr(WRITE, "run_many", counted)
    backend.publish("den", "ann", "first")
    await asyncio.sleep(0)  # the first batch is on its way: the rest gather behind it
    async with asyncio.timeout(10):
        await asyncio.gather(*[backend.publish("den", "ann", f"m{number}") for number in range(1000)])
    assert len(round_trips) == 2  # the first message alone, the rest together while it was out
    assert round_trips[1] == 5  # in scripts of OPS_PER_SCRIPT (200) operations, one pipeline
    await delivered.wait_for(lambda d: len(d.messages()) == 1001)
    assert [message.text for message in delivered.messages()][1:] == [f"m{number}" for number in range(1000)]


async def test_publishing_faster_than_redis_stores_makes_the_backend_backlogged(
    open_backend: Callable[..., Any],
) -> None:
    backend, _ = await open_backend(queue_bytes=4096)
    futures = [backend.publish("den", "ann", "x" * 100) for _ in range(40)]
    assert backend.backlogged  # about 4 KiB waits: a quarter of queue_bytes is the limit
    async with asyncio.timeout(5):
        await backend.pace()
    assert not backend.backlogged
    await asyncio.gather(*futures)


async def test_a_room_subscribed_while_the_reader_waits_is_read_at_once(open_backend: Callable[..., Any]) -> None:
    (reader, delivered), (writer, _) = await open_backend(), await open_backend()
    await reader.subscribe("one")
    async with asyncio.timeout(5):
        # Until the reader is blocked in XREAD on room "one" alone; nothing announces that.
        while not reader.reader.blocked:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    await reader.subscribe("two")
    await writer.publish("two", "bob", "hello")
    started = asyncio.get_running_loop().time()
    await delivered.wait_for(lambda d: len(d.messages("two")) == 1, timeout=BLOCK_MS / 1000 / 2)
    assert asyncio.get_running_loop().time() - started < 1


async def test_the_reader_stops_even_when_a_cancelled_read_returns_as_if_it_had_timed_out(
    open_backend: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """redis-py returns an empty reply when a blocked XREAD is cancelled just as its block ends."""
    blocked = asyncio.Event()

    async def read_that_swallows_cancellation(self: Any, *args: Any, **kwargs: Any) -> list[Any]:
        blocked.set()
        try:
            await asyncio.get_running_loop().create_future()
        except asyncio.CancelledError:
            return []
        raise AssertionError("unreachable")

    backend, _ = await open_backend()
    await backend.subscribe("den")
    monkeypatch.setattr(redis.asyncio.Redis, "xread", read_that_swallows_cancellation)
    await backend.redis.client_kill_filter(_id=str(backend.reader.connection_id))  # its next read is one of those
    async with asyncio.timeout(10):
        await blocked.wait()
        await backend.stop()


async def test_history_and_since_read_the_stream(open_backend: Callable[..., Any]) -> None:
    backend, _ = await open_backend()
    for number in range(30):
        await backend.publish("den", "ann", f"m{number}")
    page, more = await backend.history("den", 11, 5)
    assert [message.id for message in page] == [6, 7, 8, 9, 10]
    assert more
    page, more = await backend.history("den", 3, 5)
    assert [message.id for message in page] == [1, 2]
    assert not more
    newer, gap = await backend.since("den", 20, 30, 100)
    assert [message.id for message in newer] == list(range(21, 31))
    assert not gap
    newer, gap = await backend.since("den", 20, 30, 4)
    assert [message.id for message in newer] == [27, 28, 29, 30]
    assert gap


async def test_trimming_keeps_at_least_the_retained_messages_and_resuming_from_before_says_gap(
    open_backend: Callable[..., Any],
) -> None:
    backend, _ = await open_backend(retention_messages=100)
    await asyncio.gather(*[backend.publish("den", "ann", f"m{number}") for number in range(1000)])
    kept, _ = await backend.history("den", None, 100)
    assert [message.id for message in kept] == list(range(901, 1001))
    assert 100 <= await backend.redis.xlen(b"chatroom:messages:den") < 300  # MAXLEN ~ trims whole nodes
    _, gap = await backend.since("den", 10, 1000, 1000)
    assert gap  # messages 11 and on were trimmed: the client is told


async def test_messages_older_than_the_retention_age_go_and_ids_keep_increasing(
    open_backend: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_retention, "RETENTION_CHUNK", 100)  # several scripts per room
    backend, _ = await open_backend(retention_days=1)
    attic = await asyncio.gather(*[backend.publish("attic", "ann", f"a{number}") for number in range(30)])
    old = await asyncio.gather(*[backend.publish("den", "ann", f"old {number}") for number in range(250)])
    # Messages stamped in the same millisecond as the last old one are just as old.
    while (edge := await backend.publish("den", "ann", "edge")).ts == old[-1].ts:
        old.append(edge)
    new = [edge] + [await backend.publish("den", "ann", f"new {number}") for number in range(3)]
    a_day = 86_400_000
    assert await backend.enforce_retention(now=attic[0].ts + a_day) == 0  # the first is a day old, not older
    assert await backend.enforce_retention(now=edge.ts + a_day) == len(attic) + len(old)
    kept, more = await backend.history("den", None, 100)
    assert kept == new
    assert not more
    _, gap = await backend.since("den", 0, new[-1].id, 1000)
    assert gap  # a client that had seen nothing is told that the start is gone
    assert await backend.history("attic", None, 100) == ([], False)
    assert (await backend.publish("attic", "ann", "back")).id == len(attic) + 1
    assert await backend.enforce_retention(now=edge.ts + a_day) == 0


async def test_one_process_of_many_enforces_the_retention_age_by_itself(
    open_backend: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    turns: asyncio.Queue[tuple[Retention, bool]] = asyncio.Queue()
    passes: asyncio.Queue[tuple[Retention, int]] = asyncio.Queue()
    take_turn, enforce = Retention.take_turn, Retention.enforce

    async def observed_turn(self: Retention) -> bool:
        taken = await take_turn(self)
        await turns.put((self, taken))
        return taken

    async def observed_pass(self: Retention, now: int | None = None) -> int:
        deleted = await enforce(self, now)
        await passes.put((self, deleted))
        return deleted

    monkeypatch.setattr(Retention, "take_turn", observed_turn)
    monkeypatch.setattr(Retention, "enforce", observed_pass)
    writer, _ = await open_backend()
    for number in range(5):
        await writer.publish("den", "ann", f"m{number}")
    tiny = 1 / 86_400_000  # a millisecond: whatever was published before now is too old
    first, _ = await open_backend(retention_days=tiny)  # its first turn comes as it starts
    assert await asyncio.wait_for(turns.get(), timeout=5) == (first.retention, True)
    assert await asyncio.wait_for(passes.get(), timeout=5) == (first.retention, 5)
    assert await writer.history("den", None, 100) == ([], False)
    second, _ = await open_backend(retention_days=tiny)
    assert await asyncio.wait_for(turns.get(), timeout=5) == (second.retention, False)  # the first has this interval
    await second.stop()
    assert passes.empty()


async def test_names_are_unique_across_processes_and_free_again_once_released(
    open_backend: Callable[..., Any],
) -> None:
    (first, _), (second, got_second) = await open_backend(), await open_backend()
    for backend in (first, second):
        await backend.subscribe("den")
    assert await first.presence.claim("den", "ann", "Ann")
    assert not await second.presence.claim("den", "ann", "ann")
    assert not await first.presence.claim("den", "ann", "ANN")
    assert await second.presence.claim("other", "ann", "ann")  # another room
    first.presence.joined("den", "ann", "Ann", guest=True)
    first.presence.left("den", "ann", "Ann", guest=True)
    # A release reaches Redis when the process next writes; its leave, read back, says it has.
    await got_second.wait_for(lambda d: leave_event("Ann") in d.presence("den"))
    assert await second.presence.claim("den", "ann", "ann")


async def test_a_token_takes_a_name_over_from_another_process_and_nobody_else_notices(
    open_backend: Callable[..., Any],
) -> None:
    (first, got_first), (second, got_second), (third, _) = [await open_backend() for _ in range(3)]
    for backend in (first, second, third):
        await backend.subscribe("den")
    assert await first.presence.claim("den", "ann", "Ann", "first")
    assert await third.presence.claim("den", "bob", "bob")  # no token: nobody may take it over
    first.presence.joined("den", "ann", "Ann", guest=True)
    third.presence.joined("den", "bob", "bob", guest=True)
    await got_second.wait_for(lambda d: len(d.presence("den")) == 2)
    for wrong in ("guessed", "", "first "):
        assert await second.presence.take_over("den", "ann", wrong, "second") is None
    assert await second.presence.take_over("den", "bob", "", "second") is None
    assert await second.presence.take_over("den", "nobody", "first", "second") is None

    assert await second.presence.take_over("den", "ann", "first", "second") == "Ann"  # as the others know it
    await got_first.wait_for(lambda d: d.evicted == [("den", "ann")])
    assert not first.presence.holds("den", "ann")
    assert online(second, "den") == online(third, "den") == ["Ann", "bob"]
    assert await first.presence.take_over("den", "ann", "first", "again") is None  # a token is good once
    assert await third.presence.take_over("den", "ann", "second", "third") == "Ann"
    await got_second.wait_for(lambda d: d.evicted == [("den", "ann")])
    third.presence.left("den", "ann", "Ann", guest=True)
    await got_first.wait_for(lambda d: leave_event("Ann") in d.presence("den"))
    # Only the join and the leave: the moves were no news for anyone.
    for got in (got_first, got_second):
        joins, after = got.presence("den")[:2], got.presence("den")[2:]
        assert sorted(joins) == sorted([join_event("Ann", guest=True), join_event("bob", guest=True)])
        assert after == [leave_event("Ann")]
    assert await first.presence.claim("den", "ann", "ann")  # free again


async def test_a_name_taken_over_from_a_process_whose_holder_left_meanwhile_is_back_there(
    open_backend: Callable[..., Any],
) -> None:
    (first, got_first), (second, _) = await open_backend(), await open_backend()
    for backend in (first, second):
        await backend.subscribe("den")
    assert await first.presence.claim("den", "ann", "ann", "first")
    first.presence.joined("den", "ann", "ann", guest=True)
    # The old connection ends here as the name is taken over: its leave is told here first,
    # and its release reaches Redis after the take-over.
    with writes_held(first):
        first.presence.left("den", "ann", "ann", guest=True)
        assert await second.presence.take_over("den", "ann", "first", "second") == "ann"
    await got_first.wait_for(lambda d: d.evicted == [("den", "ann")])
    await got_first.wait_for(lambda d: len(d.presence("den")) == 3)
    assert got_first.presence("den") == [
        join_event("ann", guest=True),
        leave_event("ann"),
        join_event("ann", guest=True),
    ]
    assert online(first, "den") == ["ann"]
    assert not await first.presence.claim("den", "ann", "ann")  # the release did not let the moved name go


async def test_joins_and_leaves_reach_the_other_processes_and_their_online_lists(
    open_backend: Callable[..., Any],
) -> None:
    (first, got_first), (second, got_second) = await open_backend(), await open_backend()
    for backend in (first, second):
        await backend.subscribe("den")
    for backend, key, name in ((first, "ann", "ann"), (second, "bob", "bob"), (first, "cy", "cy")):
        assert await backend.presence.claim("den", key, name)
        backend.presence.joined("den", name, name, guest=True)
    await got_second.wait_for(lambda d: len(d.presence("den")) == 3)
    assert got_second.presence("den") == [
        join_event("ann", guest=True),
        join_event("bob", guest=True),
        join_event("cy", guest=True),
    ]
    assert online(second, "den") == ["ann", "bob", "cy"]
    first.presence.left("den", "ann", "ann", guest=True)
    await got_second.wait_for(lambda d: len(d.presence("den")) == 4)
    assert got_second.presence("den")[-1] == leave_event("ann")
    assert online(second, "den") == ["bob", "cy"]
    await got_first.wait_for(lambda d: len(d.presence("den")) == 4)
    assert online(first, "den") == ["cy", "bob"] or online(first, "den") == ["bob", "cy"]
    (third, _) = await open_backend()
    await third.subscribe("den")
    assert online(third, "den") == ["bob", "cy"]  # in the order they came


async def test_a_process_that_stops_says_goodbye_for_its_users(open_backend: Callable[..., Any]) -> None:
    (leaving, _), (staying, delivered) = await open_backend(), await open_backend()
    for backend in (leaving, staying):
        await backend.subscribe("den")
    assert await leaving.presence.claim("den", "ann", "ann")
    await delivered.wait_for(lambda d: d.presence("den") == [join_event("ann", guest=True)])
    await leaving.stop()
    await delivered.wait_for(lambda d: d.presence("den") == [join_event("ann", guest=True), leave_event("ann")])
    assert online(staying, "den") == []
    assert await staying.presence.claim("den", "ann", "ann")


async def test_a_process_whose_heartbeats_stop_has_its_users_leave(open_backend: Callable[..., Any]) -> None:
    (silent, _), (watching, delivered) = await open_backend(), await open_backend()
    for backend in (silent, watching):
        await backend.subscribe("den")
    assert await silent.presence.claim("den", "ann", "ann")
    await stop_heartbeats(silent)  # as if the process had died: no more heartbeats, no goodbye
    started = asyncio.get_running_loop().time()
    await delivered.wait_for(lambda d: leave_event("ann") in d.presence("den"), timeout=5)
    assert asyncio.get_running_loop().time() - started < 1.0 + 0.25 + 1  # ttl + a beat, and some slack
    assert online(watching, "den") == []
    assert await watching.presence.claim("den", "ann", "ann")


async def test_a_process_taken_for_dead_claims_its_names_again(open_backend: Callable[..., Any]) -> None:
    (paused, own), (watching, delivered) = await open_backend(), await open_backend()
    for backend in (paused, watching):
        await backend.subscribe("den")
    assert await paused.presence.claim("den", "ann", "ann")
    paused.presence.joined("den", "ann", "ann", guest=True)
    await stop_heartbeats(paused)
    await delivered.wait_for(lambda d: leave_event("ann") in d.presence("den"))
    start_heartbeats(paused)  # it wakes up again
    await delivered.wait_for(lambda d: d.presence("den")[-1:] == [join_event("ann", guest=True)])
    assert online(watching, "den") == ["ann"]
    assert own.presence("den") == [join_event("ann", guest=True)]  # its own clients never saw ann leave
    assert not await watching.presence.claim("den", "ann", "ann")


async def test_names_claimed_again_after_a_sweep_keep_their_token(open_backend: Callable[..., Any]) -> None:
    """A process taken for dead claims its names again with the tokens of the connections
    holding them: their clients' newer connections can still take them over elsewhere."""
    (paused, _), (watching, delivered) = await open_backend(), await open_backend()
    for backend in (paused, watching):
        await backend.subscribe("den")
    assert await paused.presence.claim("den", "ann", "ann", "first")
    assert await paused.presence.claim("den", "bob", "bob", "bob's")
    paused.presence.retoken("den", "bob", "bob's newer")  # handed over within the process
    for name in ("ann", "bob"):
        paused.presence.joined("den", name, name, guest=True)
    await stop_heartbeats(paused)
    await delivered.wait_for(lambda d: d.presence("den")[-2:] == [leave_event("ann"), leave_event("bob")])
    start_heartbeats(paused)
    joins = [join_event("ann", guest=True), join_event("bob", guest=True)]
    await delivered.wait_for(lambda d: d.presence("den")[-2:] == joins)
    assert await watching.presence.take_over("den", "ann", "first", "second") == "ann"
    assert await watching.presence.take_over("den", "bob", "bob's", "second") is None  # that one is spent
    assert await watching.presence.take_over("den", "bob", "bob's newer", "second") == "bob"


async def test_a_take_over_while_the_old_process_reconnects_to_redis_closes_its_connection_there(
    open_backend: Callable[..., Any],
) -> None:
    (first, got_first), (second, _) = await open_backend(), await open_backend()
    for backend in (first, second):
        await backend.subscribe("den")
    for backend, key, token in ((first, "ann", "ann's"), (second, "bob", "bob's")):
        assert await backend.presence.claim("den", key, key, token)
        backend.presence.joined("den", key, key, guest=True)
    await got_first.wait_for(lambda d: len(d.presence("den")) == 2)
    async with reconnection_held(first):
        assert await second.presence.take_over("den", "ann", "ann's", "newer") == "ann"
    await got_first.wait_for(lambda d: d.evicted == [("den", "ann")])
    assert not first.presence.holds("den", "ann")
    assert online(first, "den") == ["ann", "bob"]  # ann is still online, elsewhere
    # No leave for ann, who is still online: the joins, then only bob's leave.
    first.presence.left("den", "bob", "bob", guest=True)
    await got_first.wait_for(lambda d: len(d.presence("den")) == 3)
    joins = [join_event("ann", guest=True), join_event("bob", guest=True)]
    assert got_first.presence("den") == [*joins, leave_event("bob")]


async def test_a_claim_when_redis_is_gone_raises_backend_error(tmp_path: Path) -> None:
    with running_redis(tmp_path / "redis") as server:
        settings = Settings(backend_url=server.url)
        backend = RedisBackend(server.url, settings)
        await backend.start(Delivered())
        await backend.subscribe("den")
        server.kill()
        with pytest.raises(BackendError):
            await backend.presence.claim("den", "ann", "ann")
        with pytest.raises(BackendError):
            await backend.publish("den", "ann", "hello")
        with pytest.raises(BackendError):
            await backend.history("den", None, 10)
        assert await backend.check() is not None
        await backend.stop()


# Redis losing data: the processes agree on a new epoch and go on in it.

RECOVERY = 30  # seconds from Redis answering again to a conversation across processes


class Talker:
    """The clients of one process, as its hub would treat them: they say something every few
    milliseconds in the room while the process reads it and, when a new epoch begins, come
    back and read it again. Keeps what became of each message: stored, or refused."""

    def __init__(self, backend: RedisBackend, delivered: Delivered, name: str) -> None:
        self.backend, self.delivered, self.name = backend, delivered, name
        self.outcomes: list[Message | BackendError] = []
        self.task = asyncio.get_running_loop().create_task(self._talk())

    async def _talk(self) -> None:
        for number in itertools.count():
            if not self.backend.subscribed("den"):  # forgotten at a new epoch: back in it
                try:
                    await self.backend.subscribe("den")
                except BackendError:
                    await asyncio.sleep(0.05)  # Redis is away: try again soon, as clients do
                    continue
            try:
                self.outcomes.append(await self.backend.publish("den", self.name, f"{self.name} {number}"))
            except BackendError as exc:
                self.outcomes.append(exc)
            await asyncio.sleep(0.01)  # how fast these clients talk

    def heard_from(self, other: Talker, count: int) -> bool:
        """Whether this process's clients heard `count` messages of the other's in the latest epoch."""
        latest = self.delivered.by_epoch("den")[-1]
        return len(self.delivered.epoch_changes) > 0 and sum(m.name == other.name for m in latest) >= count

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.wait([self.task])

    def check_nothing_vanished(self) -> None:
        """Every message was refused, or stored and delivered here once; no id twice in an epoch."""
        epochs = self.delivered.by_epoch("den")
        for messages in epochs:
            ids = [message.id for message in messages]
            assert ids == sorted(set(ids)), f"{self.name}: an id twice, or out of order, within an epoch"
        delivered = [message.json for messages in epochs for message in messages]
        for outcome in self.outcomes:
            if isinstance(outcome, Message):
                assert delivered.count(outcome.json) == 1, f"{self.name}: {outcome.text!r} stored, never echoed"


async def two_talkers(url: str) -> tuple[Talker, Talker]:
    talkers = []
    for name in ("ann", "bob"):
        backend = RedisBackend(url, Settings(backend_url=url, presence_ttl=1.0))
        delivered = Delivered()
        await backend.start(delivered)
        await backend.subscribe("den")
        talkers.append(Talker(backend, delivered, name))
    first, second = talkers
    await first.delivered.wait_for(lambda d: any(m.name == "bob" for m in d.messages()))
    await second.delivered.wait_for(lambda d: any(m.name == "ann" for m in d.messages()))
    return first, second


async def recovered(first: Talker, second: Talker) -> float:
    """Seconds until the two talk to each other again in a new epoch, both healthy."""
    started = time.monotonic()
    await first.delivered.wait_for(lambda d: first.heard_from(second, 5), timeout=RECOVERY)
    await second.delivered.wait_for(lambda d: second.heard_from(first, 5), timeout=RECOVERY)
    assert await first.backend.check() is None
    assert await second.backend.check() is None
    return time.monotonic() - started


async def finish(first: Talker, second: Talker, old_epoch: str) -> None:
    for talker in (first, second):
        await talker.stop()
    assert first.backend.epoch == second.backend.epoch != old_epoch
    for talker in (first, second):
        talker.check_nothing_vanished()
        assert any(isinstance(outcome, BackendError) for outcome in talker.outcomes)  # told, not dropped
        # Nothing stored in the new epoch is lost: it is all in the history, as delivered.
        latest = talker.delivered.by_epoch("den")[-1]
        history, _ = await talker.backend.history("den", None, 1000)
        assert [m.json for m in history if m.id >= latest[0].id] == [m.json for m in latest]


async def test_a_redis_that_comes_back_empty_heals_into_a_new_epoch(tmp_path: Path) -> None:
    """kill -9 of a Redis without persistence, mid-conversation: it comes back empty, and would
    give out ids the processes delivered already. They agree on a new epoch and talk on."""
    async with contextlib.AsyncExitStack() as stack:
        server = stack.enter_context(running_redis(tmp_path / "redis"))
        first, second = await two_talkers(server.url)
        stack.push_async_callback(first.backend.stop)
        stack.push_async_callback(second.backend.stop)
        old_epoch = first.backend.epoch
        server.kill()
        server.start()  # EPHEMERAL: nothing on disk, so it comes back empty
        seconds = await recovered(first, second)
        print(f"conversation across two processes again {seconds:.2f} s after Redis answered")
        await finish(first, second, old_epoch)
        history, _ = await first.backend.history("den", None, 1000)
        assert history[0].id == 1  # ids start again, in another epoch


async def test_a_redis_restarted_from_an_older_snapshot_heals_into_a_new_epoch(tmp_path: Path) -> None:
    """As after a failover to a replica that was behind, or a restore from a backup: the
    processes delivered ids that Redis has no more, or has for other messages."""
    async with contextlib.AsyncExitStack() as stack:
        server = stack.enter_context(running_redis(tmp_path / "redis"))
        first, second = await two_talkers(server.url)
        stack.push_async_callback(first.backend.stop)
        stack.push_async_callback(second.backend.stop)
        old_epoch = first.backend.epoch
        await first.backend.redis.save()  # the snapshot (dump.rdb), then more talk
        at_snapshot = len(first.delivered.messages())
        await first.delivered.wait_for(lambda d: len(d.messages()) >= at_snapshot + 20)
        server.kill()
        server.start()  # from the snapshot: older than what everyone saw
        seconds = await recovered(first, second)
        print(f"conversation across two processes again {seconds:.2f} s after Redis answered")
        await finish(first, second, old_epoch)
        kept = first.delivered.by_epoch("den")[0][:at_snapshot]
        restored, _ = await first.backend.history("den", kept[-1].id + 1, 1000)
        assert [m.json for m in restored][-len(kept) :] == [m.json for m in kept]  # the snapshot's history


async def test_a_write_that_finds_a_room_gone_back_in_time_starts_a_new_epoch(
    open_backend: Callable[..., Any],
) -> None:
    """Found by a write, with no reconnection to catch up: the id Redis would give was given out."""
    (first, got_first), (second, got_second) = await open_backend(), await open_backend()
    for backend in (first, second):
        await backend.subscribe("den")
    for number in range(5):
        await first.publish("den", "ann", f"m{number}")
    await got_second.wait_for(lambda d: len(d.messages()) == 5)
    old_epoch = first.epoch
    # The room as an older copy of Redis has it: messages 1 and 2.
    await first.redis.xdel(b"chatroom:messages:den", b"3-0", b"4-0", b"5-0")
    await first.redis.execute_command("XSETID", b"chatroom:messages:den", b"2-0")
    await first.redis.hset(b"chatroom:ids", b"den", b"2")
    with pytest.raises(BackendError):
        await second.publish("den", "bob", "would be 3 again")
    for got in (got_first, got_second):  # the second found out; the first, when told by Redis
        await got.wait_for(lambda d: len(d.epoch_changes) == 1)
    assert first.epoch == second.epoch != old_epoch
    for backend in (first, second):
        assert not backend.subscribed("den")  # read afresh, in the new epoch
        assert [m.id for m in await backend.subscribe("den")] == [1, 2]  # what Redis has: its history
    stored = await second.publish("den", "bob", "in the new epoch")
    assert stored.id == 3  # the counter goes on from what Redis has, in another epoch
    for got in (got_first, got_second):
        await got.wait_for(lambda d: d.by_epoch("den")[-1] == [stored])


async def test_a_reconnection_that_finds_the_end_of_a_room_rewritten_starts_a_new_epoch(
    open_backend: Callable[..., Any],
) -> None:
    """Redis came back with older data, and a process that had seen less of the room wrote
    over its end before this one caught up: the last id is where it was, its messages are others."""
    first, got_first = await open_backend()
    await first.subscribe("den")
    for number in range(5):
        await first.publish("den", "ann", f"m{number}")
    await got_first.wait_for(lambda d: len(d.messages()) == 5)
    async with reconnection_held(first):
        await first.redis.xdel(b"chatroom:messages:den", b"4-0", b"5-0")  # the older copy has 1 to 3
        await first.redis.execute_command("XSETID", b"chatroom:messages:den", b"3-0")
        await first.redis.hset(b"chatroom:ids", b"den", b"3")
        second, got_second = await open_backend()  # it has seen only those
        await second.subscribe("den")
        rewritten = [await second.publish("den", "bob", f"other {number}") for number in (4, 5)]
        assert [message.id for message in rewritten] == [4, 5]
    await got_first.wait_for(lambda d: len(d.epoch_changes) == 1)
    assert got_first.by_epoch("den") == [got_first.messages()[:5], []]  # the others' 4 and 5 never came
    await got_second.wait_for(lambda d: len(d.epoch_changes) == 1)  # told by Redis, at its heartbeat
    assert first.epoch == second.epoch


async def test_a_process_that_only_reads_learns_of_a_new_epoch_from_the_first_message(
    open_backend: Callable[..., Any],
) -> None:
    """An operator deleted the epoch (docs/deployment.md, after restoring a backup) with the
    servers running: the first to write names a new one, and one that only reads does not hand
    its clients a message of the new epoch, but goes on in it at once, not at its next heartbeat."""
    (writer, got_writer), (reader, got) = await open_backend(), await open_backend(presence_ttl=60)
    for backend in (writer, reader):
        await backend.subscribe("den")
    await writer.publish("den", "ann", "before")
    await got.wait_for(lambda d: len(d.messages()) == 1)
    await writer.redis.delete(b"chatroom:epoch")
    with pytest.raises(BackendError):
        await writer.publish("den", "ann", "refused: Redis knows no epoch")
    await got_writer.wait_for(lambda d: len(d.epoch_changes) == 1)
    assert await writer.subscribe("den") == [Message.from_json("den", 1, got.messages()[0].json)]
    started = time.monotonic()
    stored = await writer.publish("den", "ann", "the new epoch's first")
    await got.wait_for(lambda d: len(d.epoch_changes) == 1)
    assert time.monotonic() - started < 60 / 4  # before its first heartbeat
    assert got.by_epoch("den") == [[got.messages()[0]], []]  # nothing of the new epoch, in the old
    assert reader.epoch == writer.epoch
    assert await reader.subscribe("den") == [got.messages()[0], stored]


async def test_a_new_epoch_lets_go_of_the_names_held_under_the_old_one_at_once(
    open_backend: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Even when it begins while a write is on its way, and nothing is written after it."""
    (first, got_first), (second, _) = await open_backend(presence_ttl=60), await open_backend(presence_ttl=60)
    for backend in (first, second):
        await backend.subscribe("den")
    assert await first.presence.claim("den", "cy", "cy", "cy's")
    run_many, on_its_way, arrives = WRITE.run_many, asyncio.Event(), asyncio.Event()

    async def slow(redis: Any, calls: list[list[Any]], raise_on_error: bool = True) -> Any:
        on_its_way.set()
        await arrives.wait()
        return await run_many(redis, calls, raise_on_error)

    monkeypatch.setattr(WRITE, "run_many", slow)
    published = first.publish("den", "ann", "on its way as the epoch ends")
    await on_its_way.wait()
    await first.redis.delete(b"chatroom:epoch")
    await first.heartbeat.beat()  # finds Redis without an epoch: names a new one, goes on in it
    assert len(got_first.epoch_changes) == 1
    with pytest.raises(BackendError):
        await published
    arrives.set()
    await first.writer.stop()  # until what it has to write is written
    assert await second.heartbeat.beat() is False  # and the second goes on in the new epoch too
    await second.subscribe("den")
    assert await second.presence.claim("den", "cy", "cy")  # let go by the first


# Two apps on one Redis, as two servers on two hosts would be.


@pytest.fixture
def two_apps(redis_url: str) -> Iterator[tuple[TestClient, TestClient]]:
    with (
        TestClient(app_with(backend_url=redis_url, presence_ttl=1.0)) as first,
        TestClient(app_with(backend_url=redis_url, presence_ttl=1.0)) as second,
    ):
        yield first, second


def test_a_reconnection_to_another_app_with_the_welcome_token_takes_the_name_over(
    two_apps: tuple[TestClient, TestClient],
) -> None:
    first, second = two_apps
    with chat(first, "name=bob") as bob, chat(first, "name=ann") as ann:
        assert bob.next() == {"type": "join", "name": "ann", "guest": True}
        guessed = secrets.token_urlsafe(16)
        with pytest.raises(WebSocketDisconnect) as refused, chat(second, "name=ann", token=guessed):
            pass
        assert refused.value.code == CloseCode.NAME_TAKEN
        with chat(second, "name=ANN", token=ann.welcome["token"]) as back:
            assert back.welcome["name"] == "ann"  # as the others know it
            assert back.welcome["online"] == ["bob", "ann"]
            with pytest.raises(WebSocketDisconnect) as replaced:
                ann.next()
            assert replaced.value.code == CloseCode.REPLACED
            back.say("back, on the second")
            assert bob.next() == back.next()  # the message: nobody left, nobody joined
            with chat(first, "name=ann", token=back.welcome["token"]) as again:  # and back to the first
                with pytest.raises(WebSocketDisconnect) as replaced:
                    back.next()
                assert replaced.value.code == CloseCode.REPLACED
                again.say("back on the first")
                assert bob.next() == again.next()
                # Taken over within the first, then from the second: the first told Redis the
                # newer token when it handed the name over locally.
                with (
                    chat(first, "name=ann", token=again.welcome["token"]) as local,
                    chat(second, "name=ann", token=local.welcome["token"]) as remote,
                ):
                    with pytest.raises(WebSocketDisconnect) as replaced:
                        local.next()
                    assert replaced.value.code == CloseCode.REPLACED
                    remote.say("and on the second again")
                    assert bob.next() == remote.next()


def test_two_apps_sharing_a_room_are_one_chat(two_apps: tuple[TestClient, TestClient]) -> None:
    first, second = two_apps
    with chat(first, "name=ann") as ann, chat(second, "name=bob") as bob, chat(first, "name=cy") as cy:
        assert ann.welcome["epoch"] == bob.welcome["epoch"]
        assert bob.welcome["online"] == ["ann", "bob"]
        assert cy.welcome["online"] == ["ann", "bob", "cy"]
        assert ann.next() == {"type": "join", "name": "bob", "guest": True}
        assert ann.next() == {"type": "join", "name": "cy", "guest": True}
        assert bob.next() == {"type": "join", "name": "cy", "guest": True}
        bob.say("from the second")
        ann.say("from the first")
        everyone = {"ann": ann, "bob": bob, "cy": cy}
        heard = {name: [events.next_of("message") for _ in range(2)] for name, events in everyone.items()}
        orders = {name: [(message["id"], message["text"]) for message in messages] for name, messages in heard.items()}
        assert orders["ann"] == orders["bob"] == orders["cy"]  # once each, in one order everywhere
        assert {text for _, text in orders["ann"]} == {"from the second", "from the first"}
        with pytest.raises(WebSocketDisconnect) as refused, chat(second, "name=ANN"):
            pass
        assert refused.value.code == CloseCode.NAME_TAKEN
    with chat(second, "name=dee") as dee:
        assert dee.welcome["online"] == ["dee"]  # everyone else left
        assert [message["text"] for message in dee.welcome["history"]][-2:] == [text for _, text in orders["ann"]]


def test_a_leave_on_one_app_reaches_the_other_and_frees_the_name(two_apps: tuple[TestClient, TestClient]) -> None:
    first, second = two_apps
    with chat(first, "name=ann") as ann:
        with chat(second, "name=bob"):
            assert ann.next() == {"type": "join", "name": "bob", "guest": True}
        assert ann.next() == {"type": "leave", "name": "bob"}
        with chat(first, "name=bob") as again:
            assert again.welcome["online"] == ["ann", "bob"]


def closed_after(events: Events) -> tuple[int, list[Event]]:
    """Read until the server closes the connection: its close code, and what came before."""
    seen: list[Event] = []
    while True:
        try:
            seen.append(events.next())
        except WebSocketDisconnect as closed:
            return closed.code, seen


@pytest.mark.parametrize("comes_back", ["empty", "from an older snapshot"])
def test_two_apps_whose_redis_lost_data_start_every_connection_afresh_in_a_new_epoch(
    comes_back: str, tmp_path: Path
) -> None:
    with (
        running_redis(tmp_path / "redis") as server,
        TestClient(app_with(backend_url=server.url, presence_ttl=1.0)) as first,
        TestClient(app_with(backend_url=server.url, presence_ttl=1.0)) as second,
    ):
        with chat(first, "name=ann") as ann, chat(second, "name=bob") as bob:
            assert ann.next() == {"type": "join", "name": "bob", "guest": True}
            heard: dict[str, list[Event]] = {"ann": [], "bob": []}
            for speaker, text in ((ann, "before"), (bob, "me too")):
                speaker.say(text)
                for name, events in (("ann", ann), ("bob", bob)):
                    heard[name].append(events.next_of("message"))
                if comes_back != "empty" and text == "before":
                    server.save()  # the snapshot it comes back from has only the first message
            assert heard["ann"] == heard["bob"]
            old = ann.welcome["epoch"]
            server.kill()
            ann.say("while Redis is gone")
            assert ann.next_of("error")["code"] == "not_stored"  # told, not dropped in silence
            server.start()  # it would give out ids the clients have seen again
            # Each app finds out by itself, and closes its connections: 1012, after what was queued.
            for events in (ann, bob):
                code, before = closed_after(events)
                assert code == CloseCode.SERVICE_RESTART
                assert [event for event in before if event["type"] == "message"] == []
        last = {name: messages[-1]["id"] for name, messages in heard.items()}
        tokens = {"ann": ann.welcome["token"], "bob": bob.welcome["token"]}
        # The clients come back, as they would after any restart, resuming with since and epoch.
        with (
            chat(first, f"name=ann&since={last['ann']}&epoch={old}", token=tokens["ann"]) as ann,
            chat(second, f"name=bob&since={last['bob']}&epoch={old}", token=tokens["bob"]) as bob,
        ):
            for events in (ann, bob):
                assert events.welcome["epoch"] != old
                assert events.welcome["gap"] is True  # the ids they have mean nothing here
                assert events.welcome["history"] == heard["ann"][: 0 if comes_back == "empty" else 1]  # what it kept
            assert ann.welcome["epoch"] == bob.welcome["epoch"]
            assert bob.welcome["online"] == ["ann", "bob"]
            assert ann.next() == {"type": "join", "name": "bob", "guest": True}
            ann.say("after")
            bob.say("me too, after")
            again = [events.next_of("message") for events in (ann, bob) for _ in range(2)]
            assert again[:2] == again[2:]
            # The ids go on from what Redis kept, in another epoch.
            assert sorted(message["id"] for message in again[:2]) == ([1, 2] if comes_back == "empty" else [2, 3])
        for client in (first, second):
            answer = client.get("/healthz")
            assert (answer.status_code, answer.json()) == (200, {"status": "ok"})


def test_healthz_reports_the_backend(redis_url: str, tmp_path: Path) -> None:
    with TestClient(app_with(backend_url=redis_url)) as client:
        answer = client.get("/healthz")
        assert (answer.status_code, answer.json()) == (200, {"status": "ok"})
    operator = ("127.0.0.1", 50000)  # the detail is for the addresses of CHAT_METRICS_ALLOW (tests/web/test_health.py)
    with (
        running_redis(tmp_path / "redis") as server,
        TestClient(app_with(backend_url=server.url), client=operator) as client,
    ):
        server.kill()
        answer = client.get("/healthz")
        assert answer.status_code == 503
        assert answer.json()["status"] == "unavailable"
        assert "Redis" in answer.json()["detail"]
        with pytest.raises(WebSocketDisconnect) as refused, chat(client, "name=ann"):
            pass
        assert refused.value.code == CloseCode.TRY_AGAIN_LATER


def test_a_server_refuses_to_start_without_its_redis(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "never-started")
    with pytest.raises(RuntimeError, match="cannot be used"), TestClient(app_with(backend_url=server.url)):
        pass


def test_an_account_is_one_person_across_apps_online_once_and_signed_out_everywhere(
    two_apps: tuple[TestClient, TestClient],
) -> None:
    first, second = two_apps
    registered = first.post("/api/account", json={"name": "Ann", "password": "correct horse battery"})
    assert registered.status_code == 201
    second.cookies.set(PLAIN_COOKIE, first.cookies[PLAIN_COOKIE])  # the same browser, on another host
    assert second.get("/api/session").json() == {"name": "Ann", "admin": False}  # the session is shared
    with chat(another_browser(first), "name=bob") as bob:
        with chat(first) as here:
            assert bob.next_of("join") == {"type": "join", "name": "Ann"}
            with chat(second) as there:
                assert there.welcome["online"] == ["bob", "Ann"]
                there.say("from the second")
                assert here.next_of("message")["text"] == "from the second"
            bob.say("ann?")  # the tab on the second app went: Ann is still online on the first
            skipped: list[dict[str, Any]] = []
            assert bob.next_of("message", skipped)["text"] == "from the second"
            assert bob.next_of("message", skipped)["text"] == "ann?"
            assert [event for event in skipped if event["type"] == "leave"] == []
            with chat(second) as there:  # back on the second, then sign out there
                assert second.delete("/api/session").status_code == 204
                for socket in (here, there):  # every process closes the session's sockets
                    assert socket.closed() == CloseCode.NOT_SIGNED_IN
        assert bob.next_of("leave") == {"type": "leave", "name": "Ann"}  # once, when the last went
    assert first.get("/api/session").status_code == 401
