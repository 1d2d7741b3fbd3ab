"""How many WebSockets each client address holds open, and the cap on them.

One host must not take every socket the server has. The cap is per address, with two
refinements: an IPv4 address written as IPv6 (`::ffff:192.0.2.1`) is the IPv4 address, and
an IPv6 address counts as its /64 network, since a single host can pick any address in its
/64 at will (RFC 4941 privacy addresses) and would otherwise get a fresh cap for each.
"""

from __future__ import annotations

import ipaddress


def address_key(host: str) -> str:
    """The key `host` is counted under: the address itself, or its /64 network for IPv6."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host  # not an IP address (a test client, a name): counted as it is
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class Slot:
    """One counted connection. `release` gives it back; releasing it again does nothing."""

    __slots__ = ("_connections", "key")

    def __init__(self, connections: Connections, key: str) -> None:
        self._connections: Connections | None = connections
        self.key = key

    def release(self) -> None:
        connections, self._connections = self._connections, None
        if connections is not None:
            connections._release(self.key)


class Connections:
    """Open WebSockets per client address; at most `limit` each (0: no cap, but still counted)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: dict[str, int] = {}

    def open(self, host: str) -> Slot | None:
        """Count a new connection from `host`; None if its address is at the cap already.

        The caller releases the slot when the connection ends, whatever ends it.
        """
        key = address_key(host)
        count = self._open.get(key, 0)
        if self.limit and count >= self.limit:
            return None
        self._open[key] = count + 1
        return Slot(self, key)

    def count(self, host: str) -> int:
        return self._open.get(address_key(host), 0)

    def __len__(self) -> int:
        """How many addresses hold a connection: 0 once everyone has gone."""
        return len(self._open)

    def _release(self, key: str) -> None:
        count = self._open[key] - 1
        if count:
            self._open[key] = count
        else:
            del self._open[key]  # an address that left costs nothing: the table cannot grow forever
