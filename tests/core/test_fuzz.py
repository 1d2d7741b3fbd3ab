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
from app.core import changes, reads, typists
from app.core.hub import Hub
from app.core.messenger import install as install_messenger
from app.core.moderation.service import install
from app.core.protocol import CloseCode, ErrorCode
from app.settings import Settings
from tests.support.fakes import FakeConnection
from tests.support.frames import (
    Answer,
    Binary,
    Changed,
    Close,
    Echo,
    Error,
    OneOf,
    Oracle,
    RawText,
    Sent,
    Silence,
    check_event,
    conversations,
    expected,
    frames,
    matches,
)
from tests.support.properties import budget

SENTINEL = '{"type":"message","text":"the last"}'


def answer_of(event: dict[str, Any]) -> Answer:
    if event["type"] == "error":
        assert isinstance(event["detail"], str)
        assert event["detail"]
        return Error(ErrorCode(event["code"]))
    if event["type"] in ("edit", "delete", "reactions"):
        return Changed(event["type"], event["id"], event.get("text"))
    assert event["type"] == "message", event
    assert event["name"] == "fuzzer"
    return Echo(event["text"])


def is_deletion_by_fuzzer(event: dict[str, Any], id: int) -> bool:
    """docs/protocol.md, "moderation": the event of the fuzzer deleting its message `id`."""
    wanted = {"type": "moderation", "room": "lobby", "action": "delete", "by": "fuzzer", "name": "fuzzer", "id": id}
    return type(event.get("ts")) is int and {key: value for key, value in event.items() if key != "ts"} == wanted


async def exchange(sent: list[Sent]) -> tuple[list[Answer], list[Answer], list[dict[str, Any]]]:
    """Feed `sent` to one client, one frame at a time: its answers, those docs/protocol.md
    gives (one of each where it allows several), and what an observer got."""
    settings = Settings(rate_limit=0, close_timeout=0.5)
    hub = Hub(MemoryBackend("memory://", settings), settings)
    found = changes.install(hub, settings)
    # As the app does: moderation orders are part of the protocol, and `delete` is one.
    moderation = install(hub, delete_message=found.delete_message)
    install_messenger(hub, hub.backend.accounts)
    typists.install(hub)
    reads.install(hub)
    await hub.start()
    watching, fuzzing = FakeConnection(), FakeConnection()
    await hub.join(watching, watching.abort, "lobby", "observer")
    fuzzer = await hub.join(fuzzing, fuzzing.abort, "lobby", "fuzzer")
    await fuzzing.wait_for(lambda c: c.events)  # its welcome
    oracle = Oracle()
    answers: list[Answer] = []
    wanted: list[Answer] = []
    seen = len(fuzzing.events)
    for frame in [*sent, SENTINEL]:
        expectation = oracle.expected(frame)
        await fuzzer.receive(to_core(frame))
        if fuzzer.member.closing:
            await fuzzing.wait_for(lambda c: c.close_code is not None)
            assert fuzzing.close_code is not None
            answers.append(Close(CloseCode(fuzzing.close_code)))
            wanted.append(expectation if not isinstance(expectation, OneOf) else answers[-1])
            break
        if expectation == Silence():
            # Nothing comes: whatever did would show before the next frame's answer.
            answers.append(Silence())
            wanted.append(Silence())
            continue
        await fuzzing.wait_for(lambda c: len(c.events) > seen)  # noqa: B023 (awaited here, in this iteration)
        event = fuzzing.events[seen]
        seen += 1
        answer = answer_of(event)
        if isinstance(answer, Changed) and answer.kind == "delete":
            # A deletion is a moderation action too: its `moderation` event comes with it.
            await fuzzing.wait_for(lambda c: len(c.events) > seen)  # noqa: B023
            assert is_deletion_by_fuzzer(fuzzing.events[seen], event["id"]), fuzzing.events[seen:]
            seen += 1
        assert len(fuzzing.events) == seen, fuzzing.events[seen - 1 :]  # one answer per frame, nothing more
        answers.append(answer)
        assert matches(answer, expectation), (frame, answer, expectation)
        wanted.append(answer)
        oracle.learn(answer, event)
    await fuzzer.finished()
    await moderation.stop()
    await hub.stop()
    return answers, wanted, watching.events


def to_core(sent: Sent) -> str | bytes:
    """What the endpoint hands the core: text, or bytes for a binary frame."""
    if isinstance(sent, Binary):
        return sent.data
    if isinstance(sent, RawText):
        return sent.data.decode()  # only UTF-8 reaches the core: the server closes others with 1007
    return sent


