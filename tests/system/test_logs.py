"""The log of real servers: one JSON object a line with CHAT_LOG_FORMAT=json (under `chatroom`
and, from the app's start on, plain uvicorn), readable text by default, and never a chat
message's text at INFO."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from app.core.protocol import CloseCode
from app.web.logs import INVALID_TEXT, REDACTED, UVICORN_INVALID_TEXT
from bench.server import free_port
from tests.support.certificates import Certificates
from tests.support.servers import (
    ROOT,
    Server,
    chatroom_command,
    client_context,
    open_peer,
    run_server,
    uvicorn_command,
)

pytestmark = pytest.mark.anyio

TEXT = "the text of a message nobody's log may hold"
TOKEN = "lGXek41efLcSHpa31K9R1g"  # noqa: S105 - a made-up one, offered in the URL


async def chat_a_little(server: Server, cafile: Path) -> None:
    """Two people, a message, a name refused (4409), a token in the URL (4400), and goodbyes."""
    ann = await open_peer(server, "name=ann&room=attic", cafile)
    bob = await open_peer(server, "name=bob&room=attic", cafile)
    await ann.say(TEXT)
    assert (await bob.next_of("message"))["text"] == TEXT
    for query in ("name=ANN&room=attic", f"name=cy&token={TOKEN}"):
        refused = await connect(server.url(query), ssl=client_context(cafile), open_timeout=10)
        with pytest.raises(ConnectionClosed):
            await refused.recv()
    await ann.connection.close()
    await bob.next_of("leave")
    await bob.connection.close()


def json_lines(log: str) -> list[dict[str, Any]]:
    """Every line of `log` as a JSON object (fails on one that is not)."""
    entries = []
    for line in log.splitlines():
        entry = json.loads(line)
        assert isinstance(entry, dict), line
        assert {"time", "level", "logger", "event", "message"} <= entry.keys(), line
        entries.append(entry)
    return entries


def closes(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [entry for entry in entries if entry["event"] == "connection_closed"]


def assert_the_chat_was_logged(entries: list[dict[str, Any]]) -> None:
    closed = closes(entries)
    by_name = {entry.get("name"): entry for entry in closed}
    assert by_name["ann"]["room"] == "attic"
    assert by_name["ann"]["code"] == CloseCode.NORMAL
    assert by_name["ann"]["by"] == "client"
    assert by_name["ann"]["address"] == "127.0.0.1"
    refused = sorted(entry["code"] for entry in closed if "name" not in entry)
    assert refused == [CloseCode.INVALID_NAME, CloseCode.NAME_TAKEN]
    assert all(entry["level"] == "info" for entry in closed)


async def test_chatroom_logs_one_json_object_a_line(tmp_path: Path) -> None:
    port = free_port()
    certs = tmp_path / "certs"
    command = chatroom_command(port, certs / "cert.pem", certs / "key.pem", "--log-level", "info")
    with run_server(command, port, tmp_path, env={"CHAT_LOG_FORMAT": "json"}) as server:
        await chat_a_little(server, certs / "cert.pem")
        server.stop()
    # Every line, from uvicorn's first to its last: the command configures logging before it starts.
    lines = [line for line in server.output.splitlines() if not line.startswith("chatroom: ")]  # its own prints
    entries = json_lines("\n".join(lines))
    assert_the_chat_was_logged(entries)
    assert any(
        entry["logger"] == "uvicorn.error" and "Application startup complete" in entry["message"] for entry in entries
    )
    assert TEXT not in server.output
    assert TOKEN not in server.output
    assert any(REDACTED in entry["message"] for entry in entries)  # the refused URL, as uvicorn logged it


async def test_plain_uvicorn_logs_json_from_the_app_start_on(certificates: Certificates, tmp_path: Path) -> None:
    port = free_port()
    command = uvicorn_command(port, certificates.cert, certificates.key)
    with run_server(command, port, tmp_path, env={"CHAT_LOG_FORMAT": "json"}) as server:
        await chat_a_little(server, certificates.ca)
        server.stop()
    log = server.output
    # uvicorn logs its first lines before the app can say anything: text, up to the app's start.
    started = log.index('{"time"')
    assert "Waiting for application startup" in log[:started]
    entries = json_lines(log[started:])
    assert_the_chat_was_logged(entries)
    assert any(entry["event"] == "request" or "WebSocket" in entry["message"] for entry in entries)
    assert TEXT not in log
    assert TOKEN not in log


async def test_plain_uvicorn_logs_every_line_as_json_with_the_log_config_of_the_docs(
    certificates: Certificates, tmp_path: Path
) -> None:
    port = free_port()
    config = ROOT / "docs" / "uvicorn-json-logs.json"
    command = uvicorn_command(port, certificates.cert, certificates.key, "--log-config", str(config))
    with run_server(command, port, tmp_path) as server:
        await chat_a_little(server, certificates.ca)
        server.stop()
    entries = json_lines(server.output)  # from uvicorn's first line
    assert "Started server process" in entries[0]["message"]
    assert_the_chat_was_logged(entries)
    assert TEXT not in server.output


async def test_by_default_the_log_is_readable_text(tmp_path: Path) -> None:
    port = free_port()
    certs = tmp_path / "certs"
    command = chatroom_command(port, certs / "cert.pem", certs / "key.pem", "--log-level", "info")
    with run_server(command, port, tmp_path) as server:
        await chat_a_little(server, certs / "cert.pem")
        server.stop()
    log = server.output
    assert "INFO:     ann in attic from 127.0.0.1: closed with 1000 by the client" in log
    assert "INFO:     connection from 127.0.0.1 refused: closed with 4409" in log
    assert '{"time"' not in log
    assert TEXT not in log


async def test_frames_that_are_not_utf8_leave_plain_uvicorn_log_without_tracebacks(
    certificates: Certificates, tmp_path: Path
) -> None:
    """uvicorn's stock protocol logs a traceback for each; the app's filter leaves one line each,
    and the others chat on."""
    port = free_port()
    command = uvicorn_command(port, certificates.cert, certificates.key)
    with run_server(command, port, tmp_path, env={"CHAT_RATE_LIMIT": "0"}) as server:
        ann = await open_peer(server, "name=ann", certificates.ca)
        bob = await open_peer(server, "name=bob", certificates.ca)
        for number in range(20):
            garbler = await open_peer(server, f"name=garbler{number}", certificates.ca)
            await garbler.connection.send(b'{"type":"message","text":"\xff\xfe"}', text=True)
            await asyncio.wait_for(garbler.connection.wait_closed(), 10)
            assert garbler.connection.close_code == CloseCode.INVALID_DATA
            await ann.say(f"still here {number}")
            assert (await bob.next_of("message"))["text"] == f"still here {number}"
        await ann.connection.close()
        await bob.connection.close()
        server.stop()
    log = server.output
    assert "Traceback" not in log
    assert UVICORN_INVALID_TEXT not in log
    assert log.count(INVALID_TEXT) == 20
