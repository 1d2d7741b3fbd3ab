"""`GET /healthz` of a real server whose Redis died: the status to anyone, what is wrong only
to the addresses of CHAT_METRICS_ALLOW, never through a proxy."""

from __future__ import annotations

import asyncio
import http.client
import json
from pathlib import Path
from typing import Any

import pytest

from bench.server import free_port
from tests.support.certificates import Certificates
from tests.support.redis_server import running_redis
from tests.support.servers import Server, chatroom_command, client_context, run_server, uvicorn_command

pytestmark = pytest.mark.anyio


def health(server: Server, cafile: Path, headers: dict[str, str]) -> tuple[int, Any]:
    connection = http.client.HTTPSConnection("127.0.0.1", server.port, context=client_context(cafile), timeout=10)
    try:
        connection.request("GET", "/healthz", headers=headers)
        answer = connection.getresponse()
        return answer.status, json.loads(answer.read())
    finally:
        connection.close()


async def unhealthy(server: Server, cafile: Path) -> None:
    async with asyncio.timeout(15):
        # Another process's state: nothing to await but its answers.
        while (await asyncio.to_thread(health, server, cafile, {}))[0] != 503:  # noqa: ASYNC110
            await asyncio.sleep(0.05)


@pytest.mark.parametrize("command", [chatroom_command, uvicorn_command])
@pytest.mark.parametrize(("allow", "told"), [(None, True), ("::1,192.0.2.0/24", False)])
async def test_only_allowed_addresses_hear_what_is_wrong(
    command: Any, allow: str | None, told: bool, certificates: Certificates, tmp_path: Path
) -> None:
    with running_redis(tmp_path / "redis") as redis:
        env = {"CHAT_BACKEND_URL": redis.url} | ({"CHAT_METRICS_ALLOW": allow} if allow is not None else {})
        port = free_port()
        with run_server(command(port, certificates.cert, certificates.key), port, tmp_path, env) as server:
            assert await asyncio.to_thread(health, server, certificates.ca, {}) == (200, {"status": "ok"})
            redis.kill()
            await unhealthy(server, certificates.ca)
            status, body = await asyncio.to_thread(health, server, certificates.ca, {})
            assert status == 503
            assert ("detail" in body) is told
            if told:
                assert f"127.0.0.1:{redis.port}" in body["detail"]
            for header in ("X-Forwarded-For", "Forwarded", "X-Real-IP"):
                forwarded = {header: "127.0.0.1"}
                assert await asyncio.to_thread(health, server, certificates.ca, forwarded) == (
                    503,
                    {"status": "unavailable"},
                )
