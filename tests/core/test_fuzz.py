"""Hypothesis throws frames of every shape at the core: a session in a hub, with fake connections.

Each gets the answer docs/protocol.md gives (tests/support/frames.py), and an observer in the
room receives nothing but valid events.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from app.backends.memory import MemoryBackend
from app.core.hub import Hub
from app.core.messenger import install as install_messenger
from app.core.moderation.service import install
from app.core.protocol import CloseCode, ErrorCode
from app.settings import Settings
from tests.support.fakes import FakeConnection
from tests.support.frames import Answer, Binary, Close, Echo, Error, RawText, Sent, check_event, expected, frames
from tests.support.properties import budget


async def exchange(sent: list[str | bytes]) -> tuple[list[Answer], list[dict[str, Any]]]:
    """Feed `sent` to one client, one frame at a time; its answers, and what an observer got."""
    settings = Settings(rate_limit=0, close_timeout=0.5)
    hub = Hub(MemoryBackend("memory://", settings), settings)
    moderation = install(hub)  # as the app does: moderation orders are part of the protocol
    install_messenger(hub, hub.backend.accounts)
    await hub.start()
    watching, fuzzing = FakeConnection(), FakeConnection()
    await hub.join(watching, watching.abort, "lobby", "observer")
    fuzzer = await hub.join(fuzzing, fuzzing.abort, "lobby", "fuzzer")
    await fuzzing.wait_for(lambda c: c.events)  # its welcome
    answers: list[Answer] = []
    for frame in sent:
        seen = len(fuzzing.events)
        await fuzzer.receive(frame)
        if fuzzer.member.closing:
            await fuzzing.wait_for(lambda c: c.close_code is not None)
            assert fuzzing.close_code is not None
            answers.append(Close(CloseCode(fuzzing.close_code)))
            break
        await fuzzing.wait_for(lambda c: len(c.events) > seen)  # noqa: B023 (awaited here, in this iteration)
        new = fuzzing.events[seen:]
        assert len(new) == 1, new  # one answer per frame, nothing more
        answer = new[0]
        if answer["type"] == "error":
            assert isinstance(answer["detail"], str)
            assert answer["detail"]
            answers.append(Error(ErrorCode(answer["code"])))
        else:
            assert answer["type"] == "message", answer
            assert answer["name"] == "fuzzer"
            answers.append(Echo(answer["text"]))
    await fuzzer.finished()
    await moderation.stop()
    await hub.stop()
    return answers, watching.events


def to_core(sent: Sent) -> str | bytes:
    """What the endpoint hands the core: text, or bytes for a binary frame."""
    if isinstance(sent, Binary):
        return sent.data
    if isinstance(sent, RawText):
        return sent.data.decode()  # only UTF-8 reaches the core: the server closes others with 1007
    return sent


@settings(max_examples=budget(500))
@given(st.lists(frames, min_size=1, max_size=6))
@example([RawText(b'{"type":"message","text":"\xed\xa0\x80"}')])
@example(["[" * 1025 + "]" * 1025, '{"type":"message","text":"after the deep one"}'])
@example([json.dumps({"type": "message", "text": 10**400})])
@example(["[" * 1024 + "]" * 1024, '{"type":' * 1024 + "1" + "}" * 1024])
def test_the_core_answers_every_frame_as_documented(sent: list[Sent]) -> None:
    # Only UTF-8 text reaches the core; uvicorn (tests below) closes the rest with 1007.
    sent = [frame for frame in sent if expected(frame) != Close(CloseCode.INVALID_DATA)]
    answers, observed = asyncio.run(exchange([to_core(frame) for frame in sent]))
    wanted = [expected(frame) for frame in sent]
    closes = [number for number, answer in enumerate(wanted) if isinstance(answer, Close)]
    if closes:
        wanted = wanted[: closes[0] + 1]  # a close ends it: later frames are never read
    assert answers == wanted
    assert observed[0]["type"] == "welcome"
    for event in observed[1:]:
        check_event(event, "lobby")
    echoes = [answer.text for answer in answers if isinstance(answer, Echo)]
    assert [event["text"] for event in observed if event["type"] == "message"] == echoes


def test_the_reference_parser_agrees_with_the_documented_cases() -> None:
    """The oracle itself, on the cases docs/protocol.md names."""
    assert expected('{"type":"message","text":"\\ud800"}') == Error(ErrorCode.BAD_JSON)
    assert expected("[" * 1025 + "]" * 1025) == Error(ErrorCode.BAD_JSON)
    assert expected("[" * 1024 + "]" * 1024) == Error(ErrorCode.BAD_EVENT)
    assert expected('{"type":"message","text":1e400}') == Error(ErrorCode.BAD_JSON)
    assert expected('{"type":"message","text":" \\n "}') == Error(ErrorCode.EMPTY_TEXT)
    assert expected(RawText(b"\xff")) == Close(CloseCode.INVALID_DATA)
    assert expected('{"type":"dm","to":"ann","text":"hi"}') == Error(ErrorCode.FORBIDDEN)  # from a guest
    assert expected('{"type":"dm","to":"ann","text":" "}') == Error(ErrorCode.EMPTY_TEXT)
    assert expected('{"type":"dm_history","with":"ann","before":0}') == Error(ErrorCode.BAD_EVENT)
    assert expected('{"type":"away","message":"%s"}' % ("x" * 301)) == Error(ErrorCode.BAD_EVENT)
    assert expected('{"type":"back"}') == Error(ErrorCode.FORBIDDEN)
