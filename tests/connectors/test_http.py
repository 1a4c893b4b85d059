"""The generic HTTP connector against a fake API on loopback, and its egress guard.

The fake lives on 127.0.0.1, which the guard refuses by default, so every happy path here also
proves that the allow-list opens exactly the host:port it names.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

import httpx
import pytest

from connectors import ActionRunner, load_catalog
from connectors._egress import AllowList, BlockedDestination, GuardedTransport, Resolver
from connectors.errors import Forbidden, InvalidCredentials, InvalidInput, UpstreamError
from server.logs import install_redaction
from tests.fakes.http_upstream import FakeUpstream
from tests.fakes.loopback import run_asgi_on_loopback
from tests.support.asgi import Swappable

pytestmark = pytest.mark.anyio
http_api = load_catalog()["http"]
request = http_api.actions["request"]

TOKEN = "CanaryHttpToken-5b8e2f0c9d41a7"
PASSWORD = "CanaryHttpPassword-19fe77c0"


@dataclass
class Upstream:
    fake: FakeUpstream
    url: str  # http://127.0.0.1:PORT
    other: FakeUpstream  # a second origin, for cross-origin redirects
    other_url: str

    @property
    def hostport(self) -> str:
        return urlsplit(self.url).netloc

    def credentials(self, auth: str = "bearer", **overrides: str) -> dict[str, str]:
        base = {
            "base_url": f"{self.url}/api",
            "auth": auth,
            "token": TOKEN,
            "username": "ann",
            "password": PASSWORD,
            "allowed_hosts": self.hostport,
        }
        return {**base, **overrides}


@pytest.fixture(scope="module")
def _servers() -> Iterator[tuple[Swappable, str, Swappable, str]]:
    first, second = Swappable(), Swappable()
    with run_asgi_on_loopback(first) as first_url, run_asgi_on_loopback(second) as second_url:
        yield first, first_url, second, second_url


@pytest.fixture
def upstream(_servers: tuple[Swappable, str, Swappable, str]) -> Upstream:
    first, first_url, second, second_url = _servers
    fake, other = FakeUpstream(), FakeUpstream()
    fake.accepted_authorization.add(f"Bearer {TOKEN}")
    fake.accepted_authorization.add("Basic " + base64.b64encode(f"ann:{PASSWORD}".encode()).decode())
    fake.accepted_keys.add(TOKEN)
    other.open = True
    first.target, second.target = fake.app, other.app
    return Upstream(fake, first_url, other, second_url)


def runner() -> ActionRunner:
    """The operator opened loopback (TENDRIL_HTTP_ALLOWED_HOSTS); each connection still names its hosts."""
    return ActionRunner(timeout=5, allowed_hosts={"http": ["127.0.0.1", "localhost"]})


async def call(upstream: Upstream, params: dict[str, object], **credentials: str) -> dict[str, object]:
    result = await runner().run(http_api, request, params, credentials=upstream.credentials(**credentials))
    return result.model_dump(mode="json")


# -- happy paths through the allow-list ----------------------------------------------------------
async def test_verify_reports_the_base_url_and_auth(upstream: Upstream) -> None:
    account = await runner().verify(http_api, upstream.credentials())
    assert account == {"baseUrl": f"{upstream.url}/api", "auth": "bearer", "status": 200}


async def test_post_json_reaches_the_api_and_returns_its_json(upstream: Upstream) -> None:
    data = await call(
        upstream,
        {"method": "POST", "path": "echo", "query": {"page": 2, "tag": ["a", "b"]}, "json": {"name": "x"}},
    )
    assert data["status"] == 200 and data["truncated"] is False and data["text"] is None
    assert data["url"] == f"{upstream.url}/api/echo?page=2&tag=a&tag=b"
    echoed = data["json"]
    assert isinstance(echoed, dict)
    assert echoed["method"] == "POST" and echoed["body"] == '{"name": "x"}'
    assert echoed["query"] == "page=2&tag=a&tag=b"
    assert echoed["headers"]["content-type"] == "application/json"
    assert echoed["headers"]["authorization"] == "Bearer ****"  # echoed back, but scrubbed
    headers = data["headers"]
    assert isinstance(headers, dict) and headers["content-type"] == "application/json"
    assert sorted(headers) == ["content-length", "content-type", "date"]  # no `server`, no cookies


@pytest.mark.parametrize(
    ("auth", "extra", "header", "expected"),
    [
        ("bearer", {}, "authorization", f"Bearer {TOKEN}"),
        ("basic", {}, "authorization", "Basic " + base64.b64encode(f"ann:{PASSWORD}".encode()).decode()),
        ("api_key_header", {}, "x-api-key", TOKEN),
        ("api_key_header", {"header_name": "X-Custom-Key"}, "x-custom-key", TOKEN),
    ],
)
async def test_each_auth_mode_reaches_the_api(
    upstream: Upstream, auth: str, extra: dict[str, str], header: str, expected: str
) -> None:
    upstream.fake.api_key_header = extra.get("header_name", "X-Api-Key")
    data = await call(upstream, {"path": "/text", "query": {"say": "hi"}}, auth=auth, **extra)
    assert data["status"] == 200 and data["text"] == "hi" and data["json"] is None
    [sent] = upstream.fake.calls
    assert sent.headers[header] == expected
    if auth == "api_key_header":
        assert "authorization" not in sent.headers


async def test_text_body_head_delete_and_absolute_urls_on_the_origin(upstream: Upstream) -> None:
    put = await call(upstream, {"method": "PUT", "url": f"{upstream.url}/api/echo", "body": "plain"})
    assert isinstance(put["json"], dict) and put["json"]["body"] == "plain"
    assert put["json"]["headers"]["content-type"] == "text/plain; charset=utf-8"
    head = await call(upstream, {"method": "HEAD", "path": "text"})
    assert head["status"] == 200 and head["size"] == 0
    deleted = await call(upstream, {"method": "DELETE", "path": "status/204"})
    assert deleted["status"] == 204
    missing = await call(upstream, {"path": "nothing-here"})
    assert missing["status"] == 404 and missing["json"] == {"error": "not_found"}


async def test_big_bodies_are_cut_and_binary_bodies_are_not_returned(upstream: Upstream) -> None:
    big = await call(upstream, {"path": "big", "query": {"size": 2 * 1024 * 1024}})
    assert big["truncated"] is True and big["size"] == 1024 * 1024 and len(str(big["text"])) == 1024 * 1024
    small = await call(upstream, {"path": "echo", "max_bytes": 10})
    assert small["truncated"] is True and small["json"] is None and small["text"] == '{"method":'
    binary = await call(upstream, {"path": "binary"})
    assert binary["text"] is None and binary["json"] is None and binary["size"] == 256


async def test_same_origin_redirects_are_followed_with_the_credential(upstream: Upstream) -> None:
    data = await call(
        upstream, {"method": "POST", "path": "redirect", "query": {"to": "/api/echo", "status": 303}}
    )
    assert isinstance(data["json"], dict) and data["json"]["method"] == "GET"
    assert [c.path for c in upstream.fake.calls] == ["/api/redirect", "/api/echo"]
    assert upstream.fake.calls[1].headers["authorization"] == f"Bearer {TOKEN}"


async def test_an_allowed_cross_origin_redirect_drops_the_credential(upstream: Upstream) -> None:
    other_host = urlsplit(upstream.other_url).netloc
    to = quote(f"{upstream.other_url}/api/echo", safe="")
    data = await call(
        upstream, {"path": f"redirect?to={to}"}, allowed_hosts=f"{upstream.hostport},{other_host}"
    )
    assert data["status"] == 200 and data["url"] == f"{upstream.other_url}/api/echo"
    [arrived] = upstream.other.calls
    assert "authorization" not in arrived.headers


# -- the guard: not an open proxy ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("base_url", "reason"),
    [
        ("https://10.0.0.1/api", "a private address"),
        ("https://169.254.169.254/latest", "a cloud metadata address"),
        ("https://[::1]:9/api", "a loopback address"),
        ("https://[::ffff:127.0.0.1]/api", "a loopback address"),
        ("https://0.0.0.0/api", "an unspecified address"),
        ("https://100.100.100.200/", "a cloud metadata address"),
        ("https://localhost/api", "a loopback address"),  # refused after resolving the name
    ],
)
async def test_internal_addresses_are_refused(upstream: Upstream, base_url: str, reason: str) -> None:
    with pytest.raises(Forbidden, match=reason):
        await call(upstream, {"path": "x"}, base_url=base_url)


async def test_the_fake_itself_is_refused_without_the_allow_list(upstream: Upstream) -> None:
    with pytest.raises(Forbidden, match=r"127\.0\.0\.1: a loopback address"):
        await runner().verify(http_api, upstream.credentials("none", allowed_hosts=""))
    other_port = urlsplit(upstream.other_url).port
    with pytest.raises(Forbidden, match="loopback"):  # the allow-list names a port, not the whole host
        await call(upstream, {"path": "x"}, base_url=f"https://127.0.0.1:{other_port}/api")
    assert upstream.fake.calls == [] and upstream.other.calls == []


@pytest.mark.parametrize(
    "to",
    [
        "http://127.0.0.1:1/api/echo",  # same host, another port
        "http://10.0.0.1/",
        "http://169.254.169.254/latest/meta-data/",
        "https://example.com/",  # public, but another origin
    ],
)
async def test_redirects_off_the_origin_are_refused(upstream: Upstream, to: str) -> None:
    with pytest.raises(Forbidden, match="refused a redirect"):
        await call(upstream, {"path": "redirect", "query": {"to": to}})
    assert [c.path for c in upstream.fake.calls] == ["/api/redirect"]


async def test_the_guard_rechecks_every_redirect_hop(upstream: Upstream) -> None:
    # Below the connector's origin rule: the transport alone refuses a private hop.
    upstream.fake.open = True
    guard = GuardedTransport(httpx.AsyncHTTPTransport(), allow=AllowList.parse([upstream.hostport]))
    async with httpx.AsyncClient(transport=guard, follow_redirects=True) as client:
        with pytest.raises(BlockedDestination, match=r"10\.0\.0\.1: a private address"):
            await client.get(f"{upstream.url}/api/redirect", params={"to": "http://10.0.0.1/"})
    assert len(upstream.fake.calls) == 1


# -- the guard with a fake resolver (our own seam; no DNS needed) --------------------------------
def fake_resolver(table: dict[str, Sequence[str]]) -> Resolver:
    async def resolve(host: str, port: int) -> Sequence[str]:
        if host not in table:
            raise OSError(f"unknown host {host}")
        return table[host]

    return resolve


DNS = {
    "evil.example": ["10.1.2.3"],
    "mixed.example": ["93.184.215.14", "192.168.1.7"],
    "metadata.example": ["169.254.169.254"],
    "good.example": ["93.184.215.14"],
    "sixtofour.example": ["2002:7f00:1::1"],
}


async def guarded_get(url: str, allow: Sequence[str] = ()) -> list[httpx.Request]:
    seen: list[httpx.Request] = []

    def answer(req: httpx.Request) -> httpx.Response:
        seen.append(req)
        return httpx.Response(200, text="ok")

    guard = GuardedTransport(
        httpx.MockTransport(answer), allow=AllowList.parse(allow), resolve=fake_resolver(DNS)
    )
    async with httpx.AsyncClient(transport=guard) as client:
        await client.get(url)
    return seen


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://evil.example/", r"evil\.example \(10\.1\.2\.3\): a private address"),
        ("https://mixed.example/", r"192\.168\.1\.7\): a private address"),  # ANY bad address refuses
        ("https://metadata.example/", "a cloud metadata address"),
        ("https://sixtofour.example/", "a loopback address"),  # 6to4 wrapping 127.0.0.1
        ("ftp://good.example/", "only http and https"),
    ],
)
async def test_names_resolving_to_internal_addresses_are_refused(url: str, reason: str) -> None:
    with pytest.raises(BlockedDestination, match=reason):
        await guarded_get(url)


async def test_a_vetted_name_is_pinned_to_its_address_with_host_and_sni_kept() -> None:
    [sent] = await guarded_get("https://good.example:8443/v1?q=1")
    assert str(sent.url) == "https://93.184.215.14:8443/v1?q=1"
    assert sent.headers["host"] == "good.example:8443"
    assert sent.extensions["sni_hostname"] == "good.example"


async def test_the_allow_list_opens_a_named_private_host_but_never_metadata() -> None:
    [sent] = await guarded_get("https://evil.example/", allow=["evil.example:443"])
    assert sent.url.host == "10.1.2.3"
    with pytest.raises(BlockedDestination):
        await guarded_get("https://evil.example:444/", allow=["evil.example:443"])
    with pytest.raises(BlockedDestination, match="metadata"):
        await guarded_get("https://metadata.example/", allow=["metadata.example"])
    with pytest.raises(httpx.ConnectError, match="could not resolve"):
        await guarded_get("https://nowhere.example/")


# -- input, credentials and provider errors -----------------------------------------------------
@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"path": "x", "headers": {"Authorization": "Bearer mine"}}, "headers"),
        ({"path": "x", "headers": {"host": "evil.example"}}, "headers"),
        (
            {"path": "x", "headers": {"X-Api-Key": "other"}},
            "headers",
        ),  # the api key header of this connection
        ({"path": "x", "headers": {"X-Ok": "a\r\nInjected: 1"}}, "headers"),
        ({"path": "https://example.com/x"}, "path"),
        ({"path": "//example.com/x"}, "path"),
        ({"url": "https://example.com/api"}, "url"),
        ({"path": "x", "url": "http://127.0.0.1/api"}, "url"),
        ({"path": "x", "json": {}, "body": "y"}, "body"),
        ({"method": "TRACE", "path": "x"}, "method"),
    ],
)
async def test_invalid_input_names_the_field(
    upstream: Upstream, params: dict[str, object], field: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        await call(upstream, params, auth="api_key_header")
    assert caught.value.field == field
    assert upstream.fake.calls == []


async def test_a_credential_never_travels_over_plain_http_to_a_public_host(upstream: Upstream) -> None:
    with pytest.raises(InvalidCredentials, match="must use https"):
        await runner().verify(http_api, upstream.credentials(base_url="http://api.example.com/v1"))
    assert upstream.fake.calls == []


async def test_a_refused_credential_is_invalid_credentials(upstream: Upstream) -> None:
    with pytest.raises(InvalidCredentials, match="401"):
        await runner().verify(http_api, upstream.credentials(token="wrong-token-123"))
    with pytest.raises(InvalidCredentials, match="401"):
        await call(upstream, {"path": "echo"}, token="wrong-token-123")
    with pytest.raises(InvalidCredentials, match="needs a username and a password"):
        await runner().verify(http_api, upstream.credentials("basic", password=""))
    with pytest.raises(InvalidCredentials, match="allowed_hosts"):
        await runner().verify(http_api, upstream.credentials(allowed_hosts="host:notaport"))


async def test_a_failed_tls_handshake_is_named(upstream: Upstream) -> None:
    # https to the plain-HTTP fake: the handshake fails before any credential is sent.
    with pytest.raises(UpstreamError, match="TLS with the API failed"):
        await call(upstream, {"path": "echo"}, base_url=f"https://{upstream.hostport}/api")
    assert upstream.fake.calls == []


async def test_the_credentials_never_reach_results_errors_or_logs(
    upstream: Upstream, caplog: pytest.LogCaptureFixture
) -> None:
    install_redaction(caplog.handler)
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    for auth in ("bearer", "basic", "api_key_header"):
        texts.append(
            str(await call(upstream, {"path": "echo", "method": "POST", "json": {"a": 1}}, auth=auth))
        )
    for params in (
        {"path": "redirect", "query": {"to": "http://10.0.0.1/"}},
        {"path": "x", "headers": {"X-Api-Key": TOKEN}},
    ):
        with pytest.raises(Exception) as caught:  # any failure: only its text matters
            await call(upstream, params, auth="api_key_header")
        texts.append(str(caught.value))
    basic = base64.b64encode(f"ann:{PASSWORD}".encode()).decode()
    for secret in (TOKEN, PASSWORD, basic):
        assert all(secret not in text for text in texts)
        assert secret not in caplog.text
