"""The fixtures every test can use: the event loop, certificates, Redis, each backend in turn,
and Chromium. What they are built from lives in tests/support/."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Playwright, sync_playwright

from bench.server import free_port
from tests.support import properties  # noqa: F401 - registers and loads the hypothesis profile
from tests.support.browser import CHROMIUM, CHROMIUM_ARGS, Tabs
from tests.support.certificates import Certificates, make_certificates
from tests.support.redis_server import RedisServer, running_redis
from tests.support.servers import Server, run_server, uvicorn_command


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    """Async tests (marked anyio) run on asyncio, as the server does."""
    return "asyncio"


@pytest.fixture(scope="session")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    """A real CA and a server certificate for 127.0.0.1 and localhost, made by trustme."""
    return make_certificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real redis-server for the whole run (nothing on disk); tests empty it as they begin."""
    with running_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The shared redis-server, emptied: a test starts with no history, no names, no epoch."""
    redis_server.flush()
    return redis_server.url


@pytest.fixture(params=["memory", "sqlite", "redis"])
def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each backend in turn: tests using this run once per backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'chat.db'}"
    if request.param == "redis":
        url: str = request.getfixturevalue("redis_url")
        return url
    return "memory://"


# Browser tests (tests/browser/, marked `browser`; ./scripts/test runs them in a process of their own)


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: install Debian's chromium (scripts/test does)")
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield browser
    browser.close()


@pytest.fixture
def server(certificates: Certificates, tmp_path: Path) -> Iterator[Server]:
    """A real server (plain uvicorn, over TLS) for a browser test."""
    port = free_port()
    with run_server(uvicorn_command(port, certificates.cert, certificates.key), port, tmp_path) as server:
        yield server


@pytest.fixture
def tabs(browser: Browser, server: Server) -> Iterator[Tabs]:
    tabs = Tabs(browser, server)
    yield tabs
    tabs.close()
    assert tabs.errors == []
