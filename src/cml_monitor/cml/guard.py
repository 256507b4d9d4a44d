"""Where the monitor may send the CML account's password: never into a blocked network.

An admin registers a controller URL; the monitor then connects to it every cycle with the
CML credentials. A URL pointing at the instance metadata service, at the monitor's own host
(its Redis, its PostgreSQL) or anywhere else in `CML_URL_BLOCKED_NETWORKS` must be refused, in
every spelling an attacker might use: `127.1`, `2130706433`, `0x7f000001`, `169.254.169.254.`
(trailing dot), `127。0。0。1` (which the URL library folds to `127.0.0.1`), an IPv6 address that
carries a blocked IPv4 one (mapped `::ffff:a.b.c.d`, compatible `::a.b.c.d`, NAT64
`64:ff9b::a.b.c.d`, 6to4 `2002:AABB:CCDD::`, Teredo), the unspecified `0.0.0.0` and `::` (which
reach the local host), a name that resolves there. The URL is checked when it is registered or
changed, and the address actually connected to is checked again on every connection (DNS may
change in between).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable, Sequence
from urllib.parse import urlsplit

import aiohttp
import yarl
from aiohttp.abc import AbstractResolver, ResolveResult

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class BlockedAddress(ValueError):
    """The URL's host is, or resolves to, an address in a blocked network."""


def parse_networks(text: str | Iterable[str]) -> tuple[Network, ...]:
    items = text.split(",") if isinstance(text, str) else list(text)
    return tuple(ipaddress.ip_network(item.strip(), strict=False) for item in items if item.strip())


def _unbracketed(host: str) -> str:
    """The host as a resolver reads it: no brackets, no zone, no trailing dots (`a.b.` is `a.b`)."""
    return host.strip("[]").split("%", 1)[0].rstrip(".")


def literal_address(host: str) -> Address | None:
    """The address a host names by itself, in any spelling the C library accepts; else None."""
    host = _unbracketed(host)
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:  # 127.1, 2130706433, 0x7f000001, 0177.0.0.1: what inet_aton (and so connect) accepts
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except (OSError, ValueError):
        return None


# Where an IPv6 address carries an IPv4 one that a translator, a tunnel or a dual-stack socket
# may end up connecting to. Each entry: the prefix and the bit offsets (from the left) at which
# the 32 bits of IPv4 may sit. RFC 6052 lets a NAT64 operator's own /48 put them after a /48,
# /56, /64, /72, /80 or /96 prefix (bits 64-71 are always zero and skipped).
_NAT64_OFFSETS = (48, 56, 64, 72, 80, 96)
_EMBEDDING: tuple[tuple[ipaddress.IPv6Network, tuple[int, ...]], ...] = (
    (ipaddress.IPv6Network("::/96"), (96,)),  # IPv4-compatible ::a.b.c.d (and :: itself)
    (ipaddress.IPv6Network("::ffff:0:0/96"), (96,)),  # IPv4-mapped
    (ipaddress.IPv6Network("::ffff:0:0:0/96"), (96,)),  # IPv4-translated (SIIT)
    (ipaddress.IPv6Network("64:ff9b::/96"), (96,)),  # NAT64, the well-known prefix
    (ipaddress.IPv6Network("64:ff9b:1::/48"), _NAT64_OFFSETS),  # NAT64, local-use prefixes
    (ipaddress.IPv6Network("2002::/16"), (16,)),  # 6to4
)
_TEREDO = ipaddress.IPv6Network("2001::/32")


def _ipv4_at(value: int, offset: int) -> ipaddress.IPv4Address:
    """The 32 bits of IPv4 that RFC 6052 places `offset` bits into the address."""
    bits = []
    position = offset
    while len(bits) < 32:
        if position not in range(64, 72):  # the "u" octet is never part of the address
            bits.append((value >> (127 - position)) & 1)
        position += 1
    return ipaddress.IPv4Address(int("".join(map(str, bits)), 2))


def embedded_ipv4(address: Address) -> list[ipaddress.IPv4Address]:
    """Every IPv4 address that `address` may stand for (none for an IPv4 address itself)."""
    if not isinstance(address, ipaddress.IPv6Address):
        return []
    value = int(address)
    found = [
        _ipv4_at(value, offset) for network, offsets in _EMBEDDING if address in network for offset in offsets
    ]
    if address in _TEREDO and address.teredo is not None:
        found.extend(address.teredo)  # (server, client); the client address is de-obfuscated
    return found


# Connecting to an unspecified address reaches the monitor's own host, so these are refused
# whatever CML_URL_BLOCKED_NETWORKS says.
ALWAYS_BLOCKED: tuple[Network, ...] = (ipaddress.ip_network("0.0.0.0/8"), ipaddress.ip_network("::/128"))


class UrlGuard:
    # URLs already found allowed, with their host. The syntax check is a pure function of the URL
    # and this guard's fixed networks, and every cycle asks it for the same few URLs per
    # controller: parsing them twice and trying every spelling of an address was a quarter of a
    # cycle's CML CPU (bench.load --cpu-split). Refusals are not kept; they are rare and re-checked.
    _ALLOWED_MAX = 65_536

    def __init__(self, blocked: Sequence[Network]) -> None:
        self.blocked = tuple(blocked)
        self._allowed: dict[str, str] = {}

    def check_address(self, address: Address) -> None:
        networks = self.blocked + ALWAYS_BLOCKED
        for candidate in [address, *embedded_ipv4(address)]:
            for network in networks:
                if candidate.version == network.version and candidate in network:
                    raise BlockedAddress(f"{address} is in a blocked network ({network})")

    def check_url_syntax(self, url: str) -> str:
        """The host of `url`, if nothing in the URL itself is refused (literal address, credentials).

        The host is read both as the standard library and as aiohttp's URL library (yarl) read
        it: yarl folds `127。0。0。1` to `127.0.0.1` and then connects without asking a resolver.
        """
        host = self._allowed.get(url)
        if host is None:
            host = self._check_url_syntax(url)
            if len(self._allowed) >= self._ALLOWED_MAX:
                self._allowed.clear()
            self._allowed[url] = host
        return host

    def _check_url_syntax(self, url: str) -> str:
        parts = urlsplit(url)
        if parts.username is not None or parts.password is not None:
            raise BlockedAddress("must not carry a user name or password")
        try:
            host = yarl.URL(url).host or ""
        except ValueError as exc:
            raise BlockedAddress(f"is not a URL aiohttp would read ({exc})") from None
        if host.endswith(".") or (parts.hostname or "").endswith("."):
            # Resolvers disagree on `name.`: glibc skips /etc/hosts for `localhost.`, others do
            # not; what such a name reaches cannot be known here, and no controller needs it.
            raise BlockedAddress("must not end with a dot")
        for name in {parts.hostname or "", host}:
            address = literal_address(name)
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
            async with asyncio.timeout(timeout):
                infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
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
