"""`GET /healthz`: its status to anyone, what is wrong only to the addresses of CHAT_METRICS_ALLOW."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from app.settings import Settings
from app.web.operators import Operators
from tests.support.redis_server import running_redis
from tests.support.web import app_with

LOOPBACK = ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"]
OTHERS = ["192.0.2.1", "10.0.0.1", "172.16.0.1", "::2", "2001:db8::1", "::ffff:192.0.2.1", "fe80::1%eth0", "testclient"]


def health_of_a_dead_redis(tmp_path: Path, client: str, headers: dict[str, str] | None = None, **settings: Any) -> Any:
    """What `client` hears from /healthz of a server whose Redis was just killed: (status, body)."""
    with running_redis(tmp_path / "redis") as redis:
        app = app_with(backend_url=redis.url, **settings)
        with TestClient(app, client=(client, 50000)) as http:
            assert http.get("/healthz").json() == {"status": "ok"}
            redis.kill()
            answer = http.get("/healthz", headers=headers or {})
            return answer.status_code, answer.json()


@pytest.mark.parametrize("client", LOOPBACK)
def test_by_default_loopback_hears_what_is_wrong(tmp_path: Path, client: str) -> None:
    status, body = health_of_a_dead_redis(tmp_path, client)
    assert status == 503
    assert body["status"] == "unavailable"
    assert "127.0.0.1:" in body["detail"]  # the Redis address: for operators only


@pytest.mark.parametrize("client", OTHERS)
def test_others_hear_only_the_status_with_the_same_code(tmp_path: Path, client: str) -> None:
    assert health_of_a_dead_redis(tmp_path, client) == (503, {"status": "unavailable"})


@pytest.mark.parametrize("header", ["X-Forwarded-For", "Forwarded", "X-Real-IP"])
def test_through_a_proxy_even_loopback_hears_only_the_status(tmp_path: Path, header: str) -> None:
    """The proxy's address may be loopback, and whoever is behind it anyone."""
    got = health_of_a_dead_redis(tmp_path, "127.0.0.1", {header: "203.0.113.9"})
    assert got == (503, {"status": "unavailable"})


def test_metrics_allow_names_who_hears_it(tmp_path: Path) -> None:
    allow = ("10.0.0.0/8", "2001:db8::/32", "192.0.2.7")
    for client, told in (("10.1.2.3", True), ("2001:db8:5::1", True), ("192.0.2.7", True), ("127.0.0.1", False)):
        _, body = health_of_a_dead_redis(tmp_path / client, client, metrics_allow=allow)
        assert ("detail" in body) is told, client
    _, body = health_of_a_dead_redis(tmp_path / "nobody", "127.0.0.1", metrics_allow=())
    assert "detail" not in body


@pytest.mark.parametrize(
    ("client", "admitted"),
    [*((client, True) for client in LOOPBACK), *((client, False) for client in OTHERS), (None, False)],
)
def test_who_is_admitted_by_default(client: str | None, admitted: bool) -> None:
    assert Operators(Settings().metrics_allow).admit(client, {}) is admitted


@pytest.mark.parametrize("allow", ["localhost", "10.0.0.0/33", "10.0.0.1/8/8", "", "*"])
def test_metrics_allow_takes_addresses_and_networks_only(allow: str) -> None:
    with pytest.raises(ValueError, match="metrics_allow: expected addresses or networks"):
        Settings(metrics_allow=(allow,))
