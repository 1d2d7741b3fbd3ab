"""Keeps resume tokens out of the server's log, at every log level.

A token travels in the handshake's Sec-WebSocket-Protocol header, which uvicorn's access log
leaves out; but at `--log-level debug` its WebSocket layer logs every request header, and a
client that puts the token in the URL (refused, with 4400) gets it into the access log's
request line. Whatever the level, the token becomes `[redacted]` before a handler sees it.
"""

from __future__ import annotations

import logging
import re

from app.core.protocol import TOKEN_SUBPROTOCOL

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
        logger = logging.getLogger(name)
        if not any(isinstance(each, RedactTokens) for each in logger.filters):
            logger.addFilter(RedactTokens())
