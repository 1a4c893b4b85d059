"""In-memory OAuth 2.0 authorization server, served over loopback for real OAuth clients.

One instance can stand in for any provider Tendril connects to (Slack, Notion,
Google, GitHub, Linear, Discord): paths, PKCE and the token response shape are
configurable. It is strict where real providers are strict (exact redirect URIs,
short-lived single-use codes, the client's registered auth method, S256 PKCE),
so connect/refresh/revoke code is tested against real client libraries and real
HTTP rather than hand-written token dicts.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import html
import itertools
import logging
import re
import secrets
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

logger = logging.getLogger(__name__)

JSON = dict[str, Any]
AuthMethod = Literal["client_secret_basic", "client_secret_post"]
Consent = Literal["allow", "deny"]
TokenStyle = Literal["standard", "slack"]
TokenKind = Literal["access", "refresh"]

CODE_TTL = 60.0
DEFAULT_ACCESS_TOKEN_TTL = 3600
USER: JSON = {"id": "user-1", "name": "Fake User"}
SLACK_INSTALL: JSON = {
    "bot_user_id": "U0BOT",
    "app_id": "A1",
    "team": {"id": "T123", "name": "Acme"},
    "authed_user": {"id": "U1"},
}
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}  # RFC 6749 §5.1


@dataclass
class RegisteredClient:
    """A client as the provider knows it; `auth_method` is enforced at the token endpoint."""

    client_id: str
    client_secret: str
    redirect_uris: list[str]
    auth_method: AuthMethod


@dataclass
class IssuedToken:
    """One access or refresh token; `grant` is the code it descends from, so reuse can revoke a family."""

    value: str
    kind: TokenKind
    client_id: str
    scope: str
    grant: str
    issued_at: float
    expires_at: float | None  # None: never expires
    revoked: bool = False


@dataclass
class _Grant:
    """An authorization code and what it was bound to at /authorize."""

    code: str
    client_id: str
    redirect_uri: str
    scope: str
    code_challenge: str | None
    issued_at: float
    used: bool = False


@dataclass
class _Credentials:
    client_id: str | None
    secret: str | None
    method: AuthMethod | None


class _OAuthError(Exception):
    """An RFC 6749 §5.2 error; `slack_error` is what Slack's oauth.v2.access says instead."""

    def __init__(self, error: str, description: str, *, status: int = 400, slack_error: str = "") -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        self.status = status
        self.slack_error = slack_error or error


def _invalid_client(description: str, slack_error: str = "invalid_client_id") -> _OAuthError:
    return _OAuthError("invalid_client", description, status=401, slack_error=slack_error)


