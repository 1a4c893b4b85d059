"""Generic authenticated HTTP over httpx, behind the egress guard (guard.py): not an open proxy.

Requests stay on the connection's origin; redirects are followed here, one hop at a time, so each
hop is checked again and the credential never follows a redirect to another origin.
"""

from __future__ import annotations

import base64
import json
import re
import ssl
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

import anyio
import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator
from typing_extensions import TypeAliasType

from connectors import ActionContext, ClientOptions, Connector, Hints
from connectors._egress import AllowList, BlockedDestination, GuardedTransport, default_port
from connectors._http import new_http_client, retry_after_seconds
from connectors.errors import (
    ConnectorError,
    Forbidden,
    InvalidCredentials,
    InvalidInput,
    RateLimited,
    UpstreamError,
    UpstreamTimeout,
    tls_failure,
)

connector = Connector.load(__file__)

MAX_BODY_BYTES = 1 << 20
MAX_REDIRECTS = 5
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}$")  # RFC 9110 field-name
# Set by us (auth, the pinned Host) or by httpx (framing); an agent may not choose them.
_RESERVED_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "upgrade",
        "te",
        "trailer",
        "proxy-connection",
    }
)
# Response headers worth showing; Set-Cookie and the like stay out of the agent's context.
_SAFE_RESPONSE_HEADERS = frozenset(
    {
        "allow",
        "cache-control",
        "content-disposition",
        "content-language",
        "content-length",
        "content-range",
        "content-type",
        "date",
        "etag",
        "expires",
        "last-modified",
        "link",
        "location",
        "retry-after",
        "x-request-id",
        "x-total-count",
    }
)
_SAFE_RESPONSE_PREFIXES = ("x-ratelimit-", "ratelimit-")
_TEXTUAL = re.compile(r"^(text/|application/([\w.+-]*\+)?(json|xml|javascript|x-www-form-urlencoded)\b)")


class BlockedRedirect(Exception):
    """A redirect that would leave the connection's origin."""


def _origin(url: httpx.URL) -> tuple[str, str, int]:
    return url.scheme, url.host, default_port(url)


