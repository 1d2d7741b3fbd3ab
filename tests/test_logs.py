"""The JSON log format (app/logs.py): one object a line, whatever a record holds."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from app.logs import JsonFormatter, log_config
from app.settings import Settings
from app.web.logs import REDACTED, RedactTokens


def record(name: str, message: str, args: tuple[object, ...] = (), **extra: object) -> logging.LogRecord:
    made = logging.LogRecord(name, logging.INFO, __file__, 1, message, args, None)
    made.__dict__.update(extra)
    return made


def test_an_access_line_has_its_parts_and_no_token() -> None:
    args = ("127.0.0.1:5000", "GET", "/ws?name=ann&token=lGXek41efLcSHpa31K9R1g", "1.1", 400)
    access = record("uvicorn.access", '%s - "%s %s HTTP/%s" %d', args)
    assert RedactTokens().filter(access)
    entry = json.loads(JsonFormatter().format(access))
    assert entry["event"] == "request"
    assert entry["address"] == "127.0.0.1:5000"
    assert entry["path"] == f"/ws?name=ann&token={REDACTED}"
    assert entry["status"] == 400
    assert "lGXek41efLcSHpa31K9R1g" not in json.dumps(entry)


def test_the_fields_of_a_connection_are_named_as_documented() -> None:
    extra = {"event": "connection_closed", "room": "lobby", "screen_name": "ann", "address": "::1", "code": 1000}
    line = JsonFormatter().format(record("chatroom.connections", "ann left %s", ("lobby",), by="client", **extra))
    entry = json.loads(line)
    assert entry["level"] == "info"
    assert entry["logger"] == "chatroom.connections"
    assert entry["time"].endswith("+00:00")
    assert entry["message"] == "ann left lobby"
    assert {key: entry[key] for key in ("event", "room", "name", "address", "code", "by")} == {
        "event": "connection_closed",
        "room": "lobby",
        "name": "ann",
        "address": "::1",
        "code": 1000,
        "by": "client",
    }


def test_a_traceback_stays_on_one_line() -> None:
    try:
        raise ValueError("broken\nacross lines")
    except ValueError:
        failed = logging.LogRecord("chatroom", logging.ERROR, __file__, 1, "it failed", (), sys.exc_info())
    line = JsonFormatter().format(failed)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["event"] == "it failed"
    assert "ValueError: broken\nacross lines" in entry["exception"]


def test_the_configuration_puts_chatroom_beside_uvicorn() -> None:
    config = log_config("json", "warning")
    assert config["loggers"]["chatroom"] == {"handlers": ["default"], "level": "WARNING", "propagate": False}
    assert all(formatter == {"()": "app.logs.JsonFormatter"} for formatter in config["formatters"].values())
    assert log_config("text", "info")["formatters"]["default"]["()"] == "uvicorn.logging.DefaultFormatter"


@pytest.mark.parametrize("log_format", ["JSON", "yaml", ""])
def test_log_format_is_text_or_json(log_format: str) -> None:
    with pytest.raises(ValueError, match="log_format must be 'text' or 'json'"):
        Settings(log_format=log_format)
