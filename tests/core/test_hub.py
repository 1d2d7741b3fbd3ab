"""The core with plain asyncio, no web framework: fan-out, slow clients, shutdown."""

from __future__ import annotations

import asyncio
import gc
import json
import weakref
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from app.backends.memory import MemoryBackend
from app.core.hub import Hub, NameTaken
from app.core.protocol import CloseCode
from app.core.session import Session
from app.core.stats import LATENCY_BOUNDS, STORE, Latency
from app.settings import Settings
from tests.support.fakes import FakeConnection

pytestmark = pytest.mark.anyio


async def start_hub(**overrides: Any) -> Hub:
    settings = Settings(rate_limit=0, **overrides)
    hub = Hub(MemoryBackend("memory://", settings), settings)
    await hub.start()
    return hub


@pytest.fixture
async def hub() -> AsyncIterator[Hub]:
    hub = await start_hub(queue_size=8, close_timeout=0.5)
    yield hub
    await hub.stop()


@pytest.fixture(params=["task", "sink"])
def mode(request: pytest.FixtureRequest) -> str:
    """Each way a socket is written: by a writer task per client, or by the room into a sink."""
    return str(request.param)


@pytest.fixture
def connect(mode: str) -> Callable[[], FakeConnection]:
    return lambda: FakeConnection(sink=mode == "sink")


async def join(hub: Hub, name: str, connection: FakeConnection, room: str = "lobby") -> Session:
    session = await hub.join(connection, connection.abort, room, name, sink=connection.sink)
    await connection.wait_for(lambda c: c.frames)  # its welcome
    return session


def say(hub: Hub, session: Session, text: str) -> None:
    hub.publish(session, text)


async def test_everything_said_reaches_every_client_in_order(hub: Hub, connect: Callable[[], FakeConnection]) -> None:
    connections = [connect() for _ in range(5)]
    clients = [await join(hub, f"c{number}", connection) for number, connection in enumerate(connections)]
    for number in range(100):
        say(hub, clients[number % 5], str(number))
        if number % 7 == 0:
            await asyncio.sleep(0)  # let some flushes happen in between
    expected = [str(number) for number in range(100)]
    for connection in connections:
        await connection.wait_for(lambda c: len(c.messages()) == 100)
        assert connection.messages() == expected


async def test_a_burst_goes_out_as_one_frame_per_client(hub: Hub, connect: Callable[[], FakeConnection]) -> None:
    ann, bob = connect(), connect()
    sender = await join(hub, "ann", ann)
    await join(hub, "bob", bob)
    await ann.wait_for(lambda c: {"type": "join", "name": "bob", "guest": True} in c.events)  # presence went out first
    frames_before = len(bob.frames)
    for number in range(50):
        say(hub, sender, str(number))
    await bob.wait_for(lambda c: len(c.messages()) == 50)
    assert len(bob.frames) == frames_before + 1


async def test_a_slow_client_is_dropped_and_the_others_receive_everything(
    hub: Hub, connect: Callable[[], FakeConnection]
) -> None:
    fast, slow = connect(), connect()
    sender = await join(hub, "fast", fast)
    laggard = await join(hub, "slow", slow)
    slow.stall()
    for number in range(200):
        say(hub, sender, str(number))
        await asyncio.sleep(0)  # one flush per message: the stalled client's queue fills up
    await fast.wait_for(lambda c: len(c.messages()) == 200)
    assert fast.messages() == [str(number) for number in range(200)]
    assert laggard.member.closing
    assert laggard.member.close_code == CloseCode.TRY_AGAIN_LATER
    assert "slow" not in laggard.room.people
    await fast.wait_for(lambda c: {"type": "leave", "name": "slow"} in c.events)
    await asyncio.wait_for(slow.aborted.wait(), 2)  # the close could not be written: it was cut off
    await laggard.finished()
    assert laggard.member.queue.qsize() == 0  # its backlog was let go


async def test_a_slow_client_that_catches_up_gets_its_close_code(
    hub: Hub, connect: Callable[[], FakeConnection]
) -> None:
    sender_connection, slow = connect(), connect()
    sender = await join(hub, "ann", sender_connection)
    laggard = await join(hub, "slow", slow)
    slow.stall()
    for number in range(20):
        say(hub, sender, str(number))
        await asyncio.sleep(0)
    assert laggard.member.close_code == CloseCode.TRY_AGAIN_LATER
    slow.flow()
    await slow.wait_for(lambda c: c.close_code is not None)
    assert slow.close_code == CloseCode.TRY_AGAIN_LATER
    assert not slow.aborted.is_set()


