"""Search over HTTP (docs/protocol.md, "Search"): `GET /api/rooms/NAME/search?q=…&before=ID`,
and the messages around one it found, `GET /api/rooms/NAME/messages?around=ID`. Policy is
app/core/search.py's; this adapts HTTP to it."""

from __future__ import annotations

import math

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app.backends.base import BackendError
from app.core.accounts import Accounts
from app.core.identity import Identity
from app.core.messages import Message
from app.core.names import InvalidName, clean_room
from app.core.protocol import MAX_ID
from app.core.search import BadQuery, Search
from app.web.accounts import session_id_of
from app.web.connections import address_key

_NO_STORE = {"cache-control": "no-store"}


class Refusal(Exception):
    def __init__(self, response: Response) -> None:
        self.response = response


def _error(status: int, error: str, detail: str, **headers: str) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers={**_NO_STORE, **headers})


def _page(messages: list[Message], more: bool | None = None) -> Response:
    body = b'{"messages":[' + b",".join(message.json for message in messages) + b"]"
    if more is not None:
        body += b',"more":' + orjson.dumps(more)
    return Response(body + b"}", media_type="application/json", headers=_NO_STORE)


def _message_id(request: Request, name: str, required: bool) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        if required:
            raise Refusal(_error(400, "bad_request", f"Expected {name}=ID, a message id"))
        return None
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= MAX_ID:
        raise Refusal(_error(400, "bad_request", f"Expected {name} to be a message id, but got {raw[:40]!r}"))
    return int(raw)


class SearchRoutes:
    @property
    def routes(self) -> list[Route]:
        return [
            Route("/api/rooms/{room}/search", self.search),
            Route("/api/rooms/{room}/messages", self.around),
        ]

    async def _room(self, request: Request) -> tuple[Search, str]:
        """The room asked about, once who asks may read it and has not asked too often."""
        search: Search = request.state.search
        try:
            room = clean_room(request.path_params["room"])
        except InvalidName as exc:
            raise Refusal(_error(400, "bad_room", str(exc))) from None
        identity: Identity | None = None
        session_id = session_id_of(request)
        if session_id is not None:
            accounts: Accounts = request.state.accounts
            identity = await accounts.identify(session_id)
        address = address_key(request.client.host) if request.client is not None else None
        if not await search.may_read(room, identity, address):
            if identity is None:
                raise Refusal(_error(401, "signed_out", "Sign in to search here"))
            raise Refusal(_error(403, "forbidden", f"You may not read {room!r}"))
        wait = search.wait(address if address is not None else "unix")
        if wait:
            detail = "Too many searches: try again in a moment"
            raise Refusal(_error(429, "throttled", detail, **{"retry-after": str(math.ceil(wait))}))
        return search, room

    async def search(self, request: Request) -> Response:
        """`{"messages": [...], "more": bool}`: a page of matches, newest first."""
        try:
            search, room = await self._room(request)
            before = _message_id(request, "before", required=False)
            phrases = search.phrases(request.query_params.get("q", ""))
            messages, more = await search.find(room, phrases, before)
        except Refusal as refusal:
            return refusal.response
        except BadQuery as exc:
            return _error(400, "bad_query", str(exc))
        except BackendError:
            return _error(503, "unavailable", "The history cannot be searched right now; try again")
        return _page(messages, more)

    async def around(self, request: Request) -> Response:
        """`{"messages": [...]}`: the message and the ones around it, oldest first."""
        try:
            search, room = await self._room(request)
            around = _message_id(request, "around", required=True)
            assert around is not None
            messages = await search.around(room, around)
        except Refusal as refusal:
            return refusal.response
        except BackendError:
            return _error(503, "unavailable", "The history cannot be read right now; try again")
        return _page(messages)
