"""The accounts seam (`AccountStore`) and notices, the same on every backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from app.backends import create_backend
from app.backends.base import Backend
from app.core.messages import now_ms
from app.core.users import SignIn, User
from app.settings import Settings
from tests.support.subscriber import Delivered

pytestmark = pytest.mark.anyio

ANN = User("ann", "Ann", "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA", False, 1_700_000_000_000)


@pytest.fixture
async def backend(backend_url: str) -> AsyncIterator[Backend]:
    backend = create_backend(backend_url, Settings(backend_url=backend_url))
    await backend.start(Delivered())
    yield backend
    await backend.stop()


async def test_users_are_added_once_found_by_key_changed_and_removed(backend: Backend) -> None:
    store = backend.accounts
    assert await store.user("ann") is None
    assert await store.add_user(ANN)
    assert not await store.add_user(User("ann", "ANN", "other", True, 2))  # the key is taken
    assert await store.user("ann") == ANN
    admin = User("ann", "Ann", "a new hash", True, ANN.created)
    assert await store.update_user(admin)
    assert await store.user("ann") == admin
    assert await store.users() == [admin]
    assert not await store.update_user(User("bob", "bob", "x", False, 3))  # nobody to update
    assert await store.user("bob") is None
    await store.add_session(SignIn("h1", "ann", now_ms(), now_ms()))
    assert await store.remove_user("ann") == ["h1"]  # its sessions end with it
    assert await store.user("ann") is None
    assert await store.session("h1") is None


async def test_sessions_are_found_by_hash_touched_and_ended(backend: Backend) -> None:
    store = backend.accounts
    await store.add_user(ANN)
    now = now_ms()  # Redis lets a session go when its lifetime from `created` is over
    for hash in ("h1", "h2", "h3"):
        await store.add_session(SignIn(hash, "ann", now, now))
    await store.touch_session("h1", now + 500)
    assert await store.session("h1") == SignIn("h1", "ann", now, now + 500)
    assert await store.session("nope") is None
    assert await store.end_session("h2") == SignIn("h2", "ann", now, now)
    assert await store.end_session("h2") is None
    assert sorted(await store.end_sessions("ann", keep="h1")) == ["h3"]
    assert await store.session("h1") is not None
    assert await store.end_sessions("ann") == ["h1"]
    assert await store.session("h1") is None


async def test_a_notice_reaches_the_process_that_wrote_it(backend: Backend) -> None:
    delivered = backend.subscriber
    assert isinstance(delivered, Delivered)
    backend.notify("sessions_ended", {"sessions": ["h1"]})
    await delivered.wait_for(lambda d: d.notices == [("sessions_ended", {"sessions": ["h1"]})])


async def test_a_notice_written_by_another_process_on_sqlite_arrives(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'chat.db'}"
    server = create_backend(url, Settings(backend_url=url))
    delivered = Delivered()
    await server.start(delivered)
    # As `chatroom users` does beside a running server: it opens the database, not the server's lock.
    tool = create_backend(url, Settings(backend_url=url))
    await tool.open()
    tool.notify("sessions_ended", {"sessions": ["h1"]})
    await tool.close()
    await delivered.wait_for(lambda d: d.notices == [("sessions_ended", {"sessions": ["h1"]})])
    await server.stop()


async def test_a_notice_reaches_every_process_on_redis_once(redis_url: str) -> None:
    backends, seen = [], []
    for _ in range(2):
        backend = create_backend(redis_url, Settings(backend_url=redis_url))
        delivered = Delivered()
        await backend.start(delivered)
        backends.append(backend)
        seen.append(delivered)
    backends[0].notify("registered", {"key": "ann"})
    backends[1].notify("registered", {"key": "bob"})
    for delivered in seen:  # in one order for every process, each once (its own at once)
        await delivered.wait_for(lambda d: len(d.notices) == 2)
    assert seen[1].notices == [("registered", {"key": "bob"}), ("registered", {"key": "ann"})]
    assert sorted(map(str, seen[0].notices)) == sorted(map(str, seen[1].notices))
    for backend in backends:
        await backend.stop()
