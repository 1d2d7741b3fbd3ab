"""Two servers on one Redis that loses its data mid-conversation: the pages come back by
themselves, in the new epoch, and show each message once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect

from bench.server import free_port
from tests.support.browser import Tabs, say, sign_on, texts
from tests.support.certificates import Certificates
from tests.support.redis_server import RedisServer, running_redis
from tests.support.servers import CHATROOM_STACK, Server, run_server, uvicorn_command

pytestmark = pytest.mark.browser


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    with running_redis(tmp_path / "redis") as server:  # no persistence: kill -9 loses everything
        yield server


def redis_chat_server(certificates: Certificates, folder: Path, redis: RedisServer) -> Iterator[Server]:
    port = free_port()
    folder.mkdir()
    command = uvicorn_command(port, certificates.cert, certificates.key, *CHATROOM_STACK)
    with run_server(command, port, folder, env={"CHAT_BACKEND_URL": redis.url}) as server:
        yield server


@pytest.fixture
def server(certificates: Certificates, tmp_path: Path, redis: RedisServer) -> Iterator[Server]:
    """The first of the two servers, the one the tabs open by default."""
    yield from redis_chat_server(certificates, tmp_path / "first", redis)


@pytest.fixture
def second(certificates: Certificates, tmp_path: Path, redis: RedisServer) -> Iterator[Server]:
    yield from redis_chat_server(certificates, tmp_path / "second", redis)


# `second` before `tabs`: it stops after the tabs are closed, so that no page sees it go.
@pytest.mark.parametrize("comes_back", ["empty", "from an older snapshot"])
def test_pages_on_two_servers_go_on_in_a_new_epoch_showing_each_message_once(
    comes_back: str, second: Server, tabs: Tabs, redis: RedisServer
) -> None:
    ann, bob = tabs.open(), tabs.open(origin=second.origin)
    sign_on(ann, "ann")
    sign_on(bob, "bob")
    say(ann, "kept")
    expect(texts(bob)).to_have_text(["kept"])
    if comes_back != "empty":
        redis.save()  # the snapshot Redis comes back from has only the first message
    say(bob, "lost")
    for page in (ann, bob):
        expect(texts(page)).to_have_text(["kept", "lost"])

    redis.kill()
    redis.start()
    for page, name in ((ann, "ann"), (bob, "bob")):
        # Its server restarted its connection (1012): it came back, in the new epoch.
        expect(page.locator("#log .divider")).to_have_count(1, timeout=30_000)
        expect(page.locator("#status")).to_contain_text(f"Online as {name}")
    say(ann, "after, from ann")
    expect(texts(bob)).to_contain_text(["after, from ann"])
    say(bob, "after, from bob")
    # Above the divider what Redis no longer has; below it, its history as it is now.
    shown = ["kept", "lost"] if comes_back == "empty" else ["lost", "kept"]
    for page in (ann, bob):
        expect(texts(page)).to_have_text([*shown, "after, from ann", "after, from bob"])
        expect(page.locator("#log .divider")).to_have_count(1)
        expect(page.get_by_label("Message")).to_have_value("")  # nothing to send again