@settings(max_examples=budget(500))
@given(st.lists(frames, min_size=1, max_size=6) | conversations)
@example([RawText(b'{"type":"message","text":"\xed\xa0\x80"}')])
@example(["[" * 1025 + "]" * 1025, '{"type":"message","text":"after the deep one"}'])
@example([json.dumps({"type": "message", "text": 10**400})])
@example(
    ['{"type":"message","text":"a"}', '{"type":"edit","id":1,"text":"b"}', '{"type":"react","id":1,"emoji":"\u2764"}']
)
@example(['{"type":"message","text":"a"}', '{"type":"delete","id":1}', '{"type":"edit","id":1,"text":"b"}'])
@example(['{"type":"typing"}', '{"type":"read","id":1}', '{"type":"typing","stop":1}'])
@example(["[" * 1024 + "]" * 1024, '{"type":' * 1024 + "1" + "}" * 1024])
def test_the_core_answers_every_frame_as_documented(sent: list[Sent]) -> None:
    # Only UTF-8 text reaches the core; uvicorn (tests below) closes the rest with 1007.
    sent = [frame for frame in sent if expected(frame) != Close(CloseCode.INVALID_DATA)]
    answers, wanted, observed = asyncio.run(exchange(sent))
    assert answers == wanted
    closes = [number for number, answer in enumerate(answers) if isinstance(answer, Close)]
    if closes:
        assert closes == [len(answers) - 1]  # a close ends it: later frames are never read
    else:
        assert answers[-1] == Echo("the last")  # and nothing came that was not asked for
    assert observed[0]["type"] == "welcome"
    for event in observed[1:]:
        check_event(event, "lobby")
    echoes = [answer.text for answer in answers if isinstance(answer, Echo)]
    assert [event["text"] for event in observed if event["type"] == "message"] == echoes
    told = [(answer.kind, answer.id) for answer in answers if isinstance(answer, Changed)]
    changes_seen = [event for event in observed if event["type"] in ("edit", "delete", "reactions")]
    assert [(event["type"], event["id"]) for event in changes_seen] == told  # the room heard what it did
    deletions = [event["id"] for event in observed if event["type"] == "moderation"]
    assert deletions == [id for kind, id in told if kind == "delete"]  # and who did it


def test_the_reference_parser_agrees_with_the_documented_cases() -> None:
    """The oracle itself, on the cases docs/protocol.md names."""
    assert expected('{"type":"message","text":"\\ud800"}') == Error(ErrorCode.BAD_JSON)
    assert expected("[" * 1025 + "]" * 1025) == Error(ErrorCode.BAD_JSON)
    assert expected("[" * 1024 + "]" * 1024) == Error(ErrorCode.BAD_EVENT)
    assert expected('{"type":"message","text":1e400}') == Error(ErrorCode.BAD_JSON)
    assert expected('{"type":"message","text":" \\n "}') == Error(ErrorCode.EMPTY_TEXT)
    assert expected(RawText(b"\xff")) == Close(CloseCode.INVALID_DATA)
    assert expected('{"type":"edit","id":1,"text":"x"}') == Error(ErrorCode.NOT_FOUND)  # nothing written yet
    assert expected('{"type":"edit","id":true,"text":"x"}') == Error(ErrorCode.BAD_EVENT)
    assert expected('{"type":"react","id":1,"emoji":"\u2764\ufe0f"}') == Error(ErrorCode.NOT_FOUND)
    assert expected('{"type":"react","id":1,"emoji":"x"}') == Error(ErrorCode.BAD_EVENT)
    assert expected('{"type":"typing","stop":false}') == Silence()
    assert expected('{"type":"read","id":0}') == Error(ErrorCode.BAD_EVENT)
    assert expected('{"type":"dm","to":"ann","text":"hi"}') == Error(ErrorCode.FORBIDDEN)  # from a guest
    assert expected('{"type":"dm","to":"ann","text":" "}') == Error(ErrorCode.EMPTY_TEXT)
    assert expected('{"type":"dm_history","with":"ann","before":0}') == Error(ErrorCode.BAD_EVENT)
    assert expected('{"type":"away","message":"%s"}' % ("x" * 301)) == Error(ErrorCode.BAD_EVENT)
    assert expected('{"type":"back"}') == Error(ErrorCode.FORBIDDEN)