async def test_stop_closes_every_client_with_1001_after_what_was_queued(
    hub: Hub, connect: Callable[[], FakeConnection]
) -> None:
    connections = [connect() for _ in range(3)]
    clients = [await join(hub, f"c{number}", connection) for number, connection in enumerate(connections)]
    say(hub, clients[0], "last words")
    await hub.stop()
    for connection in connections:
        assert connection.close_code == CloseCode.GOING_AWAY
        assert connection.messages() == ["last words"]
    assert not hub.rooms


async def test_an_empty_room_is_let_go(hub: Hub, connect: Callable[[], FakeConnection]) -> None:
    connection = connect()
    client = await join(hub, "ann", connection, room="attic")
    assert "attic" in hub.rooms
    client.close(CloseCode.NORMAL, "bye")
    await client.finished()
    assert "attic" not in hub.rooms
    again = connect()
    await join(hub, "bob", again, room="attic")  # and can be opened again
    assert hub.rooms["attic"].people.keys() == {"bob"}


async def test_online_counts_name_each_room_with_people_in_it(hub: Hub) -> None:
    await join(hub, "ann", FakeConnection(), room="attic")
    await join(hub, "bob", FakeConnection(), room="den")
    cy = await join(hub, "cy", FakeConnection(), room="den")
    assert hub.online_counts() == {"attic": 1, "den": 2}
    cy.close(CloseCode.NORMAL, "bye")
    await cy.finished()
    assert hub.online_counts() == {"attic": 1, "den": 1}


async def test_the_token_of_a_welcome_takes_the_name_over_and_nobody_else_notices(
    hub: Hub, connect: Callable[[], FakeConnection]
) -> None:
    old, bob = connect(), connect()
    ghost = await join(hub, "Ann", old)
    bob_client = await join(hub, "bob", bob)
    await join(hub, "cy", connect())
    say(hub, ghost, "before")
    await bob.wait_for(lambda c: c.messages() == ["before"])
    old.stall()  # the network between them is gone: the old connection takes nothing more
    token, epoch = old.events[0]["token"], old.events[0]["epoch"]
    last_seen = [event["id"] for event in old.events if event["type"] == "message"][-1]
    say(hub, bob_client, "while ann was away")
    await bob.wait_for(lambda c: len(c.messages()) == 2)
    for wrong in ("", token[:-1], token + "x", "x" * 1000):
        with pytest.raises(NameTaken):
            await hub.join(connect(), lambda: None, "lobby", "ann", token=wrong)

    new = connect()
    back = await hub.join(new, new.abort, "lobby", "ann", since=str(last_seen), epoch=epoch, sink=new.sink, token=token)
    await new.wait_for(lambda c: c.frames)
    welcome = new.events[0]
    assert welcome["name"] == "Ann"  # as the others know it
    assert welcome["online"] == ["Ann", "bob", "cy"]  # in its place
    assert [message["text"] for message in welcome["history"]] == ["while ann was away"]
    assert welcome["token"] != token
    assert ghost.member.close_code == CloseCode.REPLACED
    await old.aborted.wait()  # it could not take its close: cut off after close_timeout
    await ghost.finished()  # its end says nothing to anyone either
    say(hub, back, "back")
    await bob.wait_for(lambda c: "back" in c.messages())
    assert [event for event in bob.events if event["type"] in ("join", "leave")] == [
        {"type": "join", "name": "cy", "guest": True}
    ]
    assert hub.rooms["lobby"].people["ann"] == [back.member]
    with pytest.raises(NameTaken):  # a token is good for one connection
        await hub.join(connect(), lambda: None, "lobby", "ann", token=token)


async def test_a_socket_that_was_full_gets_its_backlog_in_order_once_it_takes_data_again(
    hub: Hub, connect: Callable[[], FakeConnection]
) -> None:
    ann, bob = connect(), connect()
    sender = await join(hub, "ann", ann)
    await join(hub, "bob", bob)
    bob.stall()
    for number in range(6):  # one frame each; bob's queue holds 8
        say(hub, sender, str(number))
        await asyncio.sleep(0)
    await ann.wait_for(lambda c: len(c.messages()) == 6)
    assert bob.messages() == []
    bob.flow()
    await bob.wait_for(lambda c: len(c.messages()) == 6)
    assert bob.messages() == [str(number) for number in range(6)]


