"""A stand-in for `/ws`, played inside the browser through Playwright's `route_web_socket`.

It speaks docs/protocol.md plus history paging and resume (`history` events, `since`,
`gap`), the server side of which is not built yet; with `pages=False` it answers like a
server without them (`since` ignored, `history` refused with `unknown_type`). Tests use it
to check the page against both, and to drop connections at will.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from playwright.sync_api import Page, WebSocketRoute

Event = dict[str, Any]

ROOM = "lobby"
FIRST_TS = 1_795_677_464_622


@dataclass
class FakeServer:
    page: Page
    epoch: str = "epoch-1"
    pages: bool = True
    replay: int = 100  # messages a welcome holds at most
    messages: list[Event] = field(default_factory=list)
    online: list[str] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)
    asked: list[Event] = field(default_factory=list)  # every `history` request, in order
    connections: list[WebSocketRoute] = field(default_factory=list)
    stored: int = 0  # messages stored so far, in every epoch: their times

    def __post_init__(self) -> None:
        self.page.route_web_socket(re.compile(r"/ws\?"), self._connect)

    def add(self, count: int, text: str = "message", name: str = "bob") -> None:
        """Store messages, as if said while the page was not listening."""
        for _ in range(count):
            self._store(name, f"{text} {len(self.messages) + 1}")

    def say(self, text: str, name: str = "bob") -> None:
        """A message said now: stored, and sent to the connected page."""
        message = self._store(name, text)
        self._send(self.connections[-1], message)

    def drop(self, code: int = 1001, reason: str = "Server shutting down") -> None:
        """Close the page's connection as a restarting server does (1001): it should come back."""
        self.connections[-1].close(code=code, reason=reason)

    def restart(self, epoch: str, keep: int = 0) -> None:
        """A server whose history was lost (all of it, or all but its first `keep` messages, as
        when its Redis came back from an older copy): a new epoch, whose ids go on from there."""
        self.epoch = epoch
        self.messages = self.messages[:keep]

    def _store(self, name: str, text: str) -> Event:
        id = len(self.messages) + 1
        self.stored += 1
        ts = FIRST_TS + self.stored * 1000
        message = {"type": "message", "id": id, "room": ROOM, "name": name, "text": text, "ts": ts}
        self.messages.append(message)
        return message

    def _connect(self, socket: WebSocketRoute) -> None:
        self.urls.append(socket.url)
        self.connections.append(socket)
        query = parse_qs(urlsplit(socket.url).query)
        name = query["name"][0]
        welcome: Event = {"type": "welcome", "name": name, "room": ROOM, "epoch": self.epoch}
        welcome["online"] = [*self.online, name]
        if self.pages and "since" in query:
            since = int(query["since"][0])
            missed = [message for message in self.messages if message["id"] > since]
            if len(missed) > self.replay:
                welcome["gap"] = True
            welcome["history"] = missed[-self.replay :]
        else:
            welcome["history"] = self.messages[-self.replay :]
        self._send(socket, welcome)
        socket.on_message(lambda frame: self._receive(socket, name, frame))

    def _receive(self, socket: WebSocketRoute, name: str, frame: str | bytes) -> None:
        event = json.loads(frame)
        if event["type"] == "message":
            self._send(socket, self._store(name, event["text"]))
        elif event["type"] == "history":
            self.asked.append(event)
            if not self.pages:
                self._send(socket, {"type": "error", "code": "unknown_type", "detail": "Unknown event type 'history'"})
                return
            before = [message for message in self.messages if message["id"] < event["before"]]
            page = before[-event["limit"] :]
            more = len(before) > len(page)
            self._send(socket, {"type": "history", "room": ROOM, "messages": page, "more": more})

    @staticmethod
    def _send(socket: WebSocketRoute, *events: Event) -> None:
        socket.send("\n".join(json.dumps(event) for event in events))
