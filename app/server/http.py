"""Uvicorn's httptools HTTP protocol, with a deadline and a size limit on every request head.

Uvicorn waits for a request head (request line and headers; for us, mostly the WebSocket
upgrade request) as long as the peer likes, and buffers as much of it as the peer sends:
a client can hold a socket open by never finishing its request, or grow the server's
memory by sending headers without end. Here a head must be complete within
`handshake_timeout` seconds of its first byte (of the connection, for the first one), and
within `max_header_bytes`:

- a connection that sent nothing by the deadline is closed without a word (a browser may
  open a socket ahead of need; it must not find an error in it later);
- a head still incomplete at the deadline gets `408 Request Timeout`;
- a head over the size gets `431 Request Header Fields Too Large`;

and either way the connection is closed. Between requests, uvicorn's keep-alive timeout
applies as before. Once the head is complete the request is the application's, and a
WebSocket its protocol's (app/server/websocket.py): the deadline ends there.

What a client can make the server write without reading it is bounded too. Uvicorn reads
pipelined requests (sent before the answers to earlier ones) as they come and queues each
with its scope, without a limit: a client that pipelines requests and never reads grew the
server by a hundred megabytes a second. Here at most MAX_PIPELINED requests wait behind the
one being answered; past that, nothing more is read, and the connection is closed once those
are answered. And a connection whose answers do not drain (its socket over the high-water
mark) within `write_timeout` is cut off: its client has stopped reading.

    uvicorn app.main:app --http app.server.http:ChatHttpProtocol ...   (`chatroom` does this)
"""

from __future__ import annotations

import asyncio
from http import HTTPStatus
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from app.server.app_settings import of_server

# Requests that may wait behind the one being answered. Browsers do not pipeline at all; a
# client that does must send again, on a new connection, whatever was not answered.
MAX_PIPELINED = 8


class ChatHttpProtocol(HttpToolsProtocol):
    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        settings = of_server(app_state)
        self._head_timeout = settings.handshake_timeout
        self._max_head = settings.max_header_bytes
        self._head_bytes: int | None = None  # bytes of the request head so far; None between heads
        self._head_deadline: asyncio.TimerHandle | None = None
        self._write_timeout = settings.write_timeout
        self._write_deadline: asyncio.TimerHandle | None = None
        self._pipeline_full = False  # a request came past MAX_PIPELINED: nothing more is read

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_head()  # the first request's clock starts with the connection

    def connection_lost(self, exc: Exception | None) -> None:
        self._end_head()
        self._end_write_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._pipeline_full:
            self.flow.pause_reading()  # uvicorn resumes reading after each answer
            return
        if self._head_bytes is None and (self.cycle is None or self.cycle.response_complete):
            self._start_head()  # the first bytes of the next request on a kept-alive connection
        if self._head_bytes is not None:
            # Counted before the parser sees them: httptools would buffer them all.
            self._head_bytes += len(data)
            if self._head_bytes > self._max_head:
                self._refuse(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, f"Request head over {self._max_head} bytes")
                return
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._end_head()
        if self._pipeline_full:
            return
        if self.cycle is not None and not self.cycle.response_complete and len(self.pipeline) >= MAX_PIPELINED:
            self._pipeline_full = True
            self.flow.pause_reading()
            newest, _ = self.pipeline[0]  # uvicorn queues them on the left
            newest.keep_alive = False  # the connection closes once it is answered
            return
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._pipeline_full:  # else it would go to the last request queued
            super().on_body(body)

    def on_message_complete(self) -> None:
        if not self._pipeline_full:
            super().on_message_complete()

    def handle_websocket_upgrade(self) -> None:
        self._end_write_deadline()  # the transport is the WebSocket protocol's now, with its own
        super().handle_websocket_upgrade()

    def pause_writing(self) -> None:
        super().pause_writing()
        self._end_write_deadline()
        self._write_deadline = self.loop.call_later(self._write_timeout, self._write_timed_out)

    def resume_writing(self) -> None:
        super().resume_writing()
        self._end_write_deadline()

    def _write_timed_out(self) -> None:
        self._write_deadline = None
        self.transport.abort()  # its answers have not drained for write_timeout: it does not read

    def _end_write_deadline(self) -> None:
        if self._write_deadline is not None:
            self._write_deadline.cancel()
            self._write_deadline = None

    def _start_head(self) -> None:
        self._end_head()
        self._head_bytes = 0
        self._head_deadline = self.loop.call_later(self._head_timeout, self._head_timed_out)

    def _end_head(self) -> None:
        self._head_bytes = None
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_timed_out(self) -> None:
        self._head_deadline = None
        started = bool(self._head_bytes)
        self._end_head()
        if self.transport.is_closing():
            return
        if started:
            self._refuse(HTTPStatus.REQUEST_TIMEOUT, f"Request head not complete within {self._head_timeout:g} s")
        else:
            self.transport.close()

    def _refuse(self, status: HTTPStatus, message: str) -> None:
        """Answer `status` and close, as uvicorn answers a request it cannot parse with 400."""
        self._end_head()
        body = message.encode()
        head = [f"HTTP/1.1 {status.value} {status.phrase}\r\n".encode()]
        head.extend(name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers)
        head.append(b"content-type: text/plain; charset=utf-8\r\nconnection: close\r\n")
        head.append(f"content-length: {len(body)}\r\n\r\n".encode())
        self.transport.write(b"".join(head) + body)
        # Over TLS this waits for the peer's close_notify, but no longer than the loop's
        # ssl_shutdown_timeout (app/server/loop.py): a peer that stalled here will not send it.
        self.transport.close()