async def test_into_a_sink_each_member_costs_one_write_per_burst(hub: Hub) -> None:
    ann, bob = FakeConnection(sink=True), FakeConnection(sink=True)
    sender = await join(hub, "ann", ann)
    await join(hub, "bob", bob)
    await ann.wait_for(lambda c: {"type": "join", "name": "bob", "guest": True} in c.events)
    assert bob.sink is not None
    writes = bob.sink.writes
    for number in range(200):
        say(hub, sender, str(number))
    await bob.wait_for(lambda c: len(c.messages()) == 200)
    assert bob.sink.writes == writes + 1


def message_frame(text: str) -> str:
    return json.dumps({"type": "message", "text": text})


async def test_a_member_that_stopped_reading_holds_senders_up_only_until_it_is_dropped(
    connect: Callable[[], FakeConnection],
) -> None:
    hub = await start_hub(queue_bytes=8192, stall_timeout=0.2, close_timeout=0.3)
    ann, bob, mute = connect(), connect(), connect()
    sender = await join(hub, "ann", ann)
    await join(hub, "bob", bob)
    silent = await join(hub, "mute", mute)
    mute.stall()
    padding = "x" * 300
    async with asyncio.timeout(5):  # the sender is held up by `mute` for about 0.2 s, not forever
        for number in range(100):
            await sender.receive(message_frame(f"{number} {padding}"))
            await asyncio.sleep(0)  # as on a socket: the room's writer runs between messages
    await bob.wait_for(lambda c: len(c.messages()) == 100)
    assert [int(text.split()[0]) for text in bob.messages()] == list(range(100))
    assert silent.member.close_code == CloseCode.TRY_AGAIN_LATER
    assert not sender.member.closing
    await hub.stop()


async def test_a_member_that_reads_slowly_slows_the_senders_and_is_not_dropped(
    connect: Callable[[], FakeConnection],
) -> None:
    hub = await start_hub(queue_bytes=8192, stall_timeout=0.5)
    ann, slow = connect(), connect()
    sender = await join(hub, "ann", ann)
    reader = await join(hub, "slow", slow)
    paced = 0
    keep_pace = hub.keep_pace

    async def counted(session: Session) -> None:
        nonlocal paced
        paced += 1
        await keep_pace(session)

    hub.keep_pace = counted  # type: ignore[method-assign]

    async def read_slowly() -> None:
        while True:
            slow.stall()
            await asyncio.sleep(0.02)
            slow.flow()
            await asyncio.sleep(0.005)

    reading = asyncio.ensure_future(read_slowly())
    padding = "y" * 300
    async with asyncio.timeout(10):
        for number in range(150):
            await sender.receive(message_frame(f"{number} {padding}"))
            await asyncio.sleep(0)
        await slow.wait_for(lambda c: len(c.messages()) == 150, timeout=10)
    reading.cancel()
    assert [int(text.split()[0]) for text in slow.messages()] == list(range(150))
    assert paced > 0  # the sender did wait for it
    assert not reader.member.closing
    slow.flow()
    await hub.stop()


async def test_a_storm_of_joins_and_leaves_leaves_the_hub_as_it_was(hub: Hub) -> None:
    for _ in range(3):
        connections = [FakeConnection() for _ in range(500)]
        clients = [
            await hub.join(connection, connection.abort, f"room{number % 5}", f"c{number}")
            for number, connection in enumerate(connections)
        ]
        gone = [weakref.ref(part) for client in clients for part in (client, client.member)]
        rooms = {client.room for client in clients}
        for number, client in enumerate(clients):
            if number % 2:  # half are closed by the server, half just disconnect
                client.close(CloseCode.NORMAL, "bye")
            await client.finished()
        del clients, client
        assert hub.rooms == {}
        for room in rooms:  # what the presence timer would do within PRESENCE_DELAY
            room.flush()
        del rooms, room
        await asyncio.sleep(0)  # the last writer's task finishes its step
        gc.collect()
        assert [ref for ref in gone if ref() is not None] == []  # nothing holds on to anyone


async def test_a_client_dropped_for_falling_behind_is_let_go_entirely(hub: Hub) -> None:
    sender = await join(hub, "fast", FakeConnection())
    slow = FakeConnection()
    laggard = await join(hub, "slow", slow)
    slow.stall()
    for number in range(50):
        say(hub, sender, str(number))
        await asyncio.sleep(0)  # a flush a message: the stalled client's queue fills up
    assert laggard.member.close_code == CloseCode.TRY_AGAIN_LATER
    await asyncio.wait_for(slow.aborted.wait(), 2)
    await laggard.finished()
    gone: list[weakref.ref[Any]] = [weakref.ref(laggard), weakref.ref(laggard.member)]
    del laggard
    gc.collect()
    assert [ref for ref in gone if ref() is not None] == []  # its queue, its writer, its frames: all given back