@dataclass
class HttpApi:
    """The connection's API: its origin, how to authenticate, and which hosts are opened."""

    http: httpx.AsyncClient
    base: httpx.URL
    auth: str
    auth_headers: dict[str, str]
    allow: AllowList

    @property
    def reserved_headers(self) -> frozenset[str]:
        return _RESERVED_HEADERS | {name.lower() for name in self.auth_headers}

    def target(self, path: str | None, url: str | None) -> httpx.URL:
        if path is not None and url is not None:
            raise InvalidInput("give either path or url, not both", field="url")
        if url is not None:
            try:
                absolute = httpx.URL(url)
            except httpx.InvalidURL:
                raise InvalidInput("url is not a valid URL", field="url") from None
            if _origin(absolute) != _origin(self.base):
                raise InvalidInput(
                    f"url must stay on {_origin_text(self.base)}; use path for a relative path", field="url"
                )
            return absolute
        if path is None:
            return self.base
        if "://" in path or path.startswith(("//", "\\")):
            raise InvalidInput(
                "path must be relative to the base URL; use url for absolute URLs", field="path"
            )
        joined = httpx.URL(f"{str(self.base).rstrip('/')}/{path.lstrip('/')}")
        if _origin(joined) != _origin(self.base):  # belt and braces: the join must not change the origin
            raise InvalidInput("path must stay on the base URL's origin", field="path")
        return joined

    async def exchange(
        self,
        method: str,
        url: httpx.URL,
        *,
        headers: Mapping[str, str] | None = None,
        query: Mapping[str, Any] | None = None,
        content: bytes | None = None,
        max_bytes: int = MAX_BODY_BYTES,
    ) -> tuple[httpx.Response, bytes, bool]:
        """Send, following up to MAX_REDIRECTS redirects; returns the final response and its capped body."""
        params = httpx.QueryParams(dict(query)) if query else None
        for _ in range(MAX_REDIRECTS + 1):
            same_origin = _origin(url) == _origin(self.base)
            sent_headers = {**(headers or {}), **(self.auth_headers if same_origin else {})}
            request = self.http.build_request(
                method, url, params=params, headers=sent_headers, content=content
            )
            response = await self.http.send(request, stream=True)
            try:
                if not response.has_redirect_location:
                    body, truncated = await _read_capped(response, max_bytes)
                    return response, body, truncated
            finally:
                await response.aclose()
            url = response.url.join(response.headers["location"])
            params = None  # the Location names the whole next URL
            if _origin(url) != _origin(self.base) and not self.allow.allows(url.host, default_port(url)):
                raise BlockedRedirect(
                    f"refused a redirect from {_origin_text(self.base)} to {_origin_text(url)}: "
                    "redirects may not leave the connection's origin"
                )
            # RFC 9110 section 15.4: 303 always, and 301/302 after POST, continue as a GET without a body.
            status = response.status_code
            if (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST"):
                method, content = "GET", None
                headers = {k: v for k, v in (headers or {}).items() if k.lower() != "content-type"}
        raise UpstreamError(f"more than {MAX_REDIRECTS} redirects from {_origin_text(self.base)}")


def _origin_text(url: httpx.URL) -> str:
    host = f"[{url.host}]" if ":" in url.host else url.host
    return f"{url.scheme}://{host}" + (f":{url.port}" if url.port else "")  # httpx drops default ports


async def _read_capped(response: httpx.Response, limit: int) -> tuple[bytes, bool]:
    # Stop reading at the cap: a huge (or decompressing) body never reaches memory whole.
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            return b"".join(chunks)[:limit], True
    return b"".join(chunks), False


def _auth_headers(credentials: Mapping[str, str]) -> tuple[str, dict[str, str]]:
    mode = credentials.get("auth") or "none"
    token, user, password = credentials.get("token"), credentials.get("username"), credentials.get("password")
    if mode in ("bearer", "api_key_header") and not token:
        raise InvalidCredentials(f"auth {mode} needs a token")
    if mode == "bearer" and token:
        return mode, {"Authorization": f"Bearer {token}"}
    if mode == "api_key_header" and token:
        name = credentials.get("header_name") or "X-Api-Key"
        if not _TOKEN.match(name) or name.lower() in _RESERVED_HEADERS:
            raise InvalidCredentials(f"header_name {name!r} cannot carry an API key")
        return mode, {name: token}
    if mode == "basic":
        if not user or not password:
            raise InvalidCredentials("auth basic needs a username and a password")
        pair = base64.b64encode(f"{user}:{password}".encode()).decode()
        return mode, {"Authorization": f"Basic {pair}"}
    if mode == "none":
        return mode, {}
    raise InvalidCredentials("auth must be bearer, basic, api_key_header or none")


def _base_url(text: str) -> httpx.URL:
    try:
        url = httpx.URL(text)
    except httpx.InvalidURL:
        raise InvalidCredentials("base_url is not a valid URL") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise InvalidCredentials("base_url must be an absolute http(s) URL")
    if url.userinfo or url.query or url.fragment:
        raise InvalidCredentials("base_url may not carry user:password@, a query or a fragment")
    return url


@cache
def _shared_tls_context() -> ssl.SSLContext:
    return httpx.create_ssl_context()


async def _tls_context() -> ssl.SSLContext:
    # Loading the CA store takes ~0.1s: do it once per process, off the event loop.
    return await anyio.to_thread.run_sync(_shared_tls_context)


@connector.client
@asynccontextmanager
async def open_client(credentials: Mapping[str, str], options: ClientOptions) -> AsyncIterator[HttpApi]:
    base = _base_url(credentials["base_url"])
    mode, auth_headers = _auth_headers(credentials)
    try:
        requested = AllowList.parse((credentials.get("allowed_hosts") or "").split(","))
    except ValueError as exc:
        raise InvalidCredentials(f"allowed_hosts: {exc}") from None
    # An owner may only narrow what the operator opened (TENDRIL_HTTP_ALLOWED_HOSTS), never widen it.
    operator = AllowList.parse(options.allowed_hosts)
    allow = AllowList(
        frozenset(e for e in requested.entries if operator.allows(e[0], e[1] or 0) or e in operator.entries)
    )
    if base.scheme == "http" and auth_headers and not allow.allows(base.host, default_port(base)):
        # Plain http is for allow-listed internal hosts; on the open network the credential would
        # travel in clear text.
        raise InvalidCredentials(
            "base_url must use https to carry a credential (http only for allowed_hosts)"
        )
    inner = options.http_transport or httpx.AsyncHTTPTransport(verify=await _tls_context())
    guard = GuardedTransport(inner, allow=allow)
    async with new_http_client(str(base), transport=guard) as http:
        yield HttpApi(http, base, mode, auth_headers, allow)


def _check_status(client: HttpApi, response: httpx.Response) -> None:
    if response.status_code == 429:
        wait = retry_after_seconds(response.headers.get("Retry-After"))
        raise RateLimited(
            f"{_origin_text(client.base)} is rate limiting; retry after {wait:g}s", retry_after=wait
        )
    if response.status_code == 401 and client.auth != "none":
        raise InvalidCredentials(f"{_origin_text(client.base)} refused the credential (HTTP 401)")


@connector.verifier
async def verify(client: HttpApi) -> dict[str, Any]:
    """GET the base URL with the credential: anything but 401 (or a refused address) counts."""
    response, _, _ = await client.exchange("GET", client.base, max_bytes=64 * 1024)
    _check_status(client, response)
    return {"baseUrl": str(client.base), "auth": client.auth, "status": response.status_code}


@connector.error_mapper
def map_http_error(exc: BaseException) -> ConnectorError | None:
    if isinstance(exc, BlockedDestination | BlockedRedirect):
        return Forbidden(str(exc))
    if isinstance(exc, httpx.TimeoutException):
        return UpstreamTimeout("the API did not answer in time")
    if isinstance(exc, httpx.InvalidURL):
        return UpstreamError(f"the API sent an unusable redirect: {exc}")
    if isinstance(exc, httpx.LocalProtocolError):
        return InvalidInput(f"the request could not be sent: {exc}", field="headers")
    tls = tls_failure(exc, "the API")
    if tls is not None:
        return tls
    if isinstance(exc, httpx.TransportError):
        return UpstreamError(f"could not reach the API: {exc}", retryable=True)
    return None


QueryValue = str | int | float | bool
# Spelled out (not Any) so the tool schema says what a JSON value is; strict MCP clients want a type.
Json = TypeAliasType("Json", "dict[str, Json] | list[Json] | str | int | float | bool | None")


class RequestInput(BaseModel):
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"] = Field(
        "GET", description="HTTP method."
    )
    path: str | None = Field(
        None, max_length=4000, description="Path relative to the connection's base URL, e.g. `users/42`."
    )
    url: str | None = Field(
        None,
        max_length=8000,
        description="Absolute URL instead of path; it must be on the base URL's origin.",
    )
    headers: dict[str, str] | None = Field(
        None, description="Extra request headers. Authorization, Host and the API key header are refused."
    )
    query: dict[str, QueryValue | list[QueryValue]] | None = Field(
        None, description="Query string parameters; a list repeats the parameter."
    )
    json_body: Json = Field(None, alias="json", description="JSON request body (sent as application/json).")
    body: str | None = Field(
        None, max_length=MAX_BODY_BYTES, description="Text request body, instead of json."
    )
    max_bytes: int = Field(
        MAX_BODY_BYTES,
        ge=1,
        le=MAX_BODY_BYTES,
        description="Return at most this many bytes of the response body.",
    )

    @field_validator("headers")
    @classmethod
    def _plain_headers(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        for name, text in (value or {}).items():
            if not _TOKEN.match(name):
                raise ValueError(f"{name!r} is not a header name")
            if name.lower() in _RESERVED_HEADERS:
                raise ValueError(f"the {name} header is set by the connection and cannot be overridden")
            if any(c in text for c in "\r\n\0"):
                raise ValueError(f"the {name} header value contains a line break")
        return value


class RequestOutput(BaseModel):
    model_config = ConfigDict(serialize_by_alias=True)

    status: int = Field(description="HTTP status code of the final response (after redirects).")
    url: str = Field(description="URL of the final response.")
    headers: dict[str, str] = Field(
        description="Response headers (a safe subset: type, length, caching, paging, limits)."
    )
    json_body: Json = Field(
        None, alias="json", description="The body parsed as JSON, when it is complete JSON."
    )
    text: str | None = Field(
        None, description="The body as text, when it is not JSON (None for binary bodies)."
    )
    truncated: bool = Field(description="True when the body was longer than max_bytes and was cut.")
    size: int = Field(description="Bytes of body returned (after any cut).")


def _request_body(params: RequestInput, headers: dict[str, str]) -> bytes | None:
    sends_json = "json_body" in params.model_fields_set
    if sends_json and params.body is not None:
        raise InvalidInput("give json or body, not both", field="body")
    has_type = any(name.lower() == "content-type" for name in headers)
    if sends_json:
        if not has_type:
            headers["Content-Type"] = "application/json"
        return json.dumps(params.json_body).encode()
    if params.body is not None:
        if not has_type:
            headers["Content-Type"] = "text/plain; charset=utf-8"
        return params.body.encode()
    return None


def _result(client: HttpApi, response: httpx.Response, body: bytes, truncated: bool) -> RequestOutput:
    shown = {
        name: value
        for name, value in response.headers.items()
        if name in _SAFE_RESPONSE_HEADERS or name.startswith(_SAFE_RESPONSE_PREFIXES)
    }
    content_type = response.headers.get("content-type", "").lower()
    data: Any = None
    text: str | None = None
    if _TEXTUAL.match(content_type) or (body and not content_type):
        # An echoed credential is masked by the runtime, on the decoded result (any encoding).
        text = body.decode(response.encoding or "utf-8", errors="replace")
        if "json" in content_type and not truncated:
            with suppress(ValueError):  # malformed JSON is still worth reading as text
                data, text = json.loads(text), None
    return RequestOutput.model_validate(
        {
            "status": response.status_code,
            "url": str(response.url),
            "headers": shown,
            "json": data,
            "text": text,
            "truncated": truncated,
            "size": len(body),
        }
    )


@connector.action(Hints(read_only=False, destructive=True, idempotent=False))
async def request(ctx: ActionContext[HttpApi], params: RequestInput) -> RequestOutput:
    """Send an HTTP request to the connected API, authenticated with the connection's credential.

    Any status comes back as a result except 401 (the credential was refused) and 429 (rate
    limited, with retryAfter). Redirects are followed on the same origin only.
    """
    client = ctx.client
    headers = dict(params.headers or {})
    reserved = [name for name in headers if name.lower() in client.reserved_headers]
    if reserved:
        raise InvalidInput(f"the {reserved[0]} header carries the connection's credential", field="headers")
    target = client.target(params.path, params.url)
    content = _request_body(params, headers)
    response, body, truncated = await client.exchange(
        params.method,
        target,
        headers=headers,
        query=params.query,
        content=content,
        max_bytes=params.max_bytes,
    )
    ctx.log.info(
        "http: %s %s%s -> %d", params.method, _origin_text(target), target.path, response.status_code
    )
    _check_status(client, response)
    return _result(client, response, body, truncated)
