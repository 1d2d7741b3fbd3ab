"""How the server's log reads: readable text by default, or one JSON object a line
(`CHAT_LOG_FORMAT=json`), for chatroom's own loggers and uvicorn's alike.

`chatroom` hands uvicorn `log_config(...)`, so that every worker logs this way from its
start; under plain uvicorn the app's lifespan does what it can (`use_log_format`): it gives
chatroom's loggers uvicorn's handlers and, for JSON, puts the JSON formatter on them. What a
line holds never includes a chat message's text at INFO or above (nothing of the app logs
one; uvicorn's WebSocket layer logs frames at TRACE only).
"""

from __future__ import annotations

import copy
import datetime
import logging
from typing import Any

import orjson

TEXT, JSON = "text", "json"
LOG_FORMATS = (TEXT, JSON)
APP_LOGGER = "chatroom"  # and its children: chatroom.redis, chatroom.connections, ...
UVICORN_LOGGERS = ("uvicorn", "uvicorn.access")  # the two with handlers (uvicorn.error propagates to uvicorn)

# What a record may carry (`logger.info(..., extra={...})`), and its key in the JSON object. A
# screen name is `screen_name` in the record: `name` is the logger's, and logging refuses it.
FIELDS = {"room": "room", "screen_name": "name", "address": "address", "code": "code", "by": "by"}
# uvicorn's access log passes these as its arguments, in this order.
_ACCESS_ARGS = ("address", "method", "path", "http_version", "status")


class JsonFormatter(logging.Formatter):
    """One JSON object a line: `time` (UTC, ISO 8601), `level`, `logger`, `event` (what
    happened: a name of ours, `request` for an access log line, or else the message's
    template, the same for every line of its kind), `message`, and `room`, `name`, `address`,
    `code`, `by` where they apply; `exception`, a traceback in one string, if there is one."""

    def __init__(self, use_colors: bool | None = None) -> None:  # uvicorn passes use_colors
        super().__init__()

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        if record.name == "uvicorn.access" and isinstance(record.args, tuple) and len(record.args) == 5:
            entry["event"] = "request"
            entry.update(zip(_ACCESS_ARGS, record.args, strict=True))
        else:
            entry["event"] = getattr(record, "event", None) or str(record.msg)
        entry["message"] = record.getMessage()
        for field, key in FIELDS.items():
            value = getattr(record, field, None)
            if value is not None:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        return orjson.dumps(entry, default=str).decode()


def log_config(log_format: str, level: str) -> dict[str, Any]:
    """uvicorn's logging configuration, with chatroom's loggers beside its own, in `log_format`."""
    from uvicorn.config import LOGGING_CONFIG  # only `chatroom` runs uvicorn with it

    config = copy.deepcopy(LOGGING_CONFIG)
    if log_format == JSON:
        for formatter in config["formatters"].values():
            formatter.clear()
            formatter["()"] = f"{__name__}.JsonFormatter"
    config["loggers"][APP_LOGGER] = {"handlers": ["default"], "level": level.upper(), "propagate": False}
    return config


def use_log_format(log_format: str) -> None:
    """Under plain uvicorn: chatroom's loggers write where uvicorn's do, at its level, in
    `log_format`. Does nothing where uvicorn configured no logging (`--log-config` of one's
    own keeps its handlers, for chatroom's loggers too, unless they have some)."""
    uvicorn = logging.getLogger("uvicorn")
    app = logging.getLogger(APP_LOGGER)
    if not uvicorn.handlers:
        return
    if not app.handlers:
        for handler in uvicorn.handlers:
            app.addHandler(handler)
        app.setLevel(logging.getLogger("uvicorn.error").getEffectiveLevel())
        app.propagate = False
    if log_format == JSON:
        for name in (*UVICORN_LOGGERS, APP_LOGGER):
            for handler in logging.getLogger(name).handlers:
                if not isinstance(handler.formatter, JsonFormatter):
                    handler.setFormatter(JsonFormatter())