async def test_a_new_epoch_closes_every_client_with_1012_and_rooms_open_again_in_it(
    hub: Hub, connect: Callable[[], FakeConnection]
) -> None:
    """What a shared backend whose history began anew says (`Subscriber.epoch_changed`)."""
    connections = {name: connect() for name in ("ann", "bob")}
    sessions = {name: await join(hub, name, connection) for name, connection in connections.items()}
    await connections["ann"].wait_for(lambda c: {"type": "join", "name": "bob", "guest": True} in c.events)
    forgotten = hub.rooms["lobby"]
    hub.backend.epoch = "the new one"
    hub.epoch_changed()
    say(hub, sessions["ann"], "said as the new epoch began")  # in the old one, it would get no echo
    for connection in connections.values():
        await connection.wait_for(lambda c: c.close_code is not None)
        assert connection.close_code == CloseCode.SERVICE_RESTART
        assert connection.messages() == []
        assert [event for event in connection.events if event["type"] == "leave"] == []  # nobody left
    assert [event["code"] for event in connections["ann"].events if event["type"] == "error"] == ["not_stored"]
    for session in sessions.values():
        await session.finished()
    again = connect()
    await join(hub, "ann", again, room="lobby")
    assert again.events[0]["epoch"] == "the new one"
    assert hub.rooms["lobby"] is not forgotten


# What the hub counts (app/core/stats.py) is what the clients got.
async def test_deliveries_frames_and_bytes_are_what_the_clients_received(
    hub: Hub, connect: Callable[[], FakeConnection], mode: str
) -> None:
    connections = [connect() for _ in range(4)]
    # Each comes while the join of the one before is still waiting to go out: their welcomes
    # cover pending events, and what follows them reaches them apart from the others.
    sessions = [await join(hub, f"c{number}", connection) for number, connection in enumerate(connections)]
    for number in range(30):
        say(hub, sessions[number % 4], str(number))
        if number % 4 == 0:
            await asyncio.sleep(0)
    for connection in connections:
        await connection.wait_for(lambda c: len(c.messages()) == 30)
    stats = hub.stats
    assert stats.delivered == sum(len(connection.messages()) for connection in connections) == 120
    assert stats.stored == 30
    assert stats.latency[STORE].count == 30
    received = sum(len(connection.frames) for connection in connections)
    payload = sum(len(frame) for connection in connections for frame in connection.frames)
    if mode == "sink":  # one write per frame counted
        assert (stats.frames, stats.bytes) == (received, payload)
    else:  # a writer task joins what waited in its queue into one frame, with a newline between
        assert stats.frames >= received
        assert stats.bytes == payload - (stats.frames - received)


async def test_a_reader_dropped_for_its_full_queue_is_counted(hub: Hub, connect: Callable[[], FakeConnection]) -> None:
    ann, bob = connect(), connect()
    sender = await join(hub, "ann", ann)
    await join(hub, "bob", bob)
    bob.stall()
    for number in range(200):  # a frame each: queue_size is 8 here
        say(hub, sender, str(number))
        await asyncio.sleep(0)
        if hub.stats.slow_readers:
            break
    assert (hub.stats.slow_readers, hub.stats.stalled_readers) == (1, 0)
    bob.flow()
    await bob.wait_for(lambda c: c.close_code == CloseCode.TRY_AGAIN_LATER)


def test_latency_buckets_are_prometheus_buckets() -> None:
    """A bucket holds what is at most its bound; the last, what is above them all."""
    latency = Latency()
    for seconds in (0.0, LATENCY_BOUNDS[0], LATENCY_BOUNDS[0] * 1.01, LATENCY_BOUNDS[-1], 60.0):
        latency.observe(seconds)
    assert latency.counts[0] == 2
    assert latency.counts[1] == 1
    assert latency.counts[len(LATENCY_BOUNDS) - 1] == 1
    assert latency.counts[-1] == 1
    assert latency.count == 5
    assert latency.total == pytest.approx(LATENCY_BOUNDS[0] * 2.01 + LATENCY_BOUNDS[-1] + 60.0)
