"""Accounts on a real server, as a program uses them: JSON over https (http.client), the
session cookie carried by hand (no cookie jar to guess what it keeps), and the socket of
a signed-in user."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import subprocess
from dataclasses import dataclass
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

from app.web.accounts import PLAIN_COOKIE, SECURE_COOKIE
from tests.support.servers import CHATROOM, ROOT, Peer, Server, client_context, open_peer

PASSWORD = "correct horse battery"  # noqa: S105 - test accounts'


@dataclass
class Answer:
    status: int
    body: Any
    headers: http.client.HTTPMessage

    @property
    def cookie(self) -> str | None:
        """The session id the answer sets, if it sets one (the empty value: it clears it)."""
        for header in self.headers.get_all("set-cookie") or []:
            for name, morsel in SimpleCookie(header).items():
                if name in (SECURE_COOKIE, PLAIN_COOKIE):
                    return morsel.value
        return None


def request(
    server: Server,
    cafile: Path,
    method: str,
    path: str,
    body: dict[str, str] | None = None,
    session: str | None = None,
    source: str | None = None,
) -> Answer:
    """One request to `server` on a connection of its own (from the address `source`, a
    loopback one, if given), with `session` in the cookie that `server`'s scheme calls for."""
    connection = http.client.HTTPSConnection(
        "127.0.0.1",
        server.port,
        context=client_context(cafile),
        timeout=30,
        source_address=(source, 0) if source is not None else None,
    )
    headers = {"content-type": "application/json"}
    if session is not None:
        headers["cookie"] = f"{SECURE_COOKIE}={session}"
    try:
        connection.request(method, path, json.dumps(body) if body is not None else None, headers)
        response = connection.getresponse()
        raw = response.read()
        return Answer(response.status, json.loads(raw) if raw else None, response.headers)
    finally:
        connection.close()


async def sign_in(server: Server, cafile: Path, name: str, password: str = PASSWORD) -> str:
    """A new session of `name` on `server`: its id."""
    answer = await asyncio.to_thread(
        request, server, cafile, "POST", "/api/session", {"name": name, "password": password}
    )
    assert answer.status == 200, (answer.status, answer.body)
    assert answer.cookie
    return answer.cookie


async def signed_in_as(server: Server, cafile: Path, session: str) -> Any:
    """What `GET /api/session` says of `session`: `{"name", "admin"}`, or None for a 401."""
    answer = await asyncio.to_thread(request, server, cafile, "GET", "/api/session", session=session)
    assert answer.status in (200, 401), answer.status
    return answer.body if answer.status == 200 else None


async def open_signed_in(server: Server, cafile: Path, session: str, room: str = "lobby") -> Peer:
    return await open_peer(server, f"room={room}", cafile, additional_headers={"cookie": f"{SECURE_COOKIE}={session}"})


def users_command(
    backend_url: str, *args: str, password: str | None = None, stdin: int | None = subprocess.DEVNULL
) -> subprocess.CompletedProcess[str]:
    """`chatroom users ARGS --backend URL`, with `password` on its stdin (for --password-stdin)."""
    return subprocess.run(
        [str(CHATROOM), "users", *args, "--backend", backend_url],
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        input=f"{password}\n" if password is not None else None,
        stdin=None if password is not None else stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
