"""Resume tokens never reach a log: wherever one shows in a log record, it is redacted."""

from __future__ import annotations

import logging
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from uvicorn.logging import AccessFormatter

from app.web.logs import REDACTED, RedactTokens, keep_tokens_out_of_logs, redact
from tests.support.properties import budget

BASE64URL = string.ascii_letters + string.digits + "-_"
tokens = st.text(st.sampled_from(BASE64URL), min_size=8, max_size=43)
# Around a token in a log line: anything but the characters a token is made of.
around = st.text(st.sampled_from(" /?&=:;,\"'[]()<>#%\t"), max_size=12)
# Where a token can show (an offered subprotocol, a query parameter, a welcome in a frame),
# as far as the end of a log line or a space.
places = st.sampled_from(
    [
        "chatroom, chatroom.token.{}",
        "chatroom.token.{}, chatroom",
        "/ws?name=ann&token={}",
        "/ws?token={}&name=ann&since=4",
        '\'{{"type":"welcome","name":"ann","token":"{}","online":[]}}\'',
    ]
)


@settings(max_examples=budget(300))
@given(tokens, places, around, around)
def test_a_token_anywhere_a_log_line_can_hold_one_is_redacted(token: str, place: str, before: str, after: str) -> None:
    line = before + place.format(token) + " " + after
    redacted = redact(line)
    assert token not in redacted
    assert redacted == before + place.format(REDACTED) + " " + after  # and nothing else changed


@pytest.mark.parametrize(
    "line", ["/ws?name=ann&room=token", "/ws?mytoken=abc", "a token=", '"tokens":"abc"', "chatroom.tokens", "x.token=a"]
)
def test_what_is_not_a_token_is_left_alone(line: str) -> None:
    assert redact(line) == line


def test_the_access_log_keeps_its_format_with_the_token_redacted() -> None:
    args = ("127.0.0.1:5000", "GET", "/ws?name=ann&token=lGXek41efLcSHpa31K9R1g", "1.1", 400)
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d', args, None)
    assert RedactTokens().filter(record)
    line = AccessFormatter("%(client_addr)s %(request_line)s %(status_code)s", use_colors=False).format(record)
    assert line == f"127.0.0.1:5000 GET /ws?name=ann&token={REDACTED} HTTP/1.1 400 Bad Request"


def test_the_filter_is_installed_once_however_many_apps_start() -> None:
    for _ in range(3):
        keep_tokens_out_of_logs()
    for name in ("uvicorn.error", "uvicorn.access"):
        assert sum(isinstance(each, RedactTokens) for each in logging.getLogger(name).filters) == 1
