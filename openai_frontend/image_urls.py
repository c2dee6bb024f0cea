"""Fetching an image or document URL without letting a client reach what it should not.

A URL names a host; what is reached is an address. So the host is checked
against the allowlist, resolved once, every address it resolves to is checked
(private, loopback, link-local and other non-public ranges refused unless
allowed), and the connection goes to that checked address: the request names
the IP, and the host travels in the Host header and as the TLS server name
(certificates are still verified against the host). A second DNS answer
(DNS rebinding) is never asked for. Redirects are off by default; each one
followed is checked like the first URL. Proxies from the environment are
ignored: a proxy would reach the host on its own terms. The whole fetch, DNS
to last byte, has one deadline, and the body is read in chunks and dropped
as soon as it passes the byte cap.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx

from openai_frontend.errors import BadRequest

# host, port -> the addresses it resolves to
Resolver = Callable[[str, int], Awaitable[list[str]]]


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


# IPv6 ranges that carry an IPv4 address a gateway may forward to: NAT64
# (RFC 6052's well-known prefix, RFC 8215's local one) and the deprecated
# IPv4-compatible addresses. 6to4 and Teredo addresses have their own accessors.
_IPV4_IN_LOW_BITS = (
    ipaddress.ip_network("64:ff9b::/96"),
    ipaddress.ip_network("64:ff9b:1::/48"),
    ipaddress.ip_network("::/96"),
)


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    if ip.sixtofour:
        return [ip.sixtofour]
    if ip.teredo:
        return list(ip.teredo)
    if any(ip in network for network in _IPV4_IN_LOW_BITS):
        return [ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)]
    return []


def is_public(address: str) -> bool:
    """Whether `address`, and any IPv4 address it carries, is a public unicast address."""
    ip = ipaddress.ip_address(address.split("%")[0])  # drop an IPv6 zone ("fe80::1%eth0")
    reached: list[ipaddress.IPv4Address | ipaddress.IPv6Address]
    if isinstance(ip, ipaddress.IPv4Address):
        reached = [ip]
    elif ip.ipv4_mapped:  # the IPv4 address itself, on an IPv6 socket
        reached = [ip.ipv4_mapped]
    else:
        reached = [ip, *_embedded_ipv4(ip)]
    return all(a.is_global and not a.is_multicast for a in reached)


@dataclass(frozen=True)
class Loaded:
    """A fetched (or data URL's) body and what its sender called it; the content decides, not this."""

    data: bytes
    media_type: str | None


def _too_large(param: str, max_bytes: int, kind: str) -> BadRequest:
    return BadRequest(f"the {kind} at the URL is larger than {max_bytes} bytes", param=param, code=f"{kind}_too_large")


@dataclass(frozen=True)
class ImageURLPolicy:
    """Which URLs may be fetched: on or off, which hosts, which addresses."""

    enabled: bool = False
    hosts: tuple[str, ...] = ()  # empty: any host; "*.example.com": its subdomains
    allow_private: bool = False

    def check_url(self, url: httpx.URL, param: str, kind: str = "image") -> None:
        if not self.enabled:
            raise BadRequest(
                f"{kind} URLs are disabled on this server; send the {kind} as a base64 data URL",
                param=param,
                code="image_url_disabled",
            )
        if url.scheme not in ("http", "https") or not url.host:
            raise BadRequest(f"{kind} URLs must be http(s) URLs with a host", param=param, code=f"invalid_{kind}_url")
        if self.hosts and not any(_host_matches(url.host, pattern) for pattern in self.hosts):
            raise BadRequest(
                f"{kind} URLs from host {url.host!r} are not allowed on this server",
                param=param,
                code="image_url_host_not_allowed",
            )

    def check_addresses(self, host: str, addresses: list[str], param: str, kind: str = "image") -> None:
        if not addresses:
            raise BadRequest(f"{kind} URL host {host!r} does not resolve", param=param, code="image_url_unreachable")
        refused = [address for address in addresses if not is_public(address)]
        if refused and not self.allow_private:
            raise BadRequest(
                f"{kind} URL host {host!r} resolves to a private, loopback or link-local address ({refused[0]}); "
                "such addresses are not fetched",
                param=param,
                code="image_url_private_address",
            )


def _host_matches(host: str, pattern: str) -> bool:
    host = host.lower().rstrip(".")
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])
    return host == pattern


