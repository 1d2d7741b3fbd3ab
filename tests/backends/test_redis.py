"""The Redis backend against a real redis-server: one order for every process, grouped writes,
shared presence, and two apps that behave as one chat."""

from __future__ import annotations

import asyncio
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
from tests.support.redis_faults import reconnection_held, start_heartbeats, stop_heartbeats, writes_held
from tests.support.redis_server import RedisServer, running_redis
from tests.support.subscriber import Delivered
from tests.support.web import app_with, chat

pytestmark = pytest.mark.anyio


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
    first.presence.joined("den", "ann", "Ann")
    first.presence.left("den", "ann", "Ann")
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
    first.presence.joined("den", "ann", "Ann")
    third.presence.joined("den", "bob", "bob")
    await got_second.wait_for(lambda d: len(d.presence("den")) == 2)
    for wrong in ("guessed", "", "first "):
        assert await second.presence.take_over("den", "ann", wrong, "second") is None
    assert await second.presence.take_over("den", "bob", "", "second") is None
    assert await second.presence.take_over("den", "nobody", "first", "second") is None

    assert await second.presence.take_over("den", "ann", "first", "second") == "Ann"  # as the others know it
    await got_first.wait_for(lambda d: d.evicted == [("den", "ann")])
    assert not first.presence.holds("den", "ann")
    assert second.presence.online("den") == third.presence.online("den") == ["Ann", "bob"]
    assert await first.presence.take_over("den", "ann", "first", "again") is None  # a token is good once
    assert await third.presence.take_over("den", "ann", "second", "third") == "Ann"
    await got_second.wait_for(lambda d: d.evicted == [("den", "ann")])
    third.presence.left("den", "ann", "Ann")
    await got_first.wait_for(lambda d: leave_event("Ann") in d.presence("den"))
    # Only the join and the leave: the moves were no news for anyone.
    for got in (got_first, got_second):
        joins, after = got.presence("den")[:2], got.presence("den")[2:]
        assert sorted(joins) == sorted([join_event("Ann"), join_event("bob")])
        assert after == [leave_event("Ann")]
    assert await first.presence.claim("den", "ann", "ann")  # free again


async def test_a_name_taken_over_from_a_process_whose_holder_left_meanwhile_is_back_there(
    open_backend: Callable[..., Any],
) -> None:
    (first, got_first), (second, _) = await open_backend(), await open_backend()
    for backend in (first, second):
        await backend.subscribe("den")
    assert await first.presence.claim("den", "ann", "ann", "first")
    first.presence.joined("den", "ann", "ann")
    # The old connection ends here as the name is taken over: its leave is told here first,
    # and its release reaches Redis after the take-over.
    with writes_held(first):
        first.presence.left("den", "ann", "ann")
        assert await second.presence.take_over("den", "ann", "first", "second") == "ann"
    await got_first.wait_for(lambda d: d.evicted == [("den", "ann")])
    await got_first.wait_for(lambda d: len(d.presence("den")) == 3)
    assert got_first.presence("den") == [join_event("ann"), leave_event("ann"), join_event("ann")]
    assert first.presence.online("den") == ["ann"]
    assert not await first.presence.claim("den", "ann", "ann")  # the release did not let the moved name go


async def test_joins_and_leaves_reach_the_other_processes_and_their_online_lists(
    open_backend: Callable[..., Any],
) -> None:
    (first, got_first), (second, got_second) = await open_backend(), await open_backend()
    for backend in (first, second):
        await backend.subscribe("den")
    for backend, key, name in ((first, "ann", "ann"), (second, "bob", "bob"), (first, "cy", "cy")):
        assert await backend.presence.claim("den", key, name)
        backend.presence.joined("den", name, name)
    await got_second.wait_for(lambda d: len(d.presence("den")) == 3)
    assert got_second.presence("den") == [join_event("ann"), join_event("bob"), join_event("cy")]
    assert second.presence.online("den") == ["ann", "bob", "cy"]
    first.presence.left("den", "ann", "ann")
    await got_second.wait_for(lambda d: len(d.presence("den")) == 4)
    assert got_second.presence("den")[-1] == leave_event("ann")
    assert second.presence.online("den") == ["bob", "cy"]
    await got_first.wait_for(lambda d: len(d.presence("den")) == 4)
    assert first.presence.online("den") == ["cy", "bob"] or first.presence.online("den") == ["bob", "cy"]
    (third, _) = await open_backend()
    await third.subscribe("den")
    assert third.presence.online("den") == ["bob", "cy"]  # in the order they came


