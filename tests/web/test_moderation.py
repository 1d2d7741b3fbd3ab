"""Moderation over the WebSocket and HTTP, on every backend: owners and moderators, every action
and its refusal to those of lower rank, bans and mutes that last and expire, doors, topics
and the audit log."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from weakref import WeakKeyDictionary

import pytest
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from app.core.moderation.commands import MAX_REASON, MAX_TOPIC
from app.core.moderation.service import ACTION_BURST
from app.core.protocol import CloseCode
from tests.support.web import Events, another_browser, app_with, chat

PASSWORD = "correct horse battery"  # noqa: S105 - test accounts'


@pytest.fixture
def client(backend_url: str) -> Iterator[TestClient]:
    # No rate limit on frames: some tests send more than a burst; moderation's own is tested apart.
    with TestClient(app_with(backend_url=backend_url, rate_limit=0)) as client:
        yield client


def account(client: TestClient, name: str, admin: bool = False) -> TestClient:
    """Another browser, signed in to a new account `name`."""
    browser = another_browser(client)
    assert browser.post("/api/account", json={"name": name, "password": PASSWORD}).status_code == 201
    if admin:
        assert client.portal is not None
        client.portal.call(client.app_state["accounts"].set_admin, name, True)
    return browser


def from_address(client: TestClient, host: str) -> TestClient:
    """Another browser on another machine: its own cookies and its own address."""
    other = TestClient(client.app, base_url=str(client.base_url), client=(host, 50000))
    other.portal = client.portal
    other.app_state.update(client.app_state)
    return other


def admitted(client: TestClient, query: str) -> str | int:
    """The name a connection is welcomed under, or the code it is refused with."""
    try:
        with chat(client, query) as events:
            return str(events.welcome["name"])
    except WebSocketDisconnect as refused:
        return refused.code


def refusal(client: TestClient, query: str = "") -> tuple[int, str]:
    with pytest.raises(WebSocketDisconnect) as refused, chat(client, query):
        pass
    return refused.value.code, refused.value.reason


_kept: WeakKeyDictionary[Events, list[dict[str, Any]]] = WeakKeyDictionary()


def take(
    events: Events, kind: str, where: Callable[[dict[str, Any]], bool] = lambda event: True, **fields: Any
) -> dict[str, Any]:
    """The next event of type `kind` (with these fields, and `where` it holds), whether it came
    before others or after them: a `standing` for one connection may overtake the `moderation`
    event of the room, which waits a moment for company as joins and leaves do."""

    def wanted(event: dict[str, Any]) -> bool:
        return (
            event["type"] == kind and all(event.get(name) == value for name, value in fields.items()) and where(event)
        )

    kept = _kept.setdefault(events, [])
    for event in kept:
        if wanted(event):
            kept.remove(event)
            return event
    while True:
        event = events.next()
        if wanted(event):
            return event
        kept.append(event)


def muted(event: dict[str, Any]) -> bool:
    return event["muted"] is not None


def speaking(event: dict[str, Any]) -> bool:
    return event["muted"] is None


def error(events: Events) -> dict[str, Any]:
    return take(events, "error")


def act(events: Events, event: dict[str, Any]) -> dict[str, Any]:
    events.send(event)
    return take(events, "moderation", action=event["type"])


def claim(events: Events) -> dict[str, Any]:
    return act(events, {"type": "claim"})


def closed(events: Events) -> tuple[int, str]:
    """Read on until the server closes the socket: its code and reason."""
    try:
        while True:
            events.next()
    except WebSocketDisconnect as closing:
        return closing.code, closing.reason


def test_an_account_claims_a_room_nobody_owns_and_every_welcome_says_so(client: TestClient) -> None:
    ann = account(client, "Ann")
    with chat(ann) as owner, chat(client, "name=bob") as guest:
        assert owner.welcome["owner"] is None
        assert owner.welcome["may"] == ["claim"]
        assert guest.welcome["may"] == []
        claimed = claim(owner)
        assert claimed["action"] == "claim"
        assert claimed["by"] == "Ann"
        assert claimed["owner"] == "Ann"
        assert take(guest, "moderation", action="claim") == claimed
        assert take(owner, "standing")["role"] == "owner"
        with chat(account(client, "Cy")) as cy:
            welcome = cy.welcome
            assert welcome["owner"] == "Ann"
            assert welcome["moderators"] == []
            assert welcome["role"] is None
            assert welcome["may"] == []  # the room is owned: nothing to claim
            cy.send({"type": "claim"})
            assert error(cy)["code"] == "forbidden"
        guest.send({"type": "claim"})
        refused = error(guest)
        assert refused["code"] == "forbidden"
        assert "Sign in" in refused["detail"]
    with chat(ann) as back:
        assert back.welcome["role"] == "owner"
        assert set(back.welcome["may"]) >= {"kick", "mute", "ban", "topic", "grant", "mode", "invite"}


def test_the_owner_grants_a_moderator_who_kicks_a_guest_who_may_come_back(client: TestClient) -> None:
    ann, bob = account(client, "Ann"), account(client, "Bob")
    with chat(ann) as owner, chat(bob) as moderator, chat(client, "name=troll") as troll:
        claim(owner)
        granted = act(owner, {"type": "grant", "name": "bob", "role": "moderator"})
        assert granted["action"] == "grant"
        assert granted["name"] == "Bob"
        assert granted["role"] == "moderator"
        assert granted["moderators"] == ["Bob"]
        standing = take(moderator, "standing", role="moderator")
        assert "kick" in standing["may"]
        assert "grant" not in standing["may"]
        kicked = act(moderator, {"type": "kick", "name": "troll", "reason": "calm down"})
        assert take(owner, "moderation", action="kick") == kicked
        assert kicked["by"] == "Bob"
        assert kicked["name"] == "troll"
        assert kicked["reason"] == "calm down"
        assert closed(troll) == (CloseCode.FORBIDDEN, "Kicked by Bob: calm down")
        assert take(owner, "leave") == {"type": "leave", "name": "troll"}
    with chat(client, "name=troll") as again:  # a kick is not a ban
        assert again.welcome["name"] == "troll"


RANKED: list[dict[str, Any]] = [
    {"type": "kick", "name": "target"},
    {"type": "mute", "name": "target", "seconds": 60},
    {"type": "unmute", "name": "target"},
    {"type": "ban", "name": "target"},
    {"type": "unban", "name": "target"},
    {"type": "topic", "text": "mine now"},
    {"type": "grant", "name": "target", "role": "moderator"},
    {"type": "revoke", "name": "target", "role": "moderator"},
    {"type": "mode", "members_only": True},
    {"type": "invite", "name": "target"},
    {"type": "uninvite", "name": "target"},
    {"type": "ban", "name": "target", "everywhere": True},
    {"type": "grant", "name": "target", "role": "owner"},
]


@pytest.mark.parametrize("order", RANKED, ids=lambda order: "-".join(str(value) for value in order.values()))
def test_a_guest_and_an_account_without_a_role_may_do_none_of_it(client: TestClient, order: dict[str, Any]) -> None:
    with chat(account(client, "Ann")) as owner, chat(account(client, "target")) as target:
        claim(owner)
        with chat(client, "name=guest") as guest, chat(account(client, "Member")) as member:
            for nobody in (guest, member):
                nobody.send(order)
                assert error(nobody)["code"] == "forbidden"
            target.say("still here")
            assert take(target, "message")["text"] == "still here"  # nothing happened to it
        with chat(client, "name=guest2") as fresh:
            assert fresh.welcome["topic"] is None
            assert fresh.welcome["members_only"] is False
            assert fresh.welcome["moderators"] == []


@pytest.mark.parametrize(
    "order",
    [
        {"type": "grant", "name": "Cy", "role": "moderator"},
        {"type": "mode", "members_only": True},
        {"type": "invite", "name": "Cy"},
        {"type": "ban", "name": "Cy", "everywhere": True},
    ],
)
def test_a_moderator_may_not_do_what_is_the_owners(client: TestClient, order: dict[str, Any]) -> None:
    ann, bob = account(client, "Ann"), account(client, "Bob")
    account(client, "Cy")
    with chat(ann) as owner, chat(bob) as moderator:
        claim(owner)
        act(owner, {"type": "grant", "name": "Bob", "role": "moderator"})
        take(moderator, "moderation", action="grant")
        moderator.send(order)
        assert error(moderator)["code"] == "forbidden"


@pytest.mark.parametrize("action", ["kick", "mute", "ban"])
def test_nobody_acts_on_someone_of_equal_or_higher_rank(client: TestClient, action: str) -> None:
    ann, bob, cy = account(client, "Ann"), account(client, "Bob"), account(client, "Cy")
    admin = account(client, "Root", admin=True)
    with chat(ann) as owner, chat(bob) as first, chat(cy) as second, chat(admin) as root:
        claim(owner)
        for name in ("Bob", "Cy"):
            act(owner, {"type": "grant", "name": name, "role": "moderator"})
        for name in ("Ann", "Cy", "Root", "Bob"):  # the owner, another moderator, an admin, oneself
            first.send({"type": action, "name": name})
            refused = error(first)
            assert refused["code"] == "forbidden", name
            assert "ranks as high as you" in refused["detail"]
        owner.send({"type": action, "name": "Root"})
        assert error(owner)["code"] == "forbidden"
        done = act(root, {"type": action, "name": "Ann", "reason": "admins outrank owners"})
        assert done["by"] == "Root"
        assert done["name"] == "Ann"
        second.say("unharmed")
        assert take(second, "message")["text"] == "unharmed"


def test_orders_that_name_nobody_or_break_the_rules_are_refused(client: TestClient) -> None:
    with chat(account(client, "Ann")) as owner:
        claim(owner)
        owner.send({"type": "kick", "name": "nobody"})
        assert error(owner)["code"] == "not_found"
        owner.send({"type": "kick", "name": "a\u202eb"})
        assert error(owner)["code"] == "bad_event"
        for bad in (
            {"type": "kick"},
            {"type": "kick", "name": 3},
            {"type": "kick", "name": "x" * 257},
            {"type": "ban", "name": "bob", "seconds": 0},
            {"type": "ban", "name": "bob", "seconds": 1.5},
            {"type": "ban", "name": "bob", "everywhere": "yes"},
            {"type": "mute", "name": "bob", "reason": "x" * (MAX_REASON + 1)},
            {"type": "topic", "text": "x" * (MAX_TOPIC + 1)},
            {"type": "topic"},
            {"type": "grant", "name": "bob", "role": "king"},
            {"type": "mode"},
            {"type": "mode", "members_only": 1},
            {"type": "delete", "id": 0},
        ):
            owner.send(bad)
            assert error(owner)["code"] == "bad_event", bad
        owner.send({"type": "unban", "name": "nobody"})
        assert error(owner)["code"] == "not_found"
        owner.send({"type": "grant", "name": "nobody", "role": "moderator"})
        assert error(owner)["code"] == "not_found"
        with chat(client, "name=visitor"):
            owner.send({"type": "grant", "name": "visitor", "role": "moderator"})
            refused = error(owner)
            assert refused["code"] == "forbidden"
            assert "guest" in refused["detail"]


def test_a_muted_account_reads_but_what_it_says_is_refused_until_it_is_unmuted(client: TestClient) -> None:
    with chat(account(client, "Ann")) as owner, chat(account(client, "Bob")) as bob:
        claim(owner)
        done = act(owner, {"type": "mute", "name": "Bob", "seconds": 600, "reason": "cool off"})
        assert done["name"] == "Bob"
        assert done["until"].endswith("Z")
        standing = take(bob, "standing", muted)
        assert standing["muted"]["until"] == done["until"]
        assert standing["muted"]["reason"] == "cool off"
        bob.say("can you hear me")
        refused = error(bob)
        assert refused["code"] == "muted"
        assert done["until"] in refused["detail"]
        owner.say("we can")
        assert take(bob, "message")["text"] == "we can"  # it reads on
        with chat(client, "name=reader") as reader:
            assert [message["text"] for message in reader.welcome["history"]] == ["we can"]  # nothing stored
        act(owner, {"type": "unmute", "name": "bob"})
        take(bob, "standing", speaking)
        bob.say("back")
        assert take(bob, "message")["text"] == "back"


def test_a_mute_reaches_the_accounts_other_tabs_and_its_next_connections(client: TestClient) -> None:
    bob = account(client, "Bob")
    with chat(account(client, "Ann")) as owner, chat(bob) as first:
        claim(owner)
        act(owner, {"type": "mute", "name": "Bob"})
        with chat(bob) as second:
            assert second.welcome["muted"] == {"until": None, "by": "Ann", "reason": ""}
            second.say("from the other tab")
            assert error(second)["code"] == "muted"
        first.say("from the first")
        assert error(first)["code"] == "muted"


def test_a_mute_ends_by_itself_and_everyone_hears_it(client: TestClient) -> None:
    with chat(account(client, "Ann")) as owner, chat(client, "name=guest") as guest:
        claim(owner)
        act(owner, {"type": "mute", "name": "guest", "seconds": 1})
        take(guest, "standing", muted)
        guest.say("too soon")
        assert error(guest)["code"] == "muted"
        started = time.monotonic()
        ended = take(owner, "moderation")
        assert ended["action"] == "unmute"
        assert ended["name"] == "guest"
        assert ended["expired"] is True
        assert ended["by"] is None
        assert time.monotonic() - started < 5
        take(guest, "standing", speaking)
        guest.say("now")
        assert take(guest, "message")["text"] == "now"


def test_a_banned_account_is_closed_refused_with_until_when_and_unbanned(client: TestClient) -> None:
    bob = account(client, "Bob")
    with chat(account(client, "Ann")) as owner:
        claim(owner)
        with chat(bob) as banned, chat(bob) as tab:
            done = act(owner, {"type": "ban", "name": "Bob", "seconds": 3600, "reason": "spam"})
            assert done["until"].endswith("Z")
            for socket in (banned, tab):
                assert closed(socket) == (
                    CloseCode.FORBIDDEN,
                    f"Banned from this room until {done['until']} by Ann: spam",
                )
        code, reason = refusal(bob)
        assert code == CloseCode.FORBIDDEN
        assert done["until"] in reason
        with chat(bob, "room=den"):  # a room's ban is that room's
            pass
        with chat(from_address(client, "192.0.2.9"), "name=bob2"):  # guests of other addresses are not banned
            pass
        act(owner, {"type": "unban", "name": "bob"})
        with chat(bob) as back:
            assert back.welcome["name"] == "Bob"


def test_a_banned_account_that_is_offline_is_refused_when_it_comes(client: TestClient) -> None:
    bob = account(client, "Bob")
    with chat(account(client, "Ann")) as owner:
        claim(owner)
        act(owner, {"type": "ban", "name": "bob"})
    assert refusal(bob)[0] == CloseCode.FORBIDDEN


def test_a_guest_is_banned_by_its_address_whatever_name_it_takes(client: TestClient) -> None:
    troll = from_address(client, "192.0.2.1")
    with chat(account(client, "Ann")) as owner:
        claim(owner)
        with chat(troll, "name=troll") as banned, chat(troll, "name=troll2") as twin:
            done = act(owner, {"type": "ban", "name": "troll", "reason": "spam"})
            assert done["name"] == "troll"
            for socket in (banned, twin):  # the same address: banned alike
                assert closed(socket) == (CloseCode.FORBIDDEN, "Banned from this room by Ann: spam")
        code, reason = refusal(troll, "name=someone-else")
        assert code == CloseCode.FORBIDDEN
        assert reason == "Banned from this room by Ann: spam"
        with chat(from_address(client, "192.0.2.2"), "name=troll"):  # another address
            pass
        signed_in = from_address(client, "192.0.2.1")
        assert signed_in.post("/api/account", json={"name": "Cy", "password": PASSWORD}).status_code == 201
        with chat(signed_in):  # an account is banned by account, not by where it is
            pass
        act(owner, {"type": "unban", "name": "troll"})
        with chat(troll, "name=troll"):
            pass


def test_a_ban_ends_by_itself(client: TestClient) -> None:
    with chat(account(client, "Ann")) as owner:
        claim(owner)
        with chat(client, "name=troll"):
            act(owner, {"type": "ban", "name": "troll", "seconds": 1})
        assert "until" in refusal(client, "name=troll")[1]
        deadline = time.monotonic() + 10
        while (answer := admitted(client, "name=troll")) != "troll":  # nobody is told when a ban ends
            assert answer == CloseCode.FORBIDDEN
            assert time.monotonic() < deadline, "the ban did not end"
            time.sleep(0.1)


def test_a_room_for_members_only_admits_its_members_and_refuses_the_others(client: TestClient) -> None:
    ann, cy, dee = account(client, "Ann"), account(client, "Cy"), account(client, "Dee")
    admin = account(client, "Root", admin=True)
    with chat(ann, "room=den") as owner:
        claim(owner)
        act(owner, {"type": "grant", "name": "Dee", "role": "moderator"})
        with chat(client, "room=den&name=guest") as inside:
            door = act(owner, {"type": "mode", "members_only": True})
            assert door["members_only"] is True
            assert take(inside, "moderation", action="mode") == door  # those already in stay
        guest = refusal(client, "room=den&name=guest")
        assert guest[0] == CloseCode.NOT_SIGNED_IN
        assert "sign in" in guest[1]
        outsider = refusal(cy, "room=den")
        assert outsider[0] == CloseCode.FORBIDDEN
        assert "invitation" in outsider[1]
        for member in (dee, admin):
            with chat(member, "room=den"):
                pass
        invited = act(owner, {"type": "invite", "name": "cy"})
        assert invited["name"] == "Cy"
        with chat(cy, "room=den") as now_in:
            assert now_in.welcome["members_only"] is True
        act(owner, {"type": "uninvite", "name": "cy"})
        assert refusal(cy, "room=den")[0] == CloseCode.FORBIDDEN
        act(owner, {"type": "mode", "members_only": False})
        with chat(client, "room=den&name=guest"):
            pass


def test_the_rooms_list_shows_a_room_for_members_only_to_its_members_alone(client: TestClient) -> None:
    ann, cy = account(client, "Ann"), account(client, "Cy")
    with chat(ann, "room=den") as owner, chat(client, "room=lobby&name=guest"):
        claim(owner)
        act(owner, {"type": "mode", "members_only": True})

        def rooms(browser: TestClient) -> list[str]:
            return [room["room"] for room in browser.get("/api/rooms").json()["rooms"]]

        assert rooms(ann) == ["den", "lobby"]
        assert rooms(client) == ["lobby"]  # a guest
        assert rooms(cy) == ["lobby"]  # an account not invited
        act(owner, {"type": "invite", "name": "Cy"})
        assert rooms(cy) == ["den", "lobby"]


def test_the_topic_is_set_for_everyone_and_in_every_welcome(client: TestClient) -> None:
    with chat(account(client, "Ann")) as owner, chat(client, "name=guest") as guest:
        claim(owner)
        topic = act(owner, {"type": "topic", "text": "  Be kind  "})
        assert topic["text"] == "Be kind"
        assert take(guest, "moderation", action="topic") == topic
        with chat(client, "name=later") as later:
            assert later.welcome["topic"] == {"text": "Be kind", "by": "Ann", "ts": topic["ts"]}
        act(owner, {"type": "topic", "text": ""})
        with chat(client, "name=later") as later:
            assert later.welcome["topic"] is None


def test_the_owner_hands_the_room_over_and_stays_a_moderator(client: TestClient) -> None:
    ann, bob = account(client, "Ann"), account(client, "Bob")
    with chat(ann) as owner, chat(bob) as heir:
        claim(owner)
        given = act(owner, {"type": "grant", "name": "Bob", "role": "owner"})
        assert given["owner"] == "Bob"
        assert given["moderators"] == ["Ann"]
        assert act(heir, {"type": "revoke", "name": "Ann", "role": "moderator"})["moderators"] == []
        owner.send({"type": "topic", "text": "not mine any more"})
        assert error(owner)["code"] == "forbidden"
        heir.send({"type": "revoke", "name": "Bob", "role": "owner"})  # only admins take rooms away
        assert error(heir)["code"] == "forbidden"
    with chat(account(client, "Root", admin=True)) as root:
        taken = act(root, {"type": "revoke", "name": "Bob", "role": "owner"})
        assert taken["owner"] is None


def test_an_admin_bans_from_the_whole_server(client: TestClient) -> None:
    bob = account(client, "Bob")
    with chat(account(client, "Root", admin=True)) as root, chat(bob, "room=den") as elsewhere:
        done = act(root, {"type": "ban", "name": "Bob", "everywhere": True, "reason": "abuse"})
        assert done["everywhere"] is True
        assert closed(elsewhere) == (CloseCode.FORBIDDEN, "Banned from this server by Root: abuse")
        for room in ("lobby", "den", "anywhere"):
            assert refusal(bob, f"room={room}")[0] == CloseCode.FORBIDDEN
        root.send({"type": "unban", "name": "Bob"})  # a room's unban lifts no server-wide ban
        assert error(root)["code"] == "not_found"
        act(root, {"type": "unban", "name": "Bob", "everywhere": True})
        with chat(bob, "room=den"):
            pass


def test_moderation_actions_have_a_rate_of_their_own(backend_url: str) -> None:
    with TestClient(app_with(backend_url=backend_url, rate_limit=0)) as client, chat(account(client, "Ann")) as owner:
        claim(owner)  # one of the burst
        for number in range(ACTION_BURST - 1):
            owner.send({"type": "topic", "text": f"topic {number}"})
        owner.send({"type": "topic", "text": "one too many"})
        refused = error(owner)
        assert refused["code"] == "rate_limited"
        topics: list[str] = []
        while len(topics) < ACTION_BURST - 1:
            topics.append(take(owner, "moderation", action="topic")["text"])
        assert "one too many" not in topics


def test_an_author_deletes_its_own_and_a_moderator_those_of_lower_rank(client: TestClient) -> None:
    bob, cy = account(client, "Bob"), account(client, "Cy")
    with (
        chat(account(client, "Ann")) as owner,
        chat(bob) as author,
        chat(cy) as mod,
        chat(client, "name=guest") as guest,
    ):
        claim(owner)
        act(owner, {"type": "grant", "name": "cy", "role": "moderator"})
        said: dict[str, dict[str, Any]] = {}
        for events, text in ((author, "bob's first"), (author, "bob's second"), (owner, "the owner's")):
            events.say(text)
            said[text] = take(guest, "message", text=text)
        guest.send({"type": "delete", "id": said["bob's first"]["id"]})
        assert error(guest)["code"] == "forbidden"  # a guest's name proves nothing
        author.send({"type": "delete", "id": said["the owner's"]["id"]})
        assert error(author)["code"] == "forbidden"  # not its author, no moderator
        mod.send({"type": "delete", "id": said["the owner's"]["id"]})
        assert error(mod)["code"] == "forbidden"  # the owner ranks above a moderator
        owner.send({"type": "delete", "id": 999})
        assert error(owner)["code"] == "not_found"
        for deleting, text in ((mod, "bob's first"), (author, "bob's second")):  # a moderator's; an author's own
            id = said[text]["id"]
            deleting.send({"type": "delete", "id": id})
            assert take(guest, "delete", id=id) == {"type": "delete", "room": "lobby", "id": id}
            done = take(guest, "moderation", action="delete", id=id)
            assert (done["by"], done["name"]) == (deleting.welcome["name"], "Bob")
        owner.send({"type": "delete", "id": said["bob's first"]["id"]})
        assert error(owner)["code"] == "not_found"  # deleted already


def test_a_deleted_message_is_gone_from_welcomes_resumes_and_history(client: TestClient) -> None:
    with chat(account(client, "Ann")) as owner:
        claim(owner)
        owner.say("keep")
        owner.say("delete me")
        take(owner, "message")
        doomed = take(owner, "message")
        owner.send({"type": "delete", "id": doomed["id"]})
        answer = owner.next()
        while answer["type"] not in ("delete", "error"):
            answer = owner.next()
        assert answer == {"type": "delete", "room": "lobby", "id": doomed["id"]}  # not an error
        assert take(owner, "moderation", action="delete")["id"] == doomed["id"]
    with chat(client, "name=later") as later:
        assert "delete me" not in [message.get("text") for message in later.welcome["history"]]
        later.send({"type": "history"})
        assert "delete me" not in [message.get("text") for message in take(later, "history")["messages"]]
    with chat(client, f"name=resumed&since={doomed['id'] - 1}") as resumed:
        assert "delete me" not in [message.get("text") for message in resumed.welcome["history"]]


def test_the_audit_log_is_for_the_rooms_owner_moderators_and_admins_newest_first(client: TestClient) -> None:
    ann, bob, cy = account(client, "Ann"), account(client, "Bob"), account(client, "Cy")
    admin = account(client, "Root", admin=True)
    with chat(ann) as owner, chat(client, "name=troll"):
        claim(owner)
        act(owner, {"type": "grant", "name": "Bob", "role": "moderator"})
        act(owner, {"type": "mute", "name": "troll", "seconds": 60, "reason": "shouting"})
        act(owner, {"type": "topic", "text": "calm"})
    with chat(ann, "room=den") as elsewhere:
        claim(elsewhere)
    page = ann.get("/api/rooms/LOBBY/audit")
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-store"
    body = page.json()
    assert body["room"] == "lobby"
    assert body["more"] is False
    entries = body["entries"]
    assert [entry["action"] for entry in entries] == ["topic", "mute", "grant", "claim"]
    muted = entries[1]
    assert muted["by"] == "Ann"
    assert muted["name"] == "troll"
    assert muted["reason"] == "shouting"
    assert muted["room"] == "lobby"
    assert muted["until"].endswith("Z")
    assert muted["at"].endswith("Z")
    assert entries[0]["detail"] == "calm"
    assert entries[2]["detail"] == "moderator"
    first = ann.get("/api/rooms/lobby/audit?limit=2").json()
    assert [entry["action"] for entry in first["entries"]] == ["topic", "mute"]
    assert first["more"] is True
    rest = ann.get(f"/api/rooms/lobby/audit?limit=2&before={first['entries'][-1]['id']}").json()
    assert [entry["action"] for entry in rest["entries"]] == ["grant", "claim"]
    assert rest["more"] is False
    for reader in (bob, admin):
        assert reader.get("/api/rooms/lobby/audit").json()["entries"] == entries
    refused = cy.get("/api/rooms/lobby/audit")
    assert refused.status_code == 403
    assert refused.json()["error"] == "forbidden"
    assert client.get("/api/rooms/lobby/audit").status_code == 401  # a guest
    for bad in ("?limit=0", "?limit=201", "?before=x", "?before=-1"):
        assert ann.get(f"/api/rooms/lobby/audit{bad}").status_code == 400, bad
    assert ann.get("/api/rooms/a%E2%80%AEb/audit").status_code == 400


def test_the_moderation_state_outlives_a_restart(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'chat.db'}"
    with TestClient(app_with(backend_url=url)) as client:
        with chat(account(client, "Ann")) as owner:
            account(client, "Bob")
            account(client, "Cy")
            claim(owner)
            act(owner, {"type": "grant", "name": "Bob", "role": "moderator"})
            act(owner, {"type": "topic", "text": "kept"})
            act(owner, {"type": "ban", "name": "Cy", "reason": "for good"})
            act(owner, {"type": "mute", "name": "Bob", "seconds": 3600})
            with chat(from_address(client, "192.0.2.1"), "name=troll"):
                act(owner, {"type": "ban", "name": "troll", "seconds": 3600})
        cy = another_browser(client)
        assert cy.post("/api/session", json={"name": "Cy", "password": PASSWORD}).status_code == 200
        cookies = cy.cookies
    with TestClient(app_with(backend_url=url)) as again:
        again.cookies = cookies
        code, reason = refusal(again)
        assert code == CloseCode.FORBIDDEN
        assert reason == "Banned from this room by Ann: for good"
        assert refusal(from_address(again, "192.0.2.1"), "name=other")[0] == CloseCode.FORBIDDEN
        bob = another_browser(again)
        bob.post("/api/session", json={"name": "Bob", "password": PASSWORD})
        with chat(bob) as moderator:
            assert moderator.welcome["owner"] == "Ann"
            assert moderator.welcome["moderators"] == ["Bob"]
            assert moderator.welcome["topic"]["text"] == "kept"
            assert moderator.welcome["role"] == "moderator"
            assert moderator.welcome["muted"]["until"] is not None
            moderator.say("still muted")
            assert error(moderator)["code"] == "muted"


def test_whoever_is_banned_from_a_room_cannot_search_it_either(client: TestClient) -> None:
    def searched(browser: TestClient, room: str = "lobby") -> int:
        return browser.get(f"/api/rooms/{room}/search", params={"q": "spam"}).status_code

    bob, troll = account(client, "Bob"), from_address(client, "192.0.2.1")
    with chat(account(client, "Ann")) as owner:
        claim(owner)
        with chat(troll, "name=troll"):
            act(owner, {"type": "ban", "name": "troll"})
        act(owner, {"type": "ban", "name": "bob"})
        assert searched(bob) == 403  # an account, by its account
        assert searched(troll) == 401  # a guest, by its address: an account may (as it may come in)
        assert searched(from_address(client, "192.0.2.2")) == 200
        assert searched(bob, "den") == 200  # a room's ban is that room's
        act(owner, {"type": "unban", "name": "bob"})
        assert searched(bob) == 200
