"""A real Chromium (Debian's, via Playwright's executable_path) against a real server over TLS."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Playwright, expect, sync_playwright

from tests.conftest import Certificates
from tests.servers import Server, free_port, run_server, uvicorn_command

CHROMIUM = os.environ.get("CHROMIUM", shutil.which("chromium") or "/usr/bin/chromium")
# The flags a sandboxed, offline machine needs: no background traffic that would be refused.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


# Assertions wait as long as actions do (Page.set_default_timeout below): on a busy machine
# a page can take more than expect's default 5 s to show what a test waits for.
expect.set_options(timeout=10_000)


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
    port = free_port()
    with run_server(uvicorn_command(port, certificates.cert, certificates.key), port, tmp_path) as server:
        yield server


@dataclass
class Tabs:
    """Pages opened on the server; every console error or uncaught exception is recorded."""

    browser: Browser
    server: Server
    errors: list[str] = field(default_factory=list)
    pages: list[Page] = field(default_factory=list)
    tolerated: list[re.Pattern[str]] = field(default_factory=list)

    def tolerate(self, console_error: str) -> None:
        """Do not count console errors matching this regular expression (say why where it is called)."""
        self.tolerated.append(re.compile(console_error))

    def open(self, path: str = "/", origin: str | None = None, **options: object) -> Page:
        """A new tab on `path`, from the server or from `origin` (a proxy in front of it)."""
        context = self.browser.new_context(ignore_https_errors=True, **options)  # type: ignore[arg-type]
        page = context.new_page()
        page.set_default_timeout(10_000)

        def on_console(message: ConsoleMessage) -> None:
            if message.type == "error" and not any(pattern.fullmatch(message.text) for pattern in self.tolerated):
                self.errors.append(f"console: {message.text}")

        page.on("console", on_console)
        page.on("pageerror", lambda error: self.errors.append(f"page error: {error}"))
        page.on("dialog", lambda dialog: self.errors.append(f"dialog: {dialog.message}"))
        page.goto(f"{origin or self.server.origin}{path}")
        self.pages.append(page)
        return page


@pytest.fixture
def tabs(browser: Browser, server: Server) -> Iterator[Tabs]:
    tabs = Tabs(browser, server)
    yield tabs
    for page in tabs.pages:
        page.context.close()
    assert tabs.errors == []
