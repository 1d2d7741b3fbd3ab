"""A real Chromium (Debian's, via Playwright's executable_path) against a real server over
TLS: the tabs a test opens, and what a user does on the page."""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from urllib.parse import urlsplit

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

# Chromium logs every HTTP answer of 400 or more as a console error, and the accounts API
# answers some ordinary outcomes so: the page asks GET /api/session on every load, which is
# 401 while nobody is signed in, as POST /api/session is for a wrong password. Tests that
# provoke other refusals (a wrong current password, throttled sign-ins) say so with
# `Tabs.tolerate_answer`.
FAILED_ANSWER = re.compile(r"Failed to load resource: the server responded with a status of (\d+) .*")

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
    answers: set[tuple[str, int]] = field(default_factory=lambda: {("/api/session", 401)})

    def tolerate(self, console_error: str) -> None:
        """Do not count console errors matching this regular expression (say why where it is called)."""
        self.tolerated.append(re.compile(console_error))

    def tolerate_answer(self, path: str, status: int) -> None:
        """Do not count the console error of an HTTP answer `status` to `path`: an outcome the
        test expects, and checks on the page."""
        self.answers.add((path, status))

    def open(self, path: str = "/", origin: str | None = None, beside: Page | None = None, **options: object) -> Page:
        """A new tab on `path`, from the server or from `origin` (a proxy in front of it), in a
        browser of its own, or in `beside`'s (sharing its cookies: the same session)."""
        if beside is None:
            context = self.browser.new_context(ignore_https_errors=True, **options)  # type: ignore[arg-type]
        elif options:
            raise ValueError(f"A tab beside another is in its browser, whose options are set: got {options}")
        else:
            context = beside.context
        page = context.new_page()
        page.set_default_timeout(10_000)

        def expected(message: ConsoleMessage) -> bool:
            if any(pattern.fullmatch(message.text) for pattern in self.tolerated):
                return True
            failed = FAILED_ANSWER.fullmatch(message.text)
            path = urlsplit(message.location.get("url", "")).path
            return failed is not None and (path, int(failed[1])) in self.answers

        def on_console(message: ConsoleMessage) -> None:
            if message.type == "error" and not expected(message):
                self.errors.append(f"console: {message.text}")

        page.on("console", on_console)
        page.on("pageerror", lambda error: self.errors.append(f"page error: {error}"))
        page.on("dialog", lambda dialog: self.errors.append(f"dialog: {dialog.message}"))
        page.goto(f"{origin or self.server.origin}{path}")
        self.pages.append(page)
        return page

    def close(self) -> None:
        for context in {page.context for page in self.pages}:
            context.close()


def sign_on(page: Page, name: str, room: str = "lobby") -> None:
    """Sign on as a guest and wait until the page is in the room."""
    try_name(page, name, room)
    expect(page.locator("#status")).to_contain_text(f"Online as {name}")


def try_name(page: Page, name: str, room: str = "lobby") -> None:
    """Continue as a guest under `name`."""
    page.get_by_label("Screen name").fill(name)
    page.get_by_label("Room").fill(room)
    page.get_by_role("button", name="Continue as guest").click()


def register(page: Page, name: str, password: str, room: str = "lobby") -> None:
    """Create an account from the sign-on form and wait until the page is in the room."""
    fill_account(page, name, password, room)
    page.get_by_role("button", name="Create account").click()
    expect(page.locator("#status")).to_contain_text(f"Online as {name}")


def sign_in(page: Page, name: str, password: str, room: str = "lobby") -> None:
    """Sign in from the sign-on form and wait until the page is in the room."""
    fill_account(page, name, password, room)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#status")).to_contain_text(f"Online as {name}")


def fill_account(page: Page, name: str, password: str, room: str = "lobby") -> None:
    page.get_by_label("Screen name").fill(name)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_label("Room").fill(room)


def say(page: Page, text: str) -> None:
    box = page.get_by_label("Message")
    box.fill(text)
    box.press("Enter")


def texts(page: Page) -> Locator:
    """The text of every message shown, in order."""
    return page.locator("#log .message .text")


def online(page: Page) -> Locator:
    return page.locator("#online .name")
