"""OAuth 2.0 authorization-code flow with PKCE, through Authlib's async client.

Providers are described by `OAuthProvider` (built by the server from a connector's `oauth:` block
and the TENDRIL_<SLUG>_* settings). This module never sees connectors or routes: it turns
a provider description into authorization URLs and token sets, and maps failures to `OAuthFailure`.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode

from authlib.common.security import generate_token
from authlib.integrations.base_client import OAuthError
from authlib.integrations.httpx_client import AsyncOAuth2Client
from authlib.oauth2.auth import encode_client_secret_basic

_TIMEOUT = 20.0


@dataclass(frozen=True, slots=True)
class OAuthProvider:
    name: str
    client_id: str
    client_secret: str
    authorize_url: str
    token_url: str
    revoke_url: str | None = None
    scopes: tuple[str, ...] = ()
    scope_separator: str = " "
    client_auth: Literal["client_secret_basic", "client_secret_post"] = "client_secret_basic"
    pkce: bool = True
    authorize_params: Mapping[str, str] = field(default_factory=dict)
    account_picker_params: Mapping[str, str] = field(default_factory=dict)
    token_body: Literal["form", "json"] = "form"


@dataclass(frozen=True, slots=True)
class TokenSet:
    """A token response, normalised. `fields` holds everything to seal (secrets included)."""

    access_token: str
    refresh_token: str | None
    expires_at: float | None
    scopes: tuple[str, ...] | None
    fields: dict[str, str]
    account: dict[str, Any]


class OAuthFailure(Exception):
    """The provider refused: `error` is the OAuth error code (invalid_grant, access_denied...)."""

    def __init__(self, error: str, description: str | None = None) -> None:
        super().__init__(f"{error}: {description}" if description else error)
        self.error = error
        self.description = description


def new_state() -> str:
    return generate_token(43)


def new_code_verifier() -> str:
    # RFC 7636 section 4.1: 43-128 characters from the unreserved set; 64 bytes of entropy here.
    return secrets.token_urlsafe(64)[:128]


def _encode_client_secret_basic_json(client: Any, method: str, uri: str, headers: Any, body: Any) -> Any:
    """Basic client auth, and the form body re-sent as JSON (Notion's token endpoint)."""
    uri, headers, body = encode_client_secret_basic(client, method, uri, headers, body)
    form = dict(_decode_form(body))
    headers["Content-Type"] = "application/json"
    return uri, headers, json.dumps(form).encode()


def _decode_form(body: bytes | str) -> list[tuple[str, str]]:
    text = body.decode() if isinstance(body, bytes) else body
    return parse_qsl(text, keep_blank_values=True)


class OAuthClient:
    """One provider's flow. Cheap to build; each network call uses a short-lived Authlib client."""

    def __init__(self, provider: OAuthProvider, redirect_uri: str) -> None:
        self.provider = provider
        self.redirect_uri = redirect_uri

    def _client(self) -> Any:  # Authlib's client is untyped (an httpx2.AsyncClient subclass)
        provider = self.provider
        auth_method = provider.client_auth
        if provider.token_body == "json":
            auth_method = "client_secret_basic_json"  # type: ignore[assignment]
        client = AsyncOAuth2Client(
            client_id=provider.client_id,
            client_secret=provider.client_secret,
            token_endpoint_auth_method=auth_method,
            revocation_endpoint_auth_method=provider.client_auth,
            scope=provider.scope_separator.join(provider.scopes) or None,
            redirect_uri=self.redirect_uri,
            code_challenge_method="S256" if provider.pkce else None,
            timeout=_TIMEOUT,
        )
        client.register_client_auth_method(("client_secret_basic_json", _encode_client_secret_basic_json))
        return client

    def authorization_url(self, *, state: str, code_verifier: str | None, select_account: bool) -> str:
        extra = dict(self.provider.authorize_params)
        if select_account:
            extra.update(self.provider.account_picker_params)
        client = self._client()
        url, _ = client.create_authorization_url(
            self.provider.authorize_url,
            state=state,
            code_verifier=code_verifier if self.provider.pkce else None,
        )
        return f"{url}&{urlencode(extra)}" if extra else url

    async def exchange(self, *, code: str, code_verifier: str | None) -> TokenSet:
        token = await self._token_request(
            "fetch_token",
            code=code,
            code_verifier=code_verifier if self.provider.pkce else None,
            redirect_uri=self.redirect_uri,
        )
        return self._token_set(token, previous_refresh=None)

    async def refresh(self, refresh_token: str) -> TokenSet:
        token = await self._token_request("refresh_token", refresh_token=refresh_token)
        return self._token_set(token, previous_refresh=refresh_token)

    async def _token_request(self, method: str, **params: Any) -> dict[str, Any]:
        """One call to the token endpoint; every failure becomes an OAuthFailure."""
        async with self._client() as client:
            try:
                token = await getattr(client, method)(self.provider.token_url, **params)
            except OAuthError as exc:
                raise OAuthFailure(exc.error or "oauth_error", exc.description) from None
            except Exception as exc:
                reason = f"{type(exc).__name__} talking to {self.provider.name}"
                raise OAuthFailure("provider_unreachable", reason) from exc
        return dict(token)

    async def revoke(self, token: str, *, hint: str = "access_token") -> bool:
        """RFC 7009 revocation where the provider has an endpoint; False when it has none."""
        if not self.provider.revoke_url:
            return False
        async with self._client() as client:
            try:
                response = await client.revoke_token(
                    self.provider.revoke_url, token=token, token_type_hint=hint
                )
            except Exception:  # best effort: revocation failures must not block deleting a connection
                return False
        return response.status_code < 400

    def _token_set(self, token: dict[str, Any], *, previous_refresh: str | None) -> TokenSet:
        access = token.get("access_token")
        if not isinstance(access, str) or not access:
            raise OAuthFailure("invalid_token_response", "the provider returned no access_token")
        refresh = token.get("refresh_token") or previous_refresh
        expires_at: float | None = None
        if token.get("expires_at"):
            expires_at = float(token["expires_at"])
        elif token.get("expires_in"):
            expires_at = time.time() + float(token["expires_in"])
        scope = token.get("scope")
        scopes = tuple(s for s in str(scope).replace(",", " ").split() if s) if scope else None
        fields = {"access_token": access}
        if refresh:
            fields["refresh_token"] = str(refresh)
        if expires_at is not None:
            fields["expires_at"] = str(expires_at)
        account = {
            k: token[k] for k in ("team", "bot_user_id", "app_id", "workspace_name", "owner") if k in token
        }
        return TokenSet(access, refresh, expires_at, scopes, fields, account)