async def test_a_process_that_stops_says_goodbye_for_its_users(open_backend: Callable[..., Any]) -> None:
    (leaving, _), (staying, delivered) = await open_backend(), await open_backend()
    for backend in (leaving, staying):
        await backend.subscribe("den")
    assert await leaving.presence.claim("den", "ann", "ann")
    await delivered.wait_for(lambda d: d.presence("den") == [join_event("ann")])
    await leaving.stop()
    await delivered.wait_for(lambda d: d.presence("den") == [join_event("ann"), leave_event("ann")])
    assert staying.presence.online("den") == []
    assert await staying.presence.claim("den", "ann", "ann")


async def test_a_process_whose_heartbeats_stop_has_its_users_leave(open_backend: Callable[..., Any]) -> None:
    (silent, _), (watching, delivered) = await open_backend(), await open_backend()
    for backend in (silent, watching):
        await backend.subscribe("den")
    assert await silent.presence.claim("den", "ann", "ann")
    stop_heartbeats(silent)  # as if the process had died: no more heartbeats, no goodbye
    started = asyncio.get_running_loop().time()
    await delivered.wait_for(lambda d: leave_event("ann") in d.presence("den"), timeout=5)
    assert asyncio.get_running_loop().time() - started < 1.0 + 0.25 + 1  # ttl + a beat, and some slack
    assert watching.presence.online("den") == []
    assert await watching.presence.claim("den", "ann", "ann")


async def test_a_process_taken_for_dead_claims_its_names_again(open_backend: Callable[..., Any]) -> None:
    (paused, own), (watching, delivered) = await open_backend(), await open_backend()
    for backend in (paused, watching):
        await backend.subscribe("den")
    assert await paused.presence.claim("den", "ann", "ann")
    paused.presence.joined("den", "ann", "ann")
    stop_heartbeats(paused)
    await delivered.wait_for(lambda d: leave_event("ann") in d.presence("den"))
    start_heartbeats(paused)  # it wakes up again
    await delivered.wait_for(lambda d: d.presence("den")[-1:] == [join_event("ann")])
    assert watching.presence.online("den") == ["ann"]
    assert own.presence("den") == [join_event("ann")]  # its own clients never saw ann leave
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
        paused.presence.joined("den", name, name)
    stop_heartbeats(paused)
    await delivered.wait_for(lambda d: d.presence("den")[-2:] == [leave_event("ann"), leave_event("bob")])
    start_heartbeats(paused)
    await delivered.wait_for(lambda d: d.presence("den")[-2:] == [join_event("ann"), join_event("bob")])
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
        backend.presence.joined("den", key, key)
    await got_first.wait_for(lambda d: len(d.presence("den")) == 2)
    async with reconnection_held(first):
        assert await second.presence.take_over("den", "ann", "ann's", "newer") == "ann"
    await got_first.wait_for(lambda d: d.evicted == [("den", "ann")])
    assert not first.presence.holds("den", "ann")
    assert first.presence.online("den") == ["ann", "bob"]  # ann is still online, elsewhere
    # No leave for ann, who is still online: the joins, then only bob's leave.
    first.presence.left("den", "bob", "bob")
    await got_first.wait_for(lambda d: len(d.presence("den")) == 3)
    assert got_first.presence("den") == [join_event("ann"), join_event("bob"), leave_event("bob")]


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


