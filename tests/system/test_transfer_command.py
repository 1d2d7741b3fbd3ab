"""`chatroom export` and `chatroom import`, the real commands: a chat moved from SQLite to a
real Redis and back, compared message by message and used afterwards through the web layer
(paging, resume, the next id, accounts, rules and a guest's ban); an import run twice adds
nothing; bad files, conflicts and a running server are refused in one line, with nothing
written."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import orjson
from starlette.testclient import TestClient

from tests.support.servers import CHATROOM, ROOT
from tests.support.web import Events, app_with, chat
from tests.web.test_history import page, prefill
from tests.web.test_moderation import PASSWORD, account, act, claim, from_address, refusal

BIG = 2_500  # messages of the big room: several pages of every read and write


def command(*args: str, backend: str, stdin: bytes | Path = b"") -> subprocess.CompletedProcess[bytes]:
    environment = {**os.environ, "CHAT_BACKEND_URL": backend}
    if isinstance(stdin, Path):
        with stdin.open("rb") as file:
            return subprocess.run(
                [str(CHATROOM), *args], cwd=ROOT, env=environment, stdin=file, capture_output=True, timeout=120
            )
    return subprocess.run(
        [str(CHATROOM), *args], cwd=ROOT, env=environment, input=stdin, capture_output=True, timeout=120
    )


def export(backend: str, path: Path, *args: str) -> list[dict[str, Any]]:
    done = command("export", *args, backend=backend)
    assert done.returncode == 0, done.stderr
    path.write_bytes(done.stdout)
    return [orjson.loads(line) for line in done.stdout.splitlines()]


def imported(backend: str, path: Path) -> str:
    done = command("import", backend=backend, stdin=path)
    assert done.returncode == 0, done.stderr
    return done.stdout.decode()


def every_message(events: Events, room_messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The room's whole history as the web layer gives it: the welcome's, then pages back."""
    seen = list(events.welcome["history"])
    while seen and seen[0]["id"] > room_messages[0]["id"]:
        older = page(events, seen[0]["id"], 100)
        seen = older["messages"] + seen
    return seen


def wire(record: dict[str, Any]) -> dict[str, Any]:
    """A message record as the wire shows it (docs/protocol.md: `guest` only when true)."""
    fields = {"type": "message", **{key: value for key, value in record.items() if key not in ("kind", "guest")}}
    if record["guest"]:
        fields["guest"] = True
    return fields


def build(url: str) -> None:
    """A chat with a bit of everything: accounts, an owner, a topic, a banned guest, two rooms."""
    with TestClient(app_with(backend_url=url, rate_limit=0, history_limit=10_000)) as client:
        ann = account(client, "Ann")
        with chat(ann) as owner, chat(client, "name=troll") as troll:
            claim(owner)
            act(owner, {"type": "topic", "text": "Be kind"})
            owner.say("hello from Ann")
            troll.say("spam")
            act(owner, {"type": "ban", "name": "troll", "seconds": 3600, "reason": "spam"})
        prefill(client, "big", BIG)


def test_a_chat_moves_from_sqlite_to_redis_and_back_message_by_message(tmp_path: Path, redis_url: str) -> None:
    first = f"sqlite:///{tmp_path / 'first.db'}"
    last = f"sqlite:///{tmp_path / 'last.db'}"
    build(first)
    from_sqlite = export(first, tmp_path / "first.jsonl")
    header, *records = from_sqlite
    assert header["format"] == "chatroom-export"
    assert header["backend"] == "sqlite"
    kinds = [record["kind"] for record in records]
    assert kinds.count("message") == BIG + 2
    assert {"secret", "user", "room", "sanction", "audit"} <= set(kinds)
    assert kinds[-1] == "end"
    assert records[-1]["records"] == len(records) - 1
    assert next(record for record in records if record["kind"] == "user")["password"].startswith("$argon2id$")

    assert "2,502 messages" in imported(redis_url, tmp_path / "first.jsonl")
    assert "Nothing to import" in imported(redis_url, tmp_path / "first.jsonl")  # idempotent
    from_redis = export(redis_url, tmp_path / "redis.jsonl")
    assert from_redis[0]["backend"] == "redis"
    assert from_redis[1:] == records  # every message: id, order, name, text, ts, guest; the rest too
    imported(last, tmp_path / "redis.jsonl")
    assert export(last, tmp_path / "last.jsonl")[1:] == records

    for url in (redis_url, last):
        with TestClient(app_with(backend_url=url, rate_limit=0)) as client:
            big = [wire(record) for record in records if record["kind"] == "message" and record["room"] == "big"]
            with chat(client, "name=reader&room=big") as reader:
                assert every_message(reader, big) == big
                epoch = reader.welcome["epoch"]
            with chat(client, "name=writer&room=big") as writer:
                writer.say("after the move")
                assert writer.next_of("message")["id"] == BIG + 1  # ids go on after the imported ones
            with chat(client, f"name=reader&room=big&since={BIG}&epoch={epoch}") as resumed:
                assert [message["text"] for message in resumed.welcome["history"]] == ["after the move"]
                assert resumed.welcome["gap"] is False
            with chat(from_address(client, "192.0.2.7"), "name=newcomer") as lobby:
                assert lobby.welcome["topic"]["text"] == "Be kind"
                assert lobby.welcome["owner"] == "Ann"
            assert refusal(client, "name=troll")[0] == 4403  # the guest's ban: its hash and its key moved
            signed_in = client.post("/api/session", json={"name": "Ann", "password": PASSWORD})
            assert signed_in.status_code == 200, signed_in.text  # the password hash moved with the account
