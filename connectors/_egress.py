"""Egress guard: an httpx transport that connects only to vetted, public addresses.

Every request (and so every redirect hop) is resolved here, refused if ANY address of the host
is loopback, private, link-local, multicast, reserved, unspecified or a cloud metadata endpoint,
and then sent to the vetted IP itself, so a second DNS answer (rebinding) cannot swap the
destination between the check and the connect. The Host header and TLS SNI keep the name, so
virtual hosting and certificate checks work as before.
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network

import anyio
import httpx

IPAddress = IPv4Address | IPv6Address
# (host, port) -> the addresses the host resolves to.
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]

# AWS/GCP/Azure/OpenStack (IPv4), AWS (IPv6), Alibaba Cloud. Refused even when allow-listed.
METADATA_ADDRESSES = frozenset(ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200"))
_NAT64 = ip_network("64:ff9b::/96")  # RFC 6052: the last 32 bits are an IPv4 address
_DEFAULT_PORTS = {"http": 80, "https": 443}


class BlockedDestination(Exception):
    """The guard refused to connect; the message is safe to show (it holds no credential)."""


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def _embedded_ipv4(address: IPAddress) -> IPv4Address | None:
    if isinstance(address, IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def refusal_reason(address: IPAddress) -> str | None:
    """Why connecting to `address` is refused, or None for an ordinary public address."""
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    embedded = _embedded_ipv4(address)
    if embedded is not None:
        return refusal_reason(embedded)
    checks = (
        (address.is_unspecified, "an unspecified address"),
        (address.is_loopback, "a loopback address"),
        (address.is_link_local, "a link-local address"),
        (address.is_multicast, "a multicast address"),
        (address.is_private, "a private address"),
        # is_global is False for the rest (shared 100.64/10, documentation, reserved ranges).
        (address.is_reserved or not address.is_global, "a reserved, non-public address"),
    )
    return next((reason for refused, reason in checks if refused), None)


def default_port(url: httpx.URL) -> int:
    return url.port or _DEFAULT_PORTS.get(url.scheme, 0)


@dataclass(frozen=True, slots=True)
class AllowList:
    """Hosts an operator opened on purpose: `host` (any port) or `host:port` entries."""

    entries: frozenset[tuple[str, int | None]] = frozenset()

    @classmethod
    def parse(cls, items: Iterable[str]) -> AllowList:
        """Parse `host`, `host:port`, `[v6]:port` or bare IPv6 entries; raises ValueError."""
        entries: set[tuple[str, int | None]] = set()
        for raw in items:
            item = raw.strip().lower()
            if not item:
                continue
            host, port = item, None
            if item.startswith("["):
                host, _, rest = item[1:].partition("]")
                port = int(rest[1:]) if rest.startswith(":") else None
            elif item.count(":") == 1:
                host, _, port_text = item.partition(":")
                port = int(port_text)
            if not host or (port is not None and not 0 < port < 65536):
                raise ValueError(f"{raw!r} is not host[:port]")
            entries.add((host, port))
        return cls(frozenset(entries))

    def allows(self, host: str, port: int) -> bool:
        host = host.lower()
        return (host, None) in self.entries or (host, port) in self.entries


async def vetted_addresses(
    host: str, port: int, *, allow: AllowList, resolve: Resolver = system_resolver
) -> list[IPAddress]:
    """Where `host` may be reached: connect to these, never to a fresh DNS answer.

    Raises BlockedDestination when any address is refused, OSError when the host does not resolve.
    """
    try:
        addresses = [ip_address(host)]
    except ValueError:
        addresses = [ip_address(a) for a in await resolve(host, port)]
    if not addresses:
        raise OSError(f"{host} has no addresses")
    allowed = allow.allows(host, port)
    for address in addresses:
        reason = refusal_reason(address)
        # The allow-list opens private hosts, never the metadata endpoints.
        if reason and (not allowed or address in METADATA_ADDRESSES):
            named = host if str(address) == host else f"{host} ({address})"
            raise BlockedDestination(
                f"refused to connect to {named}: {reason}. Only public addresses are reachable "
                "unless the host is allow-listed"
            )
    return addresses


class GuardedTransport(httpx.AsyncBaseTransport):
    """Wraps the transport that really connects; every request passes the checks first."""

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport,
        *,
        allow: AllowList = AllowList(),
        resolve: Resolver = system_resolver,
    ) -> None:
        self._inner = inner
        self._allow = allow
        self._resolve = resolve

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme not in _DEFAULT_PORTS:
            raise BlockedDestination(f"refused {url.scheme}: only http and https are allowed")
        host, port = url.host, default_port(url)
        addresses = await self._vetted(host, port)
        last_error: httpx.ConnectError | None = None
        for address in addresses:  # in resolver order, like a plain connect would try them
            try:
                return await self._inner.handle_async_request(self._pinned(request, address))
            except httpx.ConnectError as exc:
                last_error = exc
        assert last_error is not None  # _vetted never returns an empty list
        raise last_error

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def _vetted(self, host: str, port: int) -> list[IPAddress]:
        try:
            return await vetted_addresses(host, port, allow=self._allow, resolve=self._resolve)
        except OSError:
            raise httpx.ConnectError(f"could not resolve {host}") from None

    @staticmethod
    def _pinned(request: httpx.Request, address: IPAddress) -> httpx.Request:
        extensions = dict(request.extensions)
        if request.url.scheme == "https":
            # The name still drives SNI and certificate verification (httpcore's sni_hostname).
            extensions.setdefault("sni_hostname", request.url.host)
        return httpx.Request(
            request.method,
            request.url.copy_with(host=str(address)),
            headers=request.headers,  # carries the original Host header
            stream=request.stream,
            extensions=extensions,
        )
