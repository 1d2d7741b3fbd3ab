"""Keeps the server's log clean: no resume token at any log level, and no traceback that any
client can have logged at will.

A token travels in the handshake's Sec-WebSocket-Protocol header, which uvicorn's access log
leaves out; but at `--log-level debug` its WebSocket layer logs every request header, and a
client that puts the token in the URL (refused, with 4400) gets it into the access log's
request line. Whatever the level, the token becomes `[redacted]` before a handler sees it.

Under plain uvicorn, its stock WebSocket protocol logs a text frame that is not UTF-8 as an
error, with a traceback of its own code: every client can send as many as it opens
connections. `QuietInvalidText` makes it the one line that the connection's close is worth
(chatroom's own protocol closes such a frame with 1007 without logging it at all).
"""

from __future__ import annotations

import logging
import re

from app.core.protocol import TOKEN_SUBPROTOCOL, CloseCode

REDACTED = "[redacted]"
# Where a token shows: an offered subprotocol (up to the next one), a URL's query parameter
# (up to the next one), a welcome's field. Whatever a client put there, a real token or not.
_TOKEN = re.compile(
    rf"(?<={re.escape(TOKEN_SUBPROTOCOL)})[^\s,\"']+"
    r"|(?<![\w.-]token=)(?<=token=)[^\s&\"'#]+"
    r'|(?<="token":")[^"]+'
)
# The loggers uvicorn writes through: its own messages and those of its WebSocket layer, and
# the HTTP access log.
LOGGERS = ("uvicorn.error", "uvicorn.access")


def redact(message: str) -> str:
    return _TOKEN.sub(REDACTED, message)


class RedactTokens(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        # Argument by argument, not the formatted message: uvicorn's access formatter reads
        # its arguments (client, method, path, ...) from the record.
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_redacted(arg) for arg in record.args)
        elif record.args:
            message = record.getMessage()
            record.msg, record.args = redact(message), None
        return True


def _redacted(arg: object) -> object:
    if isinstance(arg, int | float):
        return arg
    text = str(arg)  # a frame, a header value, a path
    redacted = redact(text)
    return arg if redacted == text else redacted


def keep_tokens_out_of_logs() -> None:
    """Install the filter on uvicorn's loggers, once per process however many apps start."""
    for name in LOGGERS:
        _install(logging.getLogger(name), RedactTokens)


# What uvicorn's stock protocol (websockets_sansio_impl) logs, with logger.exception, for
# each text frame that is not UTF-8; it then closes the connection with 1007.
UVICORN_INVALID_TEXT = "Invalid UTF-8 sequence received from client."
INVALID_TEXT = "a text frame that was not UTF-8: closed with 1007"


class QuietInvalidText(logging.Filter):
    """uvicorn's error with a traceback for a frame that is not UTF-8, as one line at INFO."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == UVICORN_INVALID_TEXT:
            record.msg, record.args = INVALID_TEXT, None
            record.exc_info = record.exc_text = record.stack_info = None
            record.levelno, record.levelname = logging.INFO, logging.getLevelName(logging.INFO)
            record.event, record.code, record.by = "invalid_text", int(CloseCode.INVALID_DATA), "server"
        return True


def quiet_invalid_text() -> None:
    """Install `QuietInvalidText` on uvicorn's error log, once per process."""
    _install(logging.getLogger("uvicorn.error"), QuietInvalidText)


def _install(logger: logging.Logger, kind: type[logging.Filter]) -> None:
    if not any(isinstance(each, kind) for each in logger.filters):
        logger.addFilter(kind())
