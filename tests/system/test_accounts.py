"""Accounts on real servers over TLS: sessions shared by two processes on one real Redis."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.core.protocol import CloseCode
from bench.server import free_port
from tests.support.accounts import PASSWORD, open_signed_in, request, sign_in, signed_in_as
from tests.support.certificates import Certificates
from tests.support.servers import Server, run_server, uvicorn_command

pytestmark = pytest.mark.anyio

NEW_PASSWORD = "another long password"  # noqa: S105 - a test account's


@contextlib.contextmanager
def redis_server_process(certificates: Certificates, tmp_path: Path, redis_url: str) -> Iterator[Server]:
    port = free_port()
    command = uvicorn_command(port, certificates.cert, certificates.key)
    with run_server(command, port, tmp_path, env={"CHAT_BACKEND_URL": redis_url}) as server:
        yield server


async def test_a_new_password_on_one_process_closes_the_other_sessions_sockets_on_another(
    certificates: Certificates, tmp_path: Path, redis_url: str
) -> None:
    ca = certificates.ca
    with (
        redis_server_process(certificates, tmp_path, redis_url) as first,
        redis_server_process(certificates, tmp_path, redis_url) as second,
    ):
        registered = await asyncio.to_thread(
            request, first, ca, "POST", "/api/account", {"name": "Ann", "password": PASSWORD}
        )
        assert registered.status == 201
        here = registered.cookie
        assert here is not None
        there = await sign_in(second, ca, "ann")  # a session made on one process, honoured on both
        assert await signed_in_as(first, ca, there) == {"name": "Ann", "admin": False}
        sockets = {
            (session, server.port): await open_signed_in(server, ca, session)
            for session in (here, there)
            for server in (first, second)
        }

        changed = await asyncio.to_thread(
            request,
            first,
            ca,
            "POST",
            "/api/account/password",
            {"password": PASSWORD, "new_password": NEW_PASSWORD},
            session=here,
        )
        assert changed.status == 204
        for server in (first, second):
            ended = sockets[there, server.port]
            await asyncio.wait_for(ended.connection.wait_closed(), 5)
            assert ended.connection.close_code == CloseCode.NOT_SIGNED_IN
            assert ended.connection.close_reason == "Your password was changed"
            assert await signed_in_as(server, ca, there) is None
        # The session that changed it goes on, on both processes.
        await sockets[here, second.port].say("still here")
        for server in (first, second):
            assert (await sockets[here, server.port].next_of("message"))["text"] == "still here"
            assert await signed_in_as(server, ca, here) == {"name": "Ann", "admin": False}
        old = await asyncio.to_thread(
            request, second, ca, "POST", "/api/session", {"name": "ann", "password": PASSWORD}
        )
        assert old.status == 401
        await sign_in(second, ca, "ann", NEW_PASSWORD)
        for server in (first, second):
            await sockets[here, server.port].connection.close()
