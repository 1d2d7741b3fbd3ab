"""A real Chromium (Debian's, via Playwright's executable_path) against a real server over
TLS: the tabs a test opens, and what a user does on the page."""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field

from playwright.sync_api import Browser, ConsoleMessage, Locator, Page, expect

from tests.support.servers import Server

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

    def close(self) -> None:
        for page in self.pages:
            page.context.close()


def sign_on(page: Page, name: str, room: str = "lobby") -> None:
    """Sign on and wait until the page is in the room."""
    try_name(page, name, room)
    expect(page.locator("#status")).to_contain_text(f"Online as {name}")


def try_name(page: Page, name: str, room: str = "lobby") -> None:
    page.get_by_label("Screen name").fill(name)
    page.get_by_label("Room").fill(room)
    page.get_by_role("button", name="Sign on").click()


def say(page: Page, text: str) -> None:
    box = page.get_by_label("Message")
    box.fill(text)
    box.press("Enter")


def texts(page: Page) -> Locator:
    """The text of every message shown, in order."""
    return page.locator("#log .message .text")


def online(page: Page) -> Locator:
    return page.locator("#online .name")
