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
from tests.support.web import Events, another_browser, app_with, chat
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


DMS = 4  # direct messages between Ann and Bob


def build(url: str) -> None:
    """A chat with a bit of everything: accounts, an owner, a topic, a banned guest, two rooms;
    a message edited, one deleted, one that two accounts reacted to, a read position; direct
    messages between two accounts, a buddy and a block."""
    with TestClient(app_with(backend_url=url, rate_limit=0, history_limit=10_000)) as client:
        ann, bob = account(client, "Ann"), account(client, "Bob")
        account(client, "Cy")
        with chat(ann) as owner, chat(client, "name=troll") as troll, chat(bob, "room=den") as friend:
            claim(owner)
            act(owner, {"type": "topic", "text": "Be kind"})
            owner.say("hello from Ann")
            hello = owner.next_of("message")
            troll.say("spam")
            act(owner, {"type": "ban", "name": "troll", "seconds": 3600, "reason": "spam"})
            owner.say("a typo hre")
            typo = owner.next_of("message")
            owner.send({"type": "edit", "id": typo["id"], "text": "the typo fixed"})
            assert owner.next_of("edit")["id"] == typo["id"]
            owner.say("the zanzibar plan")
            secret = owner.next_of("message")
            owner.send({"type": "delete", "id": secret["id"]})
            assert owner.next_of("delete")["id"] == secret["id"]
            with chat(bob) as bob_here:
                for reacting, emoji in ((owner, "❤️"), (bob_here, "👍"), (owner, "👍")):
                    reacting.send({"type": "react", "id": hello["id"], "emoji": emoji})
                    reactions = owner.next_of("reactions")["reactions"]
                assert reactions == {"👍": 2, "❤️": 1}
            owner.send({"type": "read", "id": typo["id"]})
            for n in range(DMS):
                sender, to = (owner, "Bob") if n % 2 == 0 else (friend, "Ann")
                sender.send({"type": "dm", "to": to, "text": f"direct {n}"})
                assert owner.next_of("dm")["id"] == friend.next_of("dm")["id"] == n + 1  # both accounts see it
            owner.send({"type": "buddy_add", "name": "Bob"})
            assert owner.next_of("buddy")["name"] == "Bob"
            owner.send({"type": "block", "name": "Cy"})
            assert owner.next_of("blocked")["name"] == "Cy"
        prefill(client, "big", BIG)


def signed_in(client: TestClient, name: str) -> TestClient:
    browser = another_browser(client)
    done = browser.post("/api/session", json={"name": name, "password": PASSWORD})
    assert done.status_code == 200, done.text  # the password hash moved with the account
    return browser


def test_a_chat_moves_from_sqlite_to_redis_and_back_message_by_message(tmp_path: Path, redis_url: str) -> None:
    first = f"sqlite:///{tmp_path / 'first.db'}"
    last = f"sqlite:///{tmp_path / 'last.db'}"
    build(first)
    from_sqlite = export(first, tmp_path / "first.jsonl")
    header, *records = from_sqlite
    assert header["format"] == "chatroom-export"
    assert header["backend"] == "sqlite"
    kinds = [record["kind"] for record in records]
    assert kinds.count("message") == BIG + 4
    said = [record for record in records if record["kind"] == "message" and record["room"] == "lobby"]
    hello, spam, edited, deleted = said
    assert hello["reactions"] == {"👍": ["ann", "bob"], "❤️": ["ann"]}  # who, not only how many
    assert (edited["text"], edited["edited_ts"] >= edited["ts"]) == ("the typo fixed", True)
    assert (deleted["text"], deleted["deleted"]) == ("", True)
    assert "zanzibar" not in (tmp_path / "first.jsonl").read_text()
    assert [record for record in records if record["kind"] == "read"] == [
        {"kind": "read", "key": "ann", "room": "lobby", "id": edited["id"]}
    ]
    assert {"secret", "user", "room", "sanction", "audit", "conversation", "buddy", "block"} <= set(kinds)
    assert kinds.count("dm") == DMS
    dms = [
        {"type": "dm", **{k: v for k, v in r.items() if k not in ("kind", "auto")}}
        for r in records
        if r["kind"] == "dm"
    ]
    assert kinds[-1] == "end"
    assert records[-1]["records"] == len(records) - 1
    assert next(record for record in records if record["kind"] == "user")["password"].startswith("$argon2id$")

    summary = imported(redis_url, tmp_path / "first.jsonl")
    assert "2,504 messages" in summary
    assert "1 read position" in summary
    assert f"{DMS} direct messages, 1 conversation, 1 buddy, 1 block" in summary
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
            with chat(from_address(client, "192.0.2.8"), "name=looker") as looker:
                assert looker.welcome["history"][-4:] == [
                    {**wire(hello), "reactions": {"👍": 2, "❤️": 1}},
                    wire(spam),
                    wire(edited),
                    wire(deleted),
                ]
            searcher = from_address(client, "192.0.2.9")  # the test client's own address is banned from the lobby
            assert [
                m["id"] for m in searcher.get("/api/rooms/lobby/search", params={"q": "fixed"}).json()["messages"]
            ] == [edited["id"]]
            assert searcher.get("/api/rooms/lobby/search", params={"q": "zanzibar"}).json()["messages"] == []
            assert client.get("/api/rooms/lobby/search", params={"q": "fixed"}).status_code == 401  # the ban moved too
            with chat(signed_in(client, "Ann")) as ann_here:
                assert ann_here.welcome["read"] == edited["id"]  # the first unread comes after it
                ann_here.send({"type": "react", "id": hello["id"], "emoji": "👍"})  # Ann's taken back
                assert ann_here.next_of("reactions")["reactions"] == {"👍": 1, "❤️": 1}
            assert refusal(client, "name=troll")[0] == 4403  # the guest's ban: its hash and its key moved
            with chat(signed_in(client, "Ann")) as ann:
                assert [buddy["name"] for buddy in ann.welcome["buddies"]] == ["Bob"]
                assert ann.welcome["blocked"] == ["Cy"]
                assert [(c["with"], c["last"], c["ts"]) for c in ann.welcome["conversations"]] == [
                    ("Bob", DMS, dms[-1]["ts"])
                ]
                ann.send({"type": "dm_history", "with": "Bob", "limit": 2})
                latest = ann.next_of("dm_history")
                assert (latest["messages"], latest["more"]) == (dms[-2:], True)
                ann.send({"type": "dm_history", "with": "Bob", "before": DMS - 1})
                assert ann.next_of("dm_history")["messages"] == dms[:-2]
                ann.send({"type": "dm", "to": "Bob", "text": "after the move"})
                assert ann.next_of("dm")["id"] == DMS + 1  # the conversation's ids go on after the imported ones