class ImageFetcher:
    def __init__(
        self,
        policy: ImageURLPolicy,
        max_bytes: int,
        timeout_s: float,
        max_redirects: int = 0,
        resolver: Resolver = system_resolver,
        transport: httpx.AsyncBaseTransport | None = None,
    ):
        self.policy = policy
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self.max_redirects = max_redirects
        self._resolve = resolver
        self._client = httpx.AsyncClient(
            # One deadline for the whole fetch (fetch()), none per phase. No
            # kept-alive connections: pooled by address, a connection set up
            # (and its certificate checked) for one host would carry another
            # host's request to the same address.
            transport=transport,
            trust_env=False,
            follow_redirects=False,
            timeout=None,
            limits=httpx.Limits(max_keepalive_connections=0),
            headers={"Accept": "application/pdf, image/*", "Accept-Encoding": "identity"},
        )

    async def fetch(self, url: str, param: str, max_bytes: int | None = None, kind: str = "image") -> Loaded:
        """The body and Content-Type at `url`, at most `max_bytes` (default: the fetcher's) of it."""
        cap = self.max_bytes if max_bytes is None else max_bytes
        try:
            target = httpx.URL(url)
        except httpx.InvalidURL as exc:
            raise BadRequest(f"the {kind} URL is not valid: {exc}", param=param, code=f"invalid_{kind}_url") from exc
        try:
            async with asyncio.timeout(self.timeout_s):
                return await self._follow(target, param, cap, kind)
        except TimeoutError as exc:
            raise BadRequest(
                f"fetching the {kind} URL timed out after {self.timeout_s:g} s", param=param, code="image_url_timeout"
            ) from exc
        except httpx.HTTPError as exc:
            raise BadRequest(
                f"fetching the {kind} URL failed: {exc or type(exc).__name__}",
                param=param,
                code="image_url_unreachable",
            ) from exc

    async def _follow(self, url: httpx.URL, param: str, max_bytes: int, kind: str) -> Loaded:
        for _ in range(self.max_redirects + 1):
            self.policy.check_url(url, param, kind)
            response = await self._client.send(await self._pinned_request(url, param, kind), stream=True)
            try:
                if not response.is_redirect:
                    return await self._body(response, param, max_bytes, kind)
                url = url.join(response.headers["location"])
            finally:
                await response.aclose()
        raise BadRequest(
            f"the {kind} URL redirects; this server follows {self.max_redirects} redirect(s) at most",
            param=param,
            code="image_url_redirect",
        )

    async def _pinned_request(self, url: httpx.URL, param: str, kind: str) -> httpx.Request:
        port = url.port or (443 if url.scheme == "https" else 80)
        addresses = await self._resolve(url.host, port)
        self.policy.check_addresses(url.host, addresses, param, kind)
        return self._client.build_request(
            "GET",
            url.copy_with(host=addresses[0]),
            headers={"Host": url.netloc.decode("ascii")},
            extensions={"sni_hostname": url.host},
        )

    async def _body(self, response: httpx.Response, param: str, max_bytes: int, kind: str) -> Loaded:
        if response.status_code != 200:
            raise BadRequest(
                f"fetching the {kind} URL failed: HTTP {response.status_code}",
                param=param,
                code="image_url_http_status",
            )
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            raise _too_large(param, max_bytes, kind)
        chunks, size = [], 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > max_bytes:
                raise _too_large(param, max_bytes, kind)
            chunks.append(chunk)
        media_type = response.headers.get("content-type", "").split(";")[0].strip().lower() or None
        return Loaded(b"".join(chunks), media_type)

    async def close(self) -> None:
        await self._client.aclose()
