"""Test helpers: read the newline-separated events of a TestClient WebSocket one at a time."""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.testclient import TestClient, WebSocketTestSession
from starlette.websockets import WebSocketDisconnect

from app.core.protocol import resume_subprotocols
from app.main import create_app
from app.settings import Settings

Event = dict[str, Any]


class Events:
    """A TestClient WebSocket read event by event, whatever frames the server chose to batch."""

    def __init__(self, websocket: WebSocketTestSession) -> None:
        self.websocket = websocket
        self._pending: deque[Event] = deque()
        self.frames = 0
        self.welcome: Event = {}

    def next(self) -> Event:
        while not self._pending:
            frame = self.websocket.receive_text()
            self.frames += 1
            self._pending.extend(json.loads(line) for line in frame.split("\n"))
        return self._pending.popleft()

    def next_of(self, kind: str, skipped: list[Event] | None = None) -> Event:
        """The next event of type `kind`; the others before it go to `skipped`, or are dropped."""
        while True:
            event = self.next()
            if event["type"] == kind:
                return event
            if skipped is not None:
                skipped.append(event)

    def closed(self) -> int:
        """Read on until the server closes the socket; its close code."""
        try:
            while True:
                self.next()
        except WebSocketDisconnect as closed:
            return closed.code

    def send(self, event: Event) -> None:
        self.websocket.send_text(json.dumps(event))

    def say(self, text: str) -> None:
        self.send({"type": "message", "text": text})


def another_browser(client: TestClient) -> TestClient:
    """Another browser on the server that `client` runs: its own cookies, the same app."""
    other = TestClient(client.app, base_url=str(client.base_url))
    other.portal = client.portal  # the running app, not a second lifespan
    other.app_state.update(client.app_state)
    return other


def app_with(**overrides: Any) -> Starlette:
    """The app with these settings; history in memory unless `backend_url` says otherwise,
    answering to TestClient's host name (`testserver`) unless `server_names` says otherwise."""
    overrides.setdefault("backend_url", "memory://")
    overrides.setdefault("server_names", ("testserver",))
    return create_app(Settings(**overrides))


@contextmanager
def chat(client: TestClient, query: str = "", token: str | None = None, **headers: str) -> Iterator[Events]:
    """A connection to /ws?QUERY, already past its welcome (in `events.welcome`); with
    `token`, offered as its subprotocol, it takes its name over (docs/protocol.md, "Resuming")."""
    subprotocols = resume_subprotocols(token) if token is not None else None
    with client.websocket_connect(f"/ws?{query}", subprotocols, headers=headers) as websocket:
        events = Events(websocket)
        events.welcome = events.next()
        assert events.welcome["type"] == "welcome", events.welcome
        yield events
