"""The `/ws` endpoint: a thin adapter from Starlette's WebSocket to the hub's `Session`."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from starlette.endpoints import WebSocketEndpoint
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketDisconnected

from app.backends.base import BackendError
from app.core.accounts import Accounts
from app.core.hub import Hub, NameTaken, NotSignedIn, Refused
from app.core.protocol import SUBPROTOCOL, TOKEN_SUBPROTOCOL, BadRequest, CloseCode, close_reason
from app.core.session import Session
from app.core.sockets import SINK_EXTENSION, ConnectionClosed
from app.core.stats import CLIENT, NO_CLOSE, SERVER, Stats
from app.settings import Settings
from app.web.accounts import session_id_of
from app.web.connections import Connections, Slot, address_key
from app.web.origins import origin_allowed

# What a send raises once the peer is gone. RuntimeError too: uvicorn closes a connection by
# itself (a frame over ws_max_size, or not UTF-8) and then refuses whatever the app sends with
# "Unexpected ASGI message ..., after sending 'websocket.close'"; and it skips the accept of
# a connection whose transport began closing during the handshake, then refuses the sends.
# A writer caught by either must end quietly, not take the endpoint down with a traceback.
_GONE = (WebSocketDisconnect, WebSocketDisconnected, RuntimeError)

logger = logging.getLogger("chatroom.connections")

# A secret in a URL ends up in access logs, a proxy's included, before the app can say no.
NOT_IN_THE_URL = "The token goes in the Sec-WebSocket-Protocol header, as chatroom.token.TOKEN, never in the URL"


def resume_token(subprotocols: list[str]) -> str | None:
    """The token a client offered as a subprotocol (`chatroom.token.TOKEN`), if any."""
    tokens = [offered[len(TOKEN_SUBPROTOCOL) :] for offered in subprotocols if offered.startswith(TOKEN_SUBPROTOCOL)]
    if len(tokens) > 1:
        raise BadRequest(f"Expected one {TOKEN_SUBPROTOCOL}TOKEN subprotocol at most, but got {len(tokens)}")
    return tokens[0] if tokens else None


class _Socket:
    """`app.core.sockets.Connection` over a Starlette WebSocket."""

    __slots__ = ("_websocket",)

    def __init__(self, websocket: WebSocket) -> None:
        self._websocket = websocket

    async def send_text(self, payload: bytes) -> None:
        try:
            await self._websocket.send({"type": "websocket.send", "text": payload.decode()})
        except _GONE as exc:
            raise ConnectionClosed from exc

    async def close(self, code: int, reason: str) -> None:
        try:
            await self._websocket.close(code, reason)
        except _GONE as exc:
            raise ConnectionClosed from exc


class ChatEndpoint(WebSocketEndpoint):
    """`wss://HOST/ws?room=ROOM&name=NAME`: one person in one room (docs/protocol.md, "Connecting")."""

    encoding = None  # frames go to the client as they are: it owns decoding and its limits

    session: Session | None = None
    _cut_off = False
    _slot: Slot | None = None  # this connection, counted against its address's cap
    _stats: Stats | None = None
    _address: str | None = None
    _refused: int | None = None  # the code the server closed with before the connection joined a room
    _closed: tuple[int, str] | None = None  # the code it ended with once it had, and who closed it

    async def dispatch(self) -> None:
        try:
            await super().dispatch()
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if not self._cut_off or task is None or task.uncancel():
                raise
            # The peer would not take its close: ending here lets the server drop the socket.
        finally:
            # Here, not in on_disconnect: that one is skipped when on_connect raises.
            if self._slot is not None:
                self._slot.release()
            self._ended()

    def _ended(self) -> None:
        """Count the connection's end, and log it."""
        if self._stats is None:
            return
        if self._refused is not None:
            code, by = self._refused, SERVER
        else:
            code, by = self._closed or (NO_CLOSE, CLIENT)
        self._stats.closed_with(code, by)
        session = self.session
        fields = {"event": "connection_closed", "address": self._address, "code": int(code), "by": by}
        if session is not None:
            fields |= {"room": session.room.name, "screen_name": session.name}
            logger.info(
                "%s in %s from %s: closed with %d by the %s",
                session.name,
                session.room.name,
                self._address,
                code,
                by,
                extra=fields,
            )
        elif self._refused is not None:
            logger.info("connection from %s refused: closed with %d", self._address, code, extra=fields)
        else:
            logger.info("connection from %s ended before it joined a room (%d)", self._address, code, extra=fields)

    async def _refuse(self, websocket: WebSocket, code: int, reason: str = "") -> None:
        self._refused = code
        await websocket.close(code, reason)

    async def on_connect(self, websocket: WebSocket) -> None:
        hub: Hub = websocket.state.hub
        settings: Settings = websocket.state.settings
        address = websocket.client.host if websocket.client is not None else None  # None: a Unix socket
        self._stats, self._address = hub.stats, address
        hub.stats.opened += 1
        if not origin_allowed(websocket.headers, settings.allowed_origins, websocket.scope["scheme"]):
            await self._refuse(websocket, CloseCode.POLICY_VIOLATION)  # before accept: an HTTP 403
            return
        connections: Connections = websocket.state.connections
        if address is not None:
            self._slot = connections.open(address)
        subprotocols: list[str] = websocket.scope.get("subprotocols", [])
        await websocket.accept(SUBPROTOCOL if SUBPROTOCOL in subprotocols else None)
        if "token" in websocket.query_params:
            # Refused even when it would match, so that a client that leaks it learns at once.
            await self._refuse(websocket, CloseCode.INVALID_NAME, NOT_IN_THE_URL)
            return
        if address is not None and self._slot is None:
            # Accepted first, like a refused name, so that a browser can read why.
            reason = f"Too many connections from your address: at most {connections.limit}"
            await self._refuse(websocket, CloseCode.TOO_MANY_CONNECTIONS, reason)
            return
        task = asyncio.current_task()
        assert task is not None

        def cut_off() -> None:
            self._cut_off = True
            task.cancel()

        params = websocket.query_params
        session_id = session_id_of(websocket)
        account = None
        if session_id is not None:
            accounts: Accounts = websocket.state.accounts
            account = await accounts.identify(session_id)
            if account is None:
                # The page believes it is signed in: it must hear that it is not, not become a guest.
                await self._refuse(websocket, CloseCode.NOT_SIGNED_IN, "Your session has ended: sign in again")
                return
        try:
            token = resume_token(subprotocols)
            self.session = await hub.join(
                _Socket(websocket),
                cut_off,
                params.get("room"),
                params.get("name"),
                since=params.get("since"),
                epoch=params.get("epoch"),
                token=token,
                sink=websocket.scope.get("extensions", {}).get(SINK_EXTENSION, {}).get("sink"),
                account=account,
                address=address_key(address) if address is not None else None,
            )
        except BadRequest as exc:
            await self._refuse(websocket, CloseCode.INVALID_NAME, close_reason(str(exc)))
        except NameTaken as exc:  # its reason holds a name and a room: multibyte, it may be long
            await self._refuse(websocket, CloseCode.NAME_TAKEN, close_reason(str(exc)))
        except NotSignedIn as exc:
            await self._refuse(websocket, CloseCode.NOT_SIGNED_IN, close_reason(str(exc)))
        except Refused as exc:
            await self._refuse(websocket, exc.code, close_reason(exc.reason))
        except BackendError:
            # The room or the name could not be checked (a shared backend out of reach): the
            # client comes back later, as after any 1013.
            reason = "The chat is unavailable right now; try again soon"
            await self._refuse(websocket, CloseCode.TRY_AGAIN_LATER, reason)

    async def on_receive(self, websocket: WebSocket, data: Any) -> None:
        if self.session is not None:
            await self.session.receive(data)

    async def on_disconnect(self, websocket: WebSocket, close_code: int) -> None:
        if self.session is not None:
            closed_by_server = self.session.member.close_code
            self._closed = (closed_by_server, SERVER) if closed_by_server is not None else (close_code, CLIENT)
            await self.session.finished()
