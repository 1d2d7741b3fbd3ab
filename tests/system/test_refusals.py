"""Refused names: over a real `chatroom` server, the close code and its reason reach the client."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from app.core.protocol import MAX_CLOSE_REASON_BYTES, CloseCode, close_reason
from bench.server import free_port
from tests.support.certificates import Certificates
from tests.support.servers import Server, chatroom_command, client_context, open_peer, run_server

pytestmark = pytest.mark.anyio


@pytest.fixture
def server(certificates: Certificates, tmp_path: Path) -> Iterator[Server]:
    port = free_port()
    with run_server(chatroom_command(port, certificates.cert, certificates.key), port, tmp_path) as server:
        yield server


async def refusal(server: Server, query: str, certificates: Certificates) -> tuple[int, str]:
    async with connect(server.url(query), ssl=client_context(certificates.ca), open_timeout=10) as refused:
        with pytest.raises(ConnectionClosed) as closed:
            await refused.recv()
    assert closed.value.rcvd is not None, "closed without a close frame"
    return closed.value.rcvd.code, closed.value.rcvd.reason


@pytest.mark.parametrize(
    ("online", "twin", "room"),
    [
        ("ann", "\u0430nn", "lobby"),  # a Cyrillic a
        ("\u540d" * 24, "\u540d" * 24, "\u90e8" * 24),  # a reason of 170 bytes, over what a close frame holds
    ],
)
async def test_a_name_taken_is_refused_with_4409_and_a_reason_that_fits_a_close_frame(
    server: Server, certificates: Certificates, online: str, twin: str, room: str
) -> None:
    first = await open_peer(server, f"name={quote(online)}&room={quote(room)}", certificates.ca)
    try:
        code, reason = await refusal(server, f"name={quote(twin)}&room={quote(room)}", certificates)
        assert code == CloseCode.NAME_TAKEN
        assert "already online" in reason
        assert len(reason.encode()) <= MAX_CLOSE_REASON_BYTES
        await first.say("still here")
        assert (await first.next_of("message"))["text"] == "still here"
    finally:
        await first.connection.close()
    assert "Traceback" not in server.read_log()


async def test_an_invisible_character_is_refused_with_4400_saying_which(
    server: Server, certificates: Certificates
) -> None:
    code, reason = await refusal(server, "name=" + quote("ann\ufe07"), certificates)
    assert (code, reason) == (
        CloseCode.INVALID_NAME,
        "The name may contain only printable characters, and U+FE07 is invisible",
    )


@given(st.text())
@example("\u540d" * 42)  # 126 bytes: the cut falls inside the last character
def test_a_close_reason_is_cut_to_what_a_close_frame_carries_at_a_character_boundary(text: str) -> None:
    reason = close_reason(text)
    assert text.startswith(reason)
    assert len(reason.encode()) <= MAX_CLOSE_REASON_BYTES
    assert reason == text or len(reason.encode()) > MAX_CLOSE_REASON_BYTES - 4