class FakeOAuthProvider:
    """Authorization server state plus a Starlette app: authorize, token, revoke and a `/api/me` resource.

    Test controls are plain attributes (`next_consent`, `interactive`, `access_token_ttl`,
    `rotate_refresh_tokens`, `slack_token_rotation`, `token_delay`, `now`); `reset()` restores them.
    """

    def __init__(
        self,
        *,
        authorize_path: str = "/oauth/authorize",
        token_path: str = "/oauth/token",
        revoke_path: str = "/oauth/revoke",
        userinfo_path: str = "/api/me",
        require_pkce: bool = True,
        token_response_style: TokenStyle = "standard",
    ) -> None:
        self.authorize_path = authorize_path
        self.token_path = token_path
        self.revoke_path = revoke_path
        self.userinfo_path = userinfo_path
        self.require_pkce = require_pkce
        self.token_response_style: TokenStyle = token_response_style
        self.clients: dict[str, RegisteredClient] = {}
        self._lock = threading.Lock()
        self._reset_state()

    def _reset_state(self) -> None:
        # controls
        self.next_consent: Consent = "allow"  # sticky: applies until changed
        self.interactive = False
        self.access_token_ttl: int | None = DEFAULT_ACCESS_TOKEN_TTL  # None: tokens never expire
        self.rotate_refresh_tokens = False
        self.slack_token_rotation = False  # slack style: issue expiring xoxe tokens + refresh tokens
        self.token_delay = 0.0
        self.now: float | None = None  # clock override (epoch seconds) for expiry checks
        # observations
        self.issued: list[IssuedToken] = []
        self.authorize_requests: list[dict[str, str]] = []
        self.token_requests: list[JSON] = []
        self.revoked: list[str] = []  # tokens named in accepted revoke requests, in order
        self.calls: list[tuple[str, str]] = []
        self.refresh_count = 0  # successful refresh_token grants
        self.peak_concurrent_token_requests = 0
        # internals
        self._codes: dict[str, _Grant] = {}
        self._tokens: dict[str, IssuedToken] = {}
        self._in_flight = 0
        self._serial = itertools.count(1)

    # --- test controls -------------------------------------------------------

    def register_client(
        self,
        client_id: str,
        client_secret: str,
        redirect_uris: list[str],
        auth_method: AuthMethod = "client_secret_basic",
    ) -> RegisteredClient:
        """Register (or replace) a confidential client; redirect URIs are matched exactly."""
        client = RegisteredClient(client_id, client_secret, list(redirect_uris), auth_method)
        with self._lock:
            self.clients[client_id] = client
        return client

    def reset(self) -> None:
        """Forget codes, tokens and logs and restore default controls; keep clients and paths."""
        with self._lock:
            self._reset_state()

    def clock(self) -> float:
        """`now` when a test set it, else real time: lets tests expire codes without sleeping."""
        return time.time() if self.now is None else self.now

    def expire_all_access_tokens(self) -> None:
        """Make every access token issued so far expired, so the next API call needs a refresh."""
        with self._lock:
            past = self.clock() - 1
            for token in self.issued:
                if token.kind == "access":
                    token.expires_at = past

    def valid_access_tokens(self) -> list[str]:
        """Access tokens that `/api/me` would accept right now."""
        with self._lock:
            return [t.value for t in self.issued if t.kind == "access" and self._is_live(t)]

    # --- HTTP ----------------------------------------------------------------

    @cached_property
    def app(self) -> Starlette:
        """The ASGI app; serve it with `run_asgi_on_loopback`."""
        authorize: Callable[[Request], Awaitable[Response]] = self._authorize_endpoint
        token: Callable[[Request], Awaitable[Response]] = self._token_endpoint
        revoke: Callable[[Request], Awaitable[Response]] = self._revoke_endpoint
        me: Callable[[Request], Awaitable[Response]] = self._userinfo_endpoint
        return Starlette(
            routes=[
                Route(self.authorize_path, authorize, methods=["GET", "POST"]),
                Route(self.token_path, token, methods=["POST"]),
                Route(self.revoke_path, revoke, methods=["POST"]),
                Route(self.userinfo_path, me, methods=["GET"]),
            ]
        )

    # --- /authorize ----------------------------------------------------------

    async def _authorize_endpoint(self, request: Request) -> Response:
        self._record_call(request)
        decision: str | None = None
        if request.method == "GET":
            query = dict(request.query_params)
            with self._lock:
                self.authorize_requests.append(dict(query))
        else:  # the consent page's form
            try:
                query = await _form_params(request)
            except _OAuthError as exc:
                return _error_page(exc.description)
            decision = query.pop("decision", None)
            if decision not in ("allow", "deny"):
                return _error_page("decision must be allow or deny")

        # RFC 6749 §4.1.2.1: never redirect to an unverified URI; tell the user instead.
        with self._lock:
            client = self.clients.get(query.get("client_id", ""))
        if client is None:
            return _error_page("unknown client_id")
        redirect_uri = query.get("redirect_uri", "")
        if redirect_uri not in client.redirect_uris:
            return _error_page("redirect_uri is not registered for this client")

        state = query.get("state")
        problem = self._authorize_problem(query)
        if problem is not None:
            error, description = problem
            return _redirect(redirect_uri, error=error, error_description=description, state=state)
        if decision is None:
            if self.interactive:
                return _consent_page(request.url.path, client.client_id, query)
            decision = self.next_consent
        if decision == "deny":
            return _redirect(
                redirect_uri,
                error="access_denied",
                error_description="The user denied the request",
                state=state,
            )
        grant = _Grant(
            code=f"fake-code-{secrets.token_urlsafe(16)}",
            client_id=client.client_id,
            redirect_uri=redirect_uri,
            scope=query.get("scope", ""),
            code_challenge=query.get("code_challenge"),
            issued_at=self.clock(),
        )
        with self._lock:
            self._codes[grant.code] = grant
        return _redirect(redirect_uri, code=grant.code, state=state)

    def _authorize_problem(self, query: dict[str, str]) -> tuple[str, str] | None:
        response_type = query.get("response_type")
        if not response_type:
            return "invalid_request", "response_type is required"
        if response_type != "code":
            return "unsupported_response_type", "only response_type=code is supported"
        challenge, method = query.get("code_challenge"), query.get("code_challenge_method")
        if challenge is None:
            if self.require_pkce:
                return "invalid_request", "code_challenge (PKCE) is required"
            if method is not None:
                return "invalid_request", "code_challenge_method without code_challenge"
        elif method != "S256":
            return "invalid_request", "code_challenge_method must be S256"
        return None

    # --- /token --------------------------------------------------------------

    async def _token_endpoint(self, request: Request) -> Response:
        self._record_call(request)
        entry: JSON = {"grant_type": None, "client_id": None, "auth_method": None, "result": None}
        with self._lock:
            self.token_requests.append(entry)
            self._in_flight += 1
            self.peak_concurrent_token_requests = max(self.peak_concurrent_token_requests, self._in_flight)
        try:
            try:
                params = await _form_params(request)
                creds = _presented_credentials(request, params)
                with self._lock:
                    entry.update(
                        grant_type=params.get("grant_type"),
                        client_id=creds.client_id,
                        auth_method=creds.method,
                        **{
                            k: params[k]
                            for k in ("code", "refresh_token", "redirect_uri", "scope")
                            if k in params
                        },
                    )
                if self.token_delay > 0:
                    await anyio.sleep(self.token_delay)
                with self._lock:
                    client = self._authenticate(creds)
                    body = self._grant(client, params)
                    entry["result"] = "ok"
            except _OAuthError as exc:
                with self._lock:
                    entry["result"] = exc.error
                logger.debug("fake oauth token -> %s (%s)", exc.error, exc.description)
                return self._error_response(exc)
            return JSONResponse(body, headers=NO_STORE)
        finally:
            with self._lock:
                self._in_flight -= 1

    def _grant(self, client: RegisteredClient, params: dict[str, str]) -> JSON:
        """Dispatch on grant_type; called with the lock held."""
        grant_type = params.get("grant_type")
        if grant_type == "authorization_code":
            return self._authorization_code_grant(client, params)
        if grant_type == "refresh_token":
            return self._refresh_token_grant(client, params)
        if not grant_type:
            raise _OAuthError("invalid_request", "grant_type is required", slack_error="invalid_grant_type")
        raise _OAuthError(
            "unsupported_grant_type", f"{grant_type} is not supported", slack_error="invalid_grant_type"
        )

    def _authorization_code_grant(self, client: RegisteredClient, params: dict[str, str]) -> JSON:
        grant = self._codes.get(params.get("code", ""))
        if grant is None or grant.client_id != client.client_id:
            raise _OAuthError("invalid_grant", "unknown authorization code", slack_error="invalid_code")
        if grant.used:
            # RFC 6749 §4.1.2: a replayed code may be stolen; kill everything it produced.
            self._revoke_grant(grant.code)
            raise _OAuthError("invalid_grant", "authorization code already used", slack_error="invalid_code")
        grant.used = True  # one exchange attempt per code, successful or not
        if self.clock() - grant.issued_at > CODE_TTL:
            raise _OAuthError("invalid_grant", "authorization code expired", slack_error="invalid_code")
        if params.get("redirect_uri") != grant.redirect_uri:
            raise _OAuthError(
                "invalid_grant", "redirect_uri does not match authorization", slack_error="bad_redirect_uri"
            )
        verifier = params.get("code_verifier")
        if grant.code_challenge is None:
            if verifier is not None:
                raise _OAuthError(
                    "invalid_grant", "code_verifier without code_challenge", slack_error="invalid_code"
                )
        elif verifier is None or _s256(verifier) != grant.code_challenge:
            raise _OAuthError("invalid_grant", "PKCE verification failed", slack_error="invalid_code")
        return self._token_response(client, grant.code, grant.scope, with_refresh=True)

    def _refresh_token_grant(self, client: RegisteredClient, params: dict[str, str]) -> JSON:
        slack = "invalid_refresh_token"
        old = self._tokens.get(params.get("refresh_token", ""))
        if old is None or old.kind != "refresh" or old.client_id != client.client_id:
            raise _OAuthError("invalid_grant", "unknown refresh token", slack_error=slack)
        if not self._is_live(old):
            raise _OAuthError("invalid_grant", "refresh token revoked", slack_error=slack)
        scope = old.scope
        if params.get("scope"):
            if not _scope_set(params["scope"]) <= _scope_set(old.scope):
                raise _OAuthError(
                    "invalid_scope", "scope exceeds the original grant", slack_error="invalid_scope"
                )
            scope = params["scope"]
        if self.rotate_refresh_tokens:
            old.revoked = True
        self.refresh_count += 1
        return self._token_response(client, old.grant, scope, with_refresh=self.rotate_refresh_tokens)

    def _token_response(
        self, client: RegisteredClient, grant: str, scope: str, *, with_refresh: bool
    ) -> JSON:
        """Issue tokens and render them; a non-rotating refresh omits refresh_token (like Google)."""
        slack = self.token_response_style == "slack"
        expiring = not slack or self.slack_token_rotation
        ttl = self.access_token_ttl if expiring else None
        at_prefix = ("xoxe.xoxb-1-" if self.slack_token_rotation else "xoxb-") if slack else "fake-at-"
        access = self._issue(at_prefix, "access", client, grant, scope, ttl)
        refresh = None
        if with_refresh and expiring:
            refresh = self._issue("xoxe-1-" if slack else "fake-rt-", "refresh", client, grant, scope, None)
        if slack:
            body: JSON = {"ok": True, "access_token": access.value, "token_type": "bot", "scope": scope}
            body.update(SLACK_INSTALL)
        else:
            body = {"access_token": access.value, "token_type": "Bearer", "scope": scope}
        if ttl is not None:
            body["expires_in"] = ttl
        if refresh is not None:
            body["refresh_token"] = refresh.value
        return body

    def _issue(
        self, prefix: str, kind: TokenKind, client: RegisteredClient, grant: str, scope: str, ttl: int | None
    ) -> IssuedToken:
        now = self.clock()
        token = IssuedToken(
            value=f"{prefix}{next(self._serial)}-{secrets.token_urlsafe(12)}",
            kind=kind,
            client_id=client.client_id,
            scope=scope,
            grant=grant,
            issued_at=now,
            expires_at=None if ttl is None else now + ttl,
        )
        self.issued.append(token)
        self._tokens[token.value] = token
        return token

    # --- /revoke (RFC 7009) --------------------------------------------------

    async def _revoke_endpoint(self, request: Request) -> Response:
        self._record_call(request)
        try:
            params = await _form_params(request)
            creds = _presented_credentials(request, params)
            with self._lock:
                client = self._authenticate(creds)
                value = params.get("token")
                if not value:
                    raise _OAuthError("invalid_request", "token is required")
                token = self._tokens.get(value)
                if token is not None and token.client_id != client.client_id:
                    raise _OAuthError("invalid_grant", "token was issued to another client")
                self.revoked.append(value)
                if token is not None:
                    token.revoked = True
                    if token.kind == "refresh":  # RFC 7009 §2.1: drop the whole grant
                        self._revoke_grant(token.grant)
        except _OAuthError as exc:
            return self._error_response(exc)
        # Unknown or already revoked tokens also get 200: RFC 7009 §2.2.
        return Response(status_code=200, headers=NO_STORE)

    # --- protected resource --------------------------------------------------

    async def _userinfo_endpoint(self, request: Request) -> Response:
        self._record_call(request)
        header = request.headers.get("authorization", "")
        value = header[7:].strip() if header[:7].lower() == "bearer " else ""
        with self._lock:
            token = self._tokens.get(value)
            ok = token is not None and token.kind == "access" and self._is_live(token)
        if not ok:
            return JSONResponse(
                {"error": "invalid_token"},
                status_code=401,
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        return JSONResponse(USER)

    # --- shared (called with the lock held unless noted) ---------------------

    def _authenticate(self, creds: _Credentials) -> RegisteredClient:
        if creds.client_id is None or creds.secret is None or creds.method is None:
            raise _invalid_client("client authentication required")
        client = self.clients.get(creds.client_id)
        if client is None:
            raise _invalid_client("unknown client")
        if creds.method != client.auth_method:
            raise _invalid_client(f"client must authenticate with {client.auth_method}")
        if not secrets.compare_digest(creds.secret.encode(), client.client_secret.encode()):
            raise _invalid_client("bad client secret", "bad_client_secret")
        return client

    def _revoke_grant(self, grant: str) -> None:
        for token in self.issued:
            if token.grant == grant:
                token.revoked = True

    def _is_live(self, token: IssuedToken) -> bool:
        return not token.revoked and (token.expires_at is None or self.clock() < token.expires_at)

    def _error_response(self, exc: _OAuthError) -> JSONResponse:
        """RFC 6749 JSON errors, or Slack's HTTP 200 {"ok": false} in the slack style."""
        if self.token_response_style == "slack":
            return JSONResponse({"ok": False, "error": exc.slack_error}, headers=NO_STORE)
        headers = dict(NO_STORE)
        if exc.status == 401:
            headers["WWW-Authenticate"] = 'Basic realm="fake-oauth"'
        body = {"error": exc.error, "error_description": exc.description}
        return JSONResponse(body, status_code=exc.status, headers=headers)

    def _record_call(self, request: Request) -> None:
        with self._lock:
            self.calls.append((request.method, request.url.path))


# --- helpers ------------------------------------------------------------------


async def _form_params(request: Request) -> dict[str, str]:
    """The form body; OAuth endpoints take application/x-www-form-urlencoded only (RFC 6749 §3.2)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise _OAuthError(
            "invalid_request",
            "body must be application/x-www-form-urlencoded",
            slack_error="invalid_arguments",
        )
    form = await request.form()
    return {k: v for k, v in form.items() if isinstance(v, str)}


def _presented_credentials(request: Request, params: dict[str, str]) -> _Credentials:
    """What the client presented: a Basic header or client_id/client_secret in the form, not both."""
    header = request.headers.get("authorization", "")
    if header[:6].lower() != "basic ":
        secret = params.get("client_secret")
        return _Credentials(params.get("client_id"), secret, "client_secret_post" if secret else None)
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise _invalid_client("malformed Basic credentials") from None
    raw_id, sep, raw_secret = decoded.partition(":")
    if not sep:
        raise _invalid_client("malformed Basic credentials")
    client_id = unquote(raw_id)  # RFC 6749 §2.3.1: form-encoded before base64
    if "client_secret" in params:
        raise _OAuthError(
            "invalid_request", "more than one client authentication method", slack_error="invalid_arguments"
        )
    if params.get("client_id", client_id) != client_id:
        raise _invalid_client("client_id in body differs from Basic credentials")
    return _Credentials(client_id, unquote(raw_secret), "client_secret_basic")


def _s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _scope_set(scope: str) -> set[str]:
    """Scopes split on spaces (RFC 6749) or commas (Slack, GitHub)."""
    return {s for s in re.split(r"[\s,]+", scope) if s}


def _redirect(uri: str, **params: str | None) -> RedirectResponse:
    """302 to `uri` with `params` added to any query it already has (RFC 6749 §3.1.2)."""
    parts = urlsplit(uri)
    query = parse_qsl(parts.query, keep_blank_values=True)
    query += [(k, v) for k, v in params.items() if v is not None]
    return RedirectResponse(urlunsplit(parts._replace(query=urlencode(query))), status_code=302)


def _error_page(message: str) -> HTMLResponse:
    body = (
        f"<!doctype html><title>OAuth error</title><h1>Authorization error</h1><p>{html.escape(message)}</p>"
    )
    return HTMLResponse(body, status_code=400)


def _consent_page(action: str, client_id: str, query: dict[str, str]) -> HTMLResponse:
    """A minimal consent screen; the form re-posts the original query so nothing is kept server-side."""
    hidden = "".join(
        f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">' for k, v in query.items()
    )
    scope = html.escape(query.get("scope", ""))
    body = (
        "<!doctype html><html><head><title>Authorize access</title></head><body>"
        f"<h1>Authorize {html.escape(client_id)}</h1><p>Requested scope: <code>{scope}</code></p>"
        f'<form method="post" action="{html.escape(action)}">{hidden}'
        '<button type="submit" name="decision" value="allow" id="allow">Allow</button> '
        '<button type="submit" name="decision" value="deny" id="deny">Deny</button>'
        "</form></body></html>"
    )
    return HTMLResponse(body)
