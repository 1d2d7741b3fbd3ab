"""Who may see what the server knows of its insides (the detail of `/healthz`): the
addresses in `CHAT_METRICS_ALLOW`. Anyone may learn whether the server is well; the reason
it is not names internal addresses (a Redis host), which are for its operators only."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# A request that carries one of these came through a proxy, or says it did: its client
# address may be the proxy's own, a loopback one, whoever is behind it (when the proxy's
# headers are believed, uvicorn has already put the client's there, which cannot be told
# apart here). It is shown nothing; operators ask the server itself, not through the proxy.
FORWARDING_HEADERS = ("x-forwarded-for", "forwarded", "x-real-ip")


class Operators:
    def __init__(self, allowed: Iterable[str]) -> None:
        self.networks: tuple[Network, ...] = tuple(ipaddress.ip_network(item, strict=False) for item in allowed)

    def admit(self, client: str | None, headers: Mapping[str, str]) -> bool:
        """Whether a request from `client` (its address; None: a Unix socket) with these headers
        may see the server's insides."""
        if client is None or any(name in headers for name in FORWARDING_HEADERS):
            return False
        try:
            address = ipaddress.ip_address(client.partition("%")[0])
        except ValueError:
            return False  # not an address at all
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.networks)