def test_bad_files_conflicts_and_a_running_server_are_refused_in_one_line(tmp_path: Path) -> None:
    source = f"sqlite:///{tmp_path / 'source.db'}"
    target = f"sqlite:///{tmp_path / 'target.db'}"
    with TestClient(app_with(backend_url=source)) as client:
        prefill(client, "lobby", 30)
        whole = export(source, tmp_path / "whole.jsonl")  # beside the running server
    lines = (tmp_path / "whole.jsonl").read_bytes().splitlines(keepends=True)
    cut = tmp_path / "cut.jsonl"
    cut.write_bytes(b"".join(lines[:-5]))
    refused = command("import", backend=target, stdin=cut)
    assert refused.returncode == 1
    assert refused.stderr.decode().splitlines() == [
        f"chatroom import: line {len(lines) - 4}: the file ends without its end record: it was cut short; "
        "nothing was imported"
    ]
    broken = tmp_path / "broken.jsonl"
    broken.write_bytes(b"".join([*lines[:10], b'{"kind": "message"\n', *lines[11:]]))
    refused = command("import", backend=target, stdin=broken.read_bytes())  # from a pipe
    assert refused.returncode == 1
    assert refused.stderr.decode().startswith("chatroom import: line 11: not JSON")
    assert command("export", backend=target).stdout.count(b'"kind":"message"') == 0  # nothing half-imported

    with TestClient(app_with(backend_url=target)) as client:
        busy = command("import", backend=target, stdin=tmp_path / "whole.jsonl")
        assert busy.returncode == 1
        assert "in use by another chatroom process" in busy.stderr.decode()
        prefill(client, "lobby", 3)  # another history in the room
    conflict = command("import", backend=target, stdin=tmp_path / "whole.jsonl")
    assert conflict.returncode == 1
    assert "line 3: message 1 of 'lobby' is not the one the target holds" in conflict.stderr.decode()

    one_room = export(source, tmp_path / "lobby.jsonl", "--room", "Lobby")
    assert one_room[0]["room"] == "lobby"
    assert [record["kind"] for record in one_room[1:]] == [record["kind"] for record in whole[1:]]
    missing = command("export", "--room", "attic", backend=source)
    assert missing.returncode == 1
    assert missing.stderr.decode().strip() == "chatroom export: The store holds no room named 'attic'"
    assert not missing.stdout
    nowhere = command("export", backend=f"sqlite:///{tmp_path / 'nowhere.db'}")
    assert nowhere.returncode == 1
    assert "No database" in nowhere.stderr.decode()
    assert command("import", backend="memory://", stdin=tmp_path / "whole.jsonl").returncode == 1


def test_the_progress_bar_is_drawn_on_a_terminal_only(tmp_path: Path) -> None:
    import pty

    url = f"sqlite:///{tmp_path / 'chat.db'}"
    with TestClient(app_with(backend_url=url)) as client:
        prefill(client, "lobby", 3000)
    quiet = command("export", backend=url)
    assert quiet.stderr.decode().splitlines() == [
        "Exported 3,000 messages, 1 room, 0 accounts, 0 direct messages, 0 conversations, 0 buddies, 0 blocks, "
        "0 read positions, 0 bans or mutes, 0 audit entries"
    ]
    controller, terminal = pty.openpty()
    with (tmp_path / "out.jsonl").open("wb") as out:
        environment = {**os.environ, "CHAT_BACKEND_URL": url}
        subprocess.run([str(CHATROOM), "export"], cwd=ROOT, env=environment, stdout=out, stderr=terminal, timeout=60)
    os.close(terminal)
    drawn = b""
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # the terminal's other end closed: all read
            break
        if not chunk:
            break
        drawn += chunk
    os.close(controller)
    assert b"exporting [" in drawn
    assert b"Exported 3,000 messages" in drawn
