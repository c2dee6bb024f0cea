"""Image URLs: the allowlist, addresses checked after resolution, the connection
pinned to the checked address, redirects, the deadline and the byte cap.

DNS and the remote server are test doubles here (a resolver function and
httpx's MockTransport): the point is which address is reached and what is
refused before any connection. The real fetch from a local HTTP server is in
tests/server/test_openai_sdk.py.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from openai_frontend.errors import BadRequest
from openai_frontend.image_urls import ImageFetcher, ImageURLPolicy, is_public

PARAM = "messages[0].content[0].image_url.url"
IMAGE = b"\x89PNG" + bytes(200)


def image_response(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, content=IMAGE, headers={"content-type": "image/png"})


class Remote:
    """DNS (host -> addresses) and the servers behind it, recording what was asked of them."""

    def __init__(self, table: dict[str, list[str]], handler=image_response):
        self.table = table
        self.resolved: list[tuple[str, int]] = []
        self.requests: list[httpx.Request] = []
        self.transport = httpx.MockTransport(self._serve(handler))

    async def resolve(self, host: str, port: int) -> list[str]:
        self.resolved.append((host, port))
        return self.table.get(host, [])

    def _serve(self, handler):
        def serve(request: httpx.Request) -> httpx.Response:
            self.requests.append(request)
            return handler(request)

        return serve

    def fetcher(self, policy: ImageURLPolicy, **options) -> ImageFetcher:
        options = {"max_bytes": 1000, "timeout_s": 5.0, **options}
        return ImageFetcher(policy, resolver=self.resolve, transport=self.transport, **options)


def fetch(f: ImageFetcher, url: str) -> bytes:
    return asyncio.run(f.fetch(url, PARAM)).data


def refused(f: ImageFetcher, url: str, code: str) -> BadRequest:
    with pytest.raises(BadRequest) as error:
        fetch(f, url)
    assert error.value.code == code, error.value.message
    assert error.value.param == PARAM
    return error.value


PUBLIC = {"images.example.com": ["93.184.215.14"]}
OPEN = ImageURLPolicy(enabled=True)


@pytest.mark.parametrize(
    "address, public",
    [
        ("93.184.215.14", True),
        ("2606:4700::1111", True),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("127.0.0.1", False),
        ("169.254.169.254", False),
        ("0.0.0.0", False),
        ("100.64.0.1", False),
        ("224.0.0.1", False),
        ("::1", False),
        ("fe80::1%eth0", False),
        ("fc00::1", False),
        ("::ffff:127.0.0.1", False),
        ("::ffff:10.0.0.1", False),
        ("::ffff:93.184.215.14", True),
        # IPv6 that a gateway turns into the IPv4 address it carries: NAT64, 6to4, Teredo, IPv4-compatible.
        ("64:ff9b::7f00:1", False),
        ("64:ff9b::a9fe:a9fe", False),
        ("64:ff9b:1::a00:1", False),
        ("2002:7f00:1::", False),
        ("2002:a9fe:a9fe::1", False),
        ("::7f00:1", False),
        ("2001:0:4136:e378:8000:63bf:80ff:fffe", False),  # Teredo, client 127.0.0.1
    ],
)
def test_public_addresses(address, public):
    assert is_public(address) is public


def test_urls_are_off_by_default_and_nothing_is_resolved():
    remote = Remote(PUBLIC)
    error = refused(remote.fetcher(ImageURLPolicy()), "https://images.example.com/page.png", "image_url_disabled")
    assert "disabled" in error.message
    assert remote.resolved == []


def test_the_connection_goes_to_the_checked_address_with_the_host_kept_for_http_and_tls():
    remote = Remote(PUBLIC)
    assert fetch(remote.fetcher(OPEN), "https://images.example.com:8443/scans/page.png?x=1") == IMAGE
    (sent,) = remote.requests
    assert sent.url == "https://93.184.215.14:8443/scans/page.png?x=1"
    assert sent.headers["host"] == "images.example.com:8443"
    assert sent.extensions["sni_hostname"] == "images.example.com"
    assert remote.resolved == [("images.example.com", 8443)]


def test_dns_is_asked_once_so_a_rebinding_answer_is_never_used():
    remote = Remote(PUBLIC)
    answers = iter([["93.184.215.14"], ["127.0.0.1"]])

    async def rebinding_dns(host: str, port: int) -> list[str]:
        remote.resolved.append((host, port))
        return next(answers)

    f = ImageFetcher(OPEN, max_bytes=1000, timeout_s=5.0, resolver=rebinding_dns, transport=remote.transport)
    assert fetch(f, "https://images.example.com/a.png") == IMAGE
    assert len(remote.resolved) == 1
    assert [r.url.host for r in remote.requests] == ["93.184.215.14"]


@pytest.mark.parametrize("url", ["https://images.example.com/a.png", "https://cdn.scans.example.org/a.png"])
def test_allowlisted_hosts_are_fetched(url):
    policy = ImageURLPolicy(enabled=True, hosts=("images.example.com", "*.scans.example.org"))
    remote = Remote({"images.example.com": ["93.184.215.14"], "cdn.scans.example.org": ["93.184.215.15"]})
    assert fetch(remote.fetcher(policy), url) == IMAGE


@pytest.mark.parametrize(
    "url",
    [
        "https://other.example.com/a.png",
        "https://scans.example.org.evil.com/a.png",
        "https://evilscans.example.org/a.png",
    ],
)
def test_hosts_outside_the_allowlist_are_refused_before_resolution(url):
    policy = ImageURLPolicy(enabled=True, hosts=("images.example.com", "*.scans.example.org"))
    remote = Remote({})
    assert "not allowed" in refused(remote.fetcher(policy), url, "image_url_host_not_allowed").message
    assert remote.resolved == []


@pytest.mark.parametrize(
    "addresses", [["10.0.0.7"], ["127.0.0.1"], ["169.254.169.254"], ["::1"], ["93.184.215.14", "192.168.0.10"]]
)
def test_a_host_resolving_to_a_private_address_is_refused_without_connecting(addresses):
    # An allowlisted name is no guarantee: its DNS may point inside.
    remote = Remote({"images.example.com": addresses})
    policy = ImageURLPolicy(enabled=True, hosts=("images.example.com",))
    error = refused(remote.fetcher(policy), "https://images.example.com/a.png", "image_url_private_address")
    assert "private" in error.message
    assert remote.requests == []


def test_an_ip_literal_is_checked_like_a_resolved_name():
    remote = Remote({"169.254.169.254": ["169.254.169.254"]})
    refused(remote.fetcher(OPEN), "http://169.254.169.254/latest/meta-data/", "image_url_private_address")
    assert remote.requests == []


def test_private_addresses_when_allowed():
    remote = Remote({"127.0.0.1": ["127.0.0.1"]})
    policy = ImageURLPolicy(enabled=True, hosts=("127.0.0.1",), allow_private=True)
    assert fetch(remote.fetcher(policy), "http://127.0.0.1:8000/a.png") == IMAGE


def test_unresolvable_host():
    refused(Remote({}).fetcher(OPEN), "https://nowhere.example.com/a.png", "image_url_unreachable")


def redirect_to(location: str):
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/a.png":
            return httpx.Response(302, headers={"location": location})
        return image_response(request)

    return handler


def test_redirects_are_not_followed_by_default():
    remote = Remote(PUBLIC, redirect_to("/b.png"))
    assert (
        "redirects" in refused(remote.fetcher(OPEN), "https://images.example.com/a.png", "image_url_redirect").message
    )


def test_a_followed_redirect_is_checked_again():
    inside = Remote({**PUBLIC, "internal.example.com": ["10.0.0.5"]}, redirect_to("https://internal.example.com/b.png"))
    refused(inside.fetcher(OPEN, max_redirects=3), "https://images.example.com/a.png", "image_url_private_address")
    assert [r.url.path for r in inside.requests] == ["/a.png"]

    remote = Remote(PUBLIC, redirect_to("/b.png"))
    assert fetch(remote.fetcher(OPEN, max_redirects=1), "https://images.example.com/a.png") == IMAGE
    assert [r.url.path for r in remote.requests] == ["/a.png", "/b.png"]


def test_http_error_status_is_named():
    remote = Remote(PUBLIC, lambda request: httpx.Response(404))
    assert (
        "HTTP 404" in refused(remote.fetcher(OPEN), "https://images.example.com/a.png", "image_url_http_status").message
    )


def test_declared_oversized_body_is_refused_unread():
    remote = Remote(PUBLIC, lambda request: httpx.Response(200, headers={"content-length": "5000"}))
    refused(remote.fetcher(OPEN), "https://images.example.com/a.png", "image_too_large")


def test_streamed_body_stops_being_read_past_the_cap():
    produced = []

    async def endless():
        for _ in range(1000):
            produced.append(1)
            yield bytes(100)

    remote = Remote(PUBLIC, lambda request: httpx.Response(200, content=endless()))
    refused(remote.fetcher(OPEN), "https://images.example.com/a.png", "image_too_large")
    assert len(produced) <= 11  # 1000-byte cap, 100-byte chunks


def test_the_whole_fetch_has_one_deadline():
    remote = Remote(PUBLIC)

    async def slow_dns(host: str, port: int) -> list[str]:
        await asyncio.sleep(10)
        return ["93.184.215.14"]

    f = ImageFetcher(OPEN, max_bytes=1000, timeout_s=0.2, resolver=slow_dns, transport=remote.transport)
    assert "timed out after 0.2 s" in refused(f, "https://images.example.com/a.png", "image_url_timeout").message


def test_connection_failure_is_named():
    def unreachable(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    error = refused(
        Remote(PUBLIC, unreachable).fetcher(OPEN), "https://images.example.com/a.png", "image_url_unreachable"
    )
    assert "connection refused" in error.message