async def test_a_redis_that_lost_its_data_makes_the_server_unhealthy(tmp_path: Path) -> None:
    """Without persistence a restarted Redis is empty: ids would start again under the same
    epoch, so the server says so (503) instead of carrying on."""
    with running_redis(tmp_path / "redis") as server:
        backend = RedisBackend(server.url, Settings(backend_url=server.url, presence_ttl=0.4))
        await backend.start(Delivered())
        await backend.publish("den", "ann", "soon forgotten")
        server.kill()
        server.start()  # EPHEMERAL: nothing on disk, so it comes back empty
        async with asyncio.timeout(10):
            # Unreachable, then reconnecting (with backoff: nothing to await), then this:
            while "lost the chat's data" not in (await backend.check() or ""):  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        await backend.stop()


async def test_a_redis_back_with_older_data_makes_every_server_unhealthy(
    open_backend: Callable[..., Any], redis_server: RedisServer
) -> None:
    """As after restoring an old backup: ids already seen would be given out again."""
    (first, delivered), (second, _) = await open_backend(), await open_backend()
    await first.subscribe("den")
    for number in range(5):
        await first.publish("den", "ann", f"m{number}")
    await delivered.wait_for(lambda d: len(d.messages()) == 5)
    assert first._redis is not None
    await first.redis.hset(b"chatroom:ids", b"den", b"2")  # the counter of an older copy
    await first.redis.client_kill_filter(_type="normal", skipme=True)  # every process reconnects
    async with asyncio.timeout(10):
        for backend in (first, second):  # the second learns it from the new epoch, at a heartbeat
            while "restart every chatroom process" not in (await backend.check() or ""):  # noqa: ASYNC110
                await asyncio.sleep(0.05)
    assert await first.redis.get(b"chatroom:epoch") != first.epoch.encode()


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
        assert bob.next() == {"type": "join", "name": "ann"}
        with pytest.raises(WebSocketDisconnect) as refused, chat(second, "name=ann&token=guessed"):
            pass
        assert refused.value.code == CloseCode.NAME_TAKEN
        with chat(second, f"name=ANN&token={ann.welcome['token']}") as back:
            assert back.welcome["name"] == "ann"  # as the others know it
            assert back.welcome["online"] == ["bob", "ann"]
            with pytest.raises(WebSocketDisconnect) as replaced:
                ann.next()
            assert replaced.value.code == CloseCode.REPLACED
            back.say("back, on the second")
            assert bob.next() == back.next()  # the message: nobody left, nobody joined
            with chat(first, f"name=ann&token={back.welcome['token']}") as again:  # and back to the first
                with pytest.raises(WebSocketDisconnect) as replaced:
                    back.next()
                assert replaced.value.code == CloseCode.REPLACED
                again.say("back on the first")
                assert bob.next() == again.next()
                # Taken over within the first, then from the second: the first told Redis the
                # newer token when it handed the name over locally.
                with (
                    chat(first, f"name=ann&token={again.welcome['token']}") as local,
                    chat(second, f"name=ann&token={local.welcome['token']}") as remote,
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
        assert ann.next() == {"type": "join", "name": "bob"}
        assert ann.next() == {"type": "join", "name": "cy"}
        assert bob.next() == {"type": "join", "name": "cy"}
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
            assert ann.next() == {"type": "join", "name": "bob"}
        assert ann.next() == {"type": "leave", "name": "bob"}
        with chat(first, "name=bob") as again:
            assert again.welcome["online"] == ["ann", "bob"]


def test_healthz_reports_the_backend(redis_url: str, tmp_path: Path) -> None:
    with TestClient(app_with(backend_url=redis_url)) as client:
        answer = client.get("/healthz")
        assert (answer.status_code, answer.json()) == (200, {"status": "ok"})
    with running_redis(tmp_path / "redis") as server, TestClient(app_with(backend_url=server.url)) as client:
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
