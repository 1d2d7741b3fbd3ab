"""A TCP proxy between the browser and the server that can lose the browser's side only.

That is what a network blip looks like from each end: the page sees its connection drop,
while the server, which has heard nothing, keeps the old connection (a ghost) until its
pings go unanswered. The proxy passes bytes through untouched, TLS included.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from types import TracebackType

from bench.server import free_port


class _Pair:
    def __init__(self, browser: socket.socket, server: socket.socket) -> None:
        self.browser = browser
        self.server = server
        self.ghost = False  # the browser's side was cut: keep the server's side open

    def close_browser_side(self) -> None:
        self.ghost = True
        with contextlib.suppress(OSError):
            self.browser.shutdown(socket.SHUT_RDWR)
        self.browser.close()

    def close(self) -> None:
        for end in (self.browser, self.server):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            end.close()


class BlipProxy:
    """Listens on 127.0.0.1:`port` and forwards every connection to 127.0.0.1:`target`."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = free_port()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._pairs: list[_Pair] = []
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._holding = False  # new connections are closed at once, as by a network still down

    @property
    def origin(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def __enter__(self) -> BlipProxy:
        self._start(self._accept_forever)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._listener.close()
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            pair.close()
        for thread in self._threads:
            thread.join(timeout=5)

    def blip(self) -> None:
        """Drop the browser's side of every open connection; the server's sides stay open."""
        with self._lock:
            for pair in self._pairs:
                if not pair.ghost:
                    pair.close_browser_side()

    def hold(self) -> None:
        """From now on, close every new connection at once."""
        self._holding = True

    def let_through(self) -> None:
        self._holding = False

    def release_ghosts(self) -> None:
        """Close the server's side of every connection cut by `blip`, as its pings would in the end."""
        with self._lock:
            ghosts = [pair for pair in self._pairs if pair.ghost]
            self._pairs = [pair for pair in self._pairs if not pair.ghost]
        for pair in ghosts:
            pair.close()

    def _start(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _accept_forever(self) -> None:
        while True:
            try:
                browser, _ = self._listener.accept()
            except OSError:
                return  # closed: the proxy is done
            if self._holding:
                browser.close()
                continue
            server = socket.create_connection(("127.0.0.1", self.target))
            pair = _Pair(browser, server)
            with self._lock:
                self._pairs.append(pair)
            self._start(self._pump, pair, browser, server)
            self._start(self._pump, pair, server, browser)

    @staticmethod
    def _pump(pair: _Pair, source: socket.socket, sink: socket.socket) -> None:
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                data = b""
            if not data:
                break
            try:
                sink.sendall(data)
            except OSError:
                if pair.ghost:
                    continue  # what the server sends a ghost goes nowhere, as on a dead network
                break
        if not pair.ghost:
            pair.close()
