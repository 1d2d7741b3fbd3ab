"""The cap on open WebSockets per client address: the registry alone, then through the endpoint."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from app.core.protocol import CloseCode
from app.web.connections import Connections, address_key
from tests.support.web import app_with, chat


@pytest.mark.parametrize(
    ("host", "key"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("::ffff:192.0.2.7", "192.0.2.7"),  # IPv4 written as IPv6 is the same host
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:bbbb::9", "2001:db8:1:2::/64"),  # anywhere in the same /64: the same host
        ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
        ("testclient", "testclient"),
    ],
)
def test_addresses_are_counted_per_host_and_ipv6_per_64(host: str, key: str) -> None:
    assert address_key(host) == key


def test_the_cap_refuses_the_excess_and_a_release_makes_room() -> None:
    connections = Connections(limit=2)
    first, second = connections.open("192.0.2.7"), connections.open("192.0.2.7")
    assert first is not None
    assert second is not None
    assert connections.open("192.0.2.7") is None
    assert connections.open("::ffff:192.0.2.7") is None
    assert connections.open("192.0.2.8") is not None  # another address has its own cap
    first.release()
    first.release()  # a second release gives nothing back twice
    assert connections.count("192.0.2.7") == 1
    assert connections.open("192.0.2.7") is not None


def test_an_address_that_left_is_forgotten() -> None:
    connections = Connections(limit=3)
    slots = [connections.open(f"192.0.2.{number}") for number in range(50)]
    for slot in slots:
        assert slot is not None
        slot.release()
    assert len(connections) == 0


def test_a_limit_of_0_counts_without_capping() -> None:
    connections = Connections(limit=0)
    slots = [connections.open("192.0.2.7") for _ in range(1000)]
    assert all(slot is not None for slot in slots)
    assert connections.count("192.0.2.7") == 1000


def test_over_the_cap_a_connection_is_refused_with_4429_and_the_others_go_on() -> None:
    with (
        TestClient(app_with(max_connections_per_ip=2)) as client,
        chat(client, "name=ann") as ann,
        chat(client, "name=bob") as bob,
    ):
        with pytest.raises(WebSocketDisconnect) as refused, chat(client, "name=cy"):
            pass
        assert refused.value.code == CloseCode.TOO_MANY_CONNECTIONS
        assert "at most 2" in refused.value.reason
        ann.say("still here")
        assert bob.next_of("message")["text"] == "still here"


def test_every_way_a_connection_ends_gives_its_slot_back() -> None:
    with TestClient(app_with(max_connections_per_ip=1)) as client:
        with chat(client, "name=ann"):
            pass  # a normal close
        with pytest.raises(WebSocketDisconnect), chat(client, "name=%E2%80%AE"):
            pass  # a name refused with 4400 after the slot was taken
        with chat(client, "name=ann") as ann:
            ann.websocket.send_bytes(b"binary")  # closed by the server with 1003
            with pytest.raises(WebSocketDisconnect):
                ann.next()
        with chat(client, "name=ann") as again:  # the one slot is free again
            assert again.welcome["name"] == "ann"
        connections = client.app_state["connections"]
        assert len(connections) == 0


def test_a_refused_origin_takes_no_slot() -> None:
    with TestClient(app_with(max_connections_per_ip=1)) as client:
        for _ in range(3):
            with pytest.raises(WebSocketDisconnect), chat(client, "name=eve", origin="https://evil.example"):
                pass
        with chat(client, "name=ann") as ann:
            assert ann.welcome["name"] == "ann"
