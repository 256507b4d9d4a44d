"""Where the monitor may send the CML account's password: never into a blocked network.

An admin registers a controller URL; the monitor then connects to it every cycle with the
CML credentials. A URL pointing at the instance metadata service, at the monitor's own host
(its Redis, its PostgreSQL) or anywhere else in `CML_URL_BLOCKED_NETWORKS` must be refused, in
every spelling an attacker might use: `127.1`, `2130706433`, `0x7f000001`, `[::ffff:127.0.0.1]`,
a name that resolves there. The URL is checked when it is registered or changed, and the address
actually connected to is checked again on every connection (DNS may change in between).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable, Sequence
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class BlockedAddress(ValueError):
    """The URL's host is, or resolves to, an address in a blocked network."""


def parse_networks(text: str | Iterable[str]) -> tuple[Network, ...]:
    items = text.split(",") if isinstance(text, str) else list(text)
    return tuple(ipaddress.ip_network(item.strip(), strict=False) for item in items if item.strip())


def literal_address(host: str) -> Address | None:
    """The address a host names by itself, in any spelling the C library accepts; else None."""
    host = host.strip("[]")
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        pass
    try:  # 127.1, 2130706433, 0x7f000001, 0177.0.0.1: what inet_aton (and so connect) accepts
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def _candidates(address: Address) -> list[Address]:
    """The address and the IPv4 address it embeds (mapped `::ffff:a.b.c.d`, 6to4, NAT64 are not
    used here; mapped is what a dual-stack socket would connect to)."""
    found: list[Address] = [address]
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        found.append(address.ipv4_mapped)
    return found


class UrlGuard:
    def __init__(self, blocked: Sequence[Network]) -> None:
        self.blocked = tuple(blocked)

    def check_address(self, address: Address) -> None:
        for candidate in _candidates(address):
            for network in self.blocked:
                if candidate.version == network.version and candidate in network:
                    raise BlockedAddress(f"{address} is in a blocked network ({network})")

    def check_url_syntax(self, url: str) -> str:
        """The host of `url`, if nothing in the URL itself is refused (literal address, credentials)."""
        parts = urlsplit(url)
        if parts.username is not None or parts.password is not None:
            raise BlockedAddress("must not carry a user name or password")
        host = parts.hostname or ""
        address = literal_address(host)
        if address is not None:
            self.check_address(address)
        return host

    async def check_url(self, url: str, *, timeout: float = 5.0) -> None:
        """Refuse a URL whose host is, or now resolves to, a blocked address.

        A name that does not resolve yet is accepted: it is checked again at every connection.
        """
        host = self.check_url_syntax(url)
        if not self.blocked or literal_address(host) is not None:
            return
        try:
            infos = await asyncio.wait_for(
                asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM), timeout
            )
        except (OSError, TimeoutError):
            return
        for *_, sockaddr in infos:
            self.check_address(ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0]))


class GuardedResolver(AbstractResolver):
    """aiohttp's resolver, refusing any address in a blocked network (the one then connected to)."""

    def __init__(self, guard: UrlGuard) -> None:
        self._guard = guard
        self._inner = aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        for result in results:
            self._guard.check_address(ipaddress.ip_address(result["host"]))
        return results

    async def close(self) -> None:
        await self._inner.close()
