from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme
from hypothesis import settings

from tests.redis_server import RedisServer, running_redis

# Property-based tests run the same examples on every run and every machine (derandomized,
# no example database), each with a budget of examples that keeps the suite quick. For a
# longer, randomised search: HYPOTHESIS_PROFILE=deep ./scripts/test -k "fuzz or names"
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
settings.register_profile("ci", derandomize=True, database=None, deadline=None, print_blob=True)
settings.register_profile("deep", database=None, deadline=None, print_blob=True)
settings.load_profile(PROFILE)


def budget(examples: int) -> int:
    """A property test's number of examples: as given in CI, twenty times more in the deep profile."""
    return examples * 20 if PROFILE == "deep" else examples


@dataclass(frozen=True)
class Certificates:
    ca: Path
    cert: Path
    key: Path


@pytest.fixture(scope="session")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    """A real CA and a server certificate for 127.0.0.1 and localhost, made by trustme."""
    folder = tmp_path_factory.mktemp("tls")
    authority = trustme.CA()
    issued = authority.issue_cert("127.0.0.1", "localhost")
    ca, cert, key = folder / "ca.pem", folder / "cert.pem", folder / "key.pem"
    authority.cert_pem.write_to_path(str(ca))
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    return Certificates(ca, cert, key)


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
