"""`chatroom audit`, the real command, beside a running app: the log of every room or of one,
newest first, paged; and a clear refusal where there is no store to read."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from tests.support.servers import CHATROOM, ROOT
from tests.support.web import app_with, chat
from tests.web.test_moderation import account, act, claim


def audit(*args: str, backend: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "CHAT_BACKEND_URL": backend}
    return subprocess.run(
        [str(CHATROOM), "audit", *args], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=30
    )


@pytest.mark.parametrize("store", ["sqlite", "redis"])
def test_the_operator_reads_the_log_of_every_room_or_of_one(
    store: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = f"sqlite:///{tmp_path / 'chat.db'}" if store == "sqlite" else request.getfixturevalue("redis_url")
    with TestClient(app_with(backend_url=url)) as client:  # the server runs meanwhile
        with chat(account(client, "Ann")) as owner, chat(client, "name=troll"):
            claim(owner)
            act(owner, {"type": "ban", "name": "troll", "seconds": 3600, "reason": "spam"})
        with chat(account(client, "Bob"), "room=den") as elsewhere:
            claim(elsewhere)
        everything = audit(backend=url)
        assert everything.returncode == 0, everything.stderr
        lines = everything.stdout.splitlines()
        assert len(lines) == 3
        assert "#den  Bob  claim" in lines[0]  # newest first
        banned = lines[1]
        for part in ("#lobby", "Ann", "ban", "troll", "until 20", "reason: spam"):
            assert part in banned
        assert "#lobby  Ann  claim" in lines[2]
        lobby = audit("--room", "LOBBY", backend=url).stdout.splitlines()
        assert lobby == lines[1:]
        newest_id = lines[0].split()[0]
        assert audit("--before", newest_id, "--limit", "1", backend=url).stdout.splitlines() == [lines[1]]
        assert audit("--room", "attic", backend=url).stdout.strip() == "No moderation actions recorded"


def test_the_command_says_why_it_cannot_read(tmp_path: Path) -> None:
    memory = audit(backend="memory://")
    assert memory.returncode == 1
    assert "sqlite:// or redis://" in memory.stderr
    missing = audit(backend=f"sqlite:///{tmp_path / 'nowhere.db'}")
    assert missing.returncode == 1
    assert "No database" in missing.stderr
    assert not (tmp_path / "nowhere.db").exists()
    bad = audit("--room", "a\u202eb", backend=f"sqlite:///{tmp_path / 'nowhere.db'}")
    assert bad.returncode == 1
