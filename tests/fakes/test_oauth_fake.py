"""Prove FakeOAuthProvider behaves like a real authorization server, using Authlib's real OAuth client."""

# Authlib is untyped, and pyright cannot see AsyncOAuth2Client's httpx2.AsyncClient base.
# pyright: reportUnknownMemberType=false, reportUnknownVariableType=false, reportUnknownArgumentType=false
# pyright: reportAttributeAccessIssue=false, reportGeneralTypeIssues=false

from __future__ import annotations

import re
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx
import pytest
from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuthError

from tests.fakes.loopback import run_asgi_on_loopback
from tests.fakes.oauth import AuthMethod, FakeOAuthProvider

pytestmark = pytest.mark.anyio

CLIENT_ID = "tendril-client"
SECRET = "s3cret-Canary"
REDIRECT = "http://127.0.0.1:8080/oauth/callback"
OTHER_REDIRECT = "http://127.0.0.1:8080/other/callback"
SCOPE = "read write"


@pytest.fixture
def provider() -> FakeOAuthProvider:
    fake = FakeOAuthProvider()
    fake.register_client(CLIENT_ID, SECRET, [REDIRECT, OTHER_REDIRECT])
    return fake


@pytest.fixture
def url(provider: FakeOAuthProvider) -> Iterator[str]:
    with run_asgi_on_loopback(provider.app) as base:
        yield base


@asynccontextmanager
async def oauth_client(
    *,
    client_id: str = CLIENT_ID,
    secret: str = SECRET,
    method: AuthMethod = "client_secret_basic",
    scope: str | None = SCOPE,
) -> AsyncIterator[AsyncOAuth2Client]:
    client = AsyncOAuth2Client(
        client_id=client_id,
        client_secret=secret,
        token_endpoint_auth_method=method,
        revocation_endpoint_auth_method=method,
        scope=scope,
        redirect_uri=REDIRECT,
        code_challenge_method="S256",
    )
    async with client:
        yield client


async def browse(authorization_url: str) -> httpx.Response:
    """Play the browser: one GET, redirects not followed, so the test reads Location."""
    async with httpx.AsyncClient(follow_redirects=False) as browser:
        return await browser.get(authorization_url)


def query_of(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


async def authorize(
    client: AsyncOAuth2Client, base: str, verifier: str | None, path: str = "/oauth/authorize", **extra: str
) -> tuple[str, str]:
    """Run the authorize leg with auto-consent; return (callback URL, state)."""
    auth_url, state = client.create_authorization_url(f"{base}{path}", code_verifier=verifier, **extra)
    response = await browse(auth_url)
    assert response.status_code == 302, response.text
    return response.headers["location"], state


async def connect(client: AsyncOAuth2Client, base: str) -> dict[str, Any]:
    """The whole authorization-code + PKCE flow, as Tendril's connect flow does it."""
    verifier = secrets.token_urlsafe(48)
    callback, state = await authorize(client, base, verifier)
    return await client.fetch_token(
        f"{base}/oauth/token", authorization_response=callback, state=state, code_verifier=verifier
    )


async def me(base: str, access_token: str) -> httpx.Response:
    async with httpx.AsyncClient() as http:
        return await http.get(f"{base}/api/me", headers={"Authorization": f"Bearer {access_token}"})


# --- happy path ---------------------------------------------------------------


async def test_code_flow_with_pkce_issues_tokens_that_work(provider: FakeOAuthProvider, url: str) -> None:
    async with oauth_client() as client:
        token = await connect(client, url)
        assert token["token_type"] == "Bearer"
        assert token["expires_in"] == 3600
        assert token["scope"] == SCOPE
        assert token["access_token"].startswith("fake-at-")
        assert token["refresh_token"].startswith("fake-rt-")
        response = await client.get(f"{url}/api/me")  # Authlib signs it with the bearer token
    assert response.status_code == 200
    assert response.json() == {"id": "user-1", "name": "Fake User"}
    assert provider.valid_access_tokens() == [token["access_token"]]
    assert [t.kind for t in provider.issued] == ["access", "refresh"]
    (request,) = provider.authorize_requests
    assert request["code_challenge_method"] == "S256"
    assert request["redirect_uri"] == REDIRECT
    (logged,) = provider.token_requests
    assert logged["grant_type"] == "authorization_code"
    assert logged["client_id"] == CLIENT_ID
    assert logged["auth_method"] == "client_secret_basic"
    assert logged["result"] == "ok"
    assert SECRET not in repr(provider.token_requests)
    assert ("POST", "/oauth/token") in provider.calls


async def test_extra_authorize_params_are_recorded(provider: FakeOAuthProvider, url: str) -> None:
    async with oauth_client() as client:
        callback, state = await authorize(
            client, url, secrets.token_urlsafe(48), prompt="consent", access_type="offline"
        )
    assert query_of(callback)["state"] == state
    (request,) = provider.authorize_requests
    assert request["prompt"] == "consent"
    assert request["access_type"] == "offline"
    assert request["scope"] == SCOPE


async def test_client_secret_post_is_enforced_per_client(provider: FakeOAuthProvider, url: str) -> None:
    provider.register_client("post-client", "post-secret", [REDIRECT], auth_method="client_secret_post")
    async with oauth_client(client_id="post-client", secret="post-secret", method="client_secret_post") as c:
        token = await connect(c, url)
    assert token["access_token"].startswith("fake-at-")
    assert provider.token_requests[-1]["auth_method"] == "client_secret_post"

    # The registered method is the only accepted one, in both directions.
    async with oauth_client(client_id="post-client", secret="post-secret") as basic:
        with pytest.raises(OAuthError) as excinfo:
            await connect(basic, url)
    assert excinfo.value.error == "invalid_client"
    async with oauth_client(method="client_secret_post") as post:
        with pytest.raises(OAuthError) as excinfo:
            await connect(post, url)
    assert excinfo.value.error == "invalid_client"


async def test_bad_client_secret_is_401_invalid_client(provider: FakeOAuthProvider, url: str) -> None:
    async with oauth_client(secret="wrong") as client:
        with pytest.raises(OAuthError) as excinfo:
            await connect(client, url)
    assert excinfo.value.error == "invalid_client"
    async with httpx.AsyncClient() as http:
        raw = await http.post(
            f"{url}/oauth/token", data={"grant_type": "refresh_token"}, auth=(CLIENT_ID, "x")
        )
    assert raw.status_code == 401
    assert raw.json()["error"] == "invalid_client"
    assert raw.headers["www-authenticate"].startswith("Basic")


async def test_token_endpoint_is_form_encoded_only(url: str) -> None:
    async with httpx.AsyncClient() as http:
        raw = await http.post(
            f"{url}/oauth/token", json={"grant_type": "authorization_code"}, auth=(CLIENT_ID, SECRET)
        )
    assert raw.status_code == 400
    assert raw.json()["error"] == "invalid_request"


# --- authorize errors ------------------------------------------------------------


async def test_unregistered_redirect_uri_gets_an_error_page_not_a_redirect(
    provider: FakeOAuthProvider, url: str
) -> None:
    async with oauth_client() as client:
        auth_url, _ = client.create_authorization_url(
            f"{url}/oauth/authorize",
            code_verifier=secrets.token_urlsafe(48),
            redirect_uri="http://evil.example/callback",
        )
    async with oauth_client(client_id="nobody") as stranger:
        bad_client_url, _ = stranger.create_authorization_url(
            f"{url}/oauth/authorize", code_verifier=secrets.token_urlsafe(48)
        )
    for target in (auth_url, bad_client_url):
        response = await browse(target)
        assert response.status_code == 400
        assert "location" not in response.headers
        assert response.headers["content-type"].startswith("text/html")


async def test_pkce_is_required_by_default(url: str) -> None:
    async with oauth_client() as client:
        callback, state = await authorize(client, url, verifier=None)
    params = query_of(callback)
    assert callback.startswith(REDIRECT)
    assert params["error"] == "invalid_request"
    assert params["state"] == state
    assert "code" not in params


async def test_access_denied_redirects_with_error_and_state(provider: FakeOAuthProvider, url: str) -> None:
    provider.next_consent = "deny"
    async with oauth_client() as client:
        callback, state = await authorize(client, url, secrets.token_urlsafe(48))
    params = query_of(callback)
    assert params["error"] == "access_denied"
    assert params["error_description"]
    assert params["state"] == state
    assert "code" not in params


async def test_interactive_consent_page_posts_back(provider: FakeOAuthProvider, url: str) -> None:
    provider.interactive = True
    verifier = secrets.token_urlsafe(48)
    async with oauth_client() as client:
        auth_url, state = client.create_authorization_url(f"{url}/oauth/authorize", code_verifier=verifier)
        page = await browse(auth_url)
        assert page.status_code == 200
        assert 'id="allow"' in page.text and 'id="deny"' in page.text
        fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page.text))
        action = re.search(r'<form method="post" action="([^"]+)"', page.text)
        assert action is not None and fields["state"] == state

        async with httpx.AsyncClient(base_url=url, follow_redirects=False) as browser:
            denied = await browser.post(action[1], data={**fields, "decision": "deny"})
            allowed = await browser.post(action[1], data={**fields, "decision": "allow"})
        assert query_of(denied.headers["location"])["error"] == "access_denied"
        callback = allowed.headers["location"]
        token = await client.fetch_token(
            f"{url}/oauth/token", authorization_response=callback, state=state, code_verifier=verifier
        )
    assert token["access_token"] in provider.valid_access_tokens()
    assert len(provider.authorize_requests) == 1  # the GET; the form posts are decisions


# --- token errors ----------------------------------------------------------------


async def test_pkce_mismatch_is_invalid_grant(url: str) -> None:
    async with oauth_client() as client:
        callback, state = await authorize(client, url, secrets.token_urlsafe(48))
        with pytest.raises(OAuthError) as excinfo:
            await client.fetch_token(
                f"{url}/oauth/token",
                authorization_response=callback,
                state=state,
                code_verifier=secrets.token_urlsafe(48),
            )
    assert excinfo.value.error == "invalid_grant"


async def test_redirect_uri_must_match_the_authorize_request(url: str) -> None:
    verifier = secrets.token_urlsafe(48)
    async with oauth_client() as client:
        callback, state = await authorize(client, url, verifier)
        with pytest.raises(OAuthError) as excinfo:
            await client.fetch_token(
                f"{url}/oauth/token",
                authorization_response=callback,
                state=state,
                code_verifier=verifier,
                redirect_uri=OTHER_REDIRECT,  # registered, but not the one used at /authorize
            )
    assert excinfo.value.error == "invalid_grant"


async def test_code_reuse_fails_and_revokes_tokens_from_that_code(
    provider: FakeOAuthProvider, url: str
) -> None:
    verifier = secrets.token_urlsafe(48)
    async with oauth_client() as client:
        callback, state = await authorize(client, url, verifier)
        token_url = f"{url}/oauth/token"
        first = dict(
            await client.fetch_token(token_url, authorization_response=callback, code_verifier=verifier)
        )
        assert (await me(url, first["access_token"])).status_code == 200
        with pytest.raises(OAuthError) as excinfo:
            await client.fetch_token(
                token_url, authorization_response=callback, state=state, code_verifier=verifier
            )
        assert excinfo.value.error == "invalid_grant"
        assert (await me(url, first["access_token"])).status_code == 401
        with pytest.raises(OAuthError) as excinfo:
            await client.refresh_token(token_url, refresh_token=first["refresh_token"])
        assert excinfo.value.error == "invalid_grant"
    assert provider.valid_access_tokens() == []
    assert [r["result"] for r in provider.token_requests] == ["ok", "invalid_grant", "invalid_grant"]


async def test_codes_expire_after_60_seconds(provider: FakeOAuthProvider, url: str) -> None:
    verifier = secrets.token_urlsafe(48)
    async with oauth_client() as client:
        callback, state = await authorize(client, url, verifier)
        provider.now = time.time() + 61
        with pytest.raises(OAuthError) as excinfo:
            await client.fetch_token(
                f"{url}/oauth/token", authorization_response=callback, state=state, code_verifier=verifier
            )
    assert excinfo.value.error == "invalid_grant"


# --- refresh and revoke ------------------------------------------------------------


async def test_refresh_after_expiry(provider: FakeOAuthProvider, url: str) -> None:
    async with oauth_client() as client:
        first = dict(await connect(client, url))
        provider.expire_all_access_tokens()
        assert (await me(url, first["access_token"])).status_code == 401
        assert provider.valid_access_tokens() == []

        refreshed = await client.refresh_token(f"{url}/oauth/token", refresh_token=first["refresh_token"])
        assert refreshed["access_token"] != first["access_token"]
        # No rotation: the answer omits refresh_token (like Google) and Authlib keeps the old one.
        assert refreshed["refresh_token"] == first["refresh_token"]
        assert (await me(url, refreshed["access_token"])).status_code == 200
        again = await client.refresh_token(f"{url}/oauth/token", refresh_token=first["refresh_token"])
    assert provider.refresh_count == 2
    assert provider.valid_access_tokens() == [refreshed["access_token"], again["access_token"]]
    assert [r["grant_type"] for r in provider.token_requests] == [
        "authorization_code",
        "refresh_token",
        "refresh_token",
    ]


async def test_rotated_refresh_token_cannot_be_reused(provider: FakeOAuthProvider, url: str) -> None:
    provider.rotate_refresh_tokens = True
    async with oauth_client() as client:
        first = dict(await connect(client, url))
        rotated = dict(await client.refresh_token(f"{url}/oauth/token", refresh_token=first["refresh_token"]))
        assert rotated["refresh_token"].startswith("fake-rt-")
        assert rotated["refresh_token"] != first["refresh_token"]
        with pytest.raises(OAuthError) as excinfo:
            await client.refresh_token(f"{url}/oauth/token", refresh_token=first["refresh_token"])
        assert excinfo.value.error == "invalid_grant"
        await client.refresh_token(f"{url}/oauth/token", refresh_token=rotated["refresh_token"])
    assert provider.refresh_count == 2


async def test_refresh_cannot_widen_scope(url: str) -> None:
    async with oauth_client(scope="read") as client:
        first = dict(await connect(client, url))
        with pytest.raises(OAuthError) as excinfo:
            await client.refresh_token(
                f"{url}/oauth/token", refresh_token=first["refresh_token"], scope="read admin"
            )
    assert excinfo.value.error == "invalid_scope"


async def test_revoke_access_then_refresh_token(provider: FakeOAuthProvider, url: str) -> None:
    async with oauth_client() as client:
        token = dict(await connect(client, url))
        response = await client.revoke_token(
            f"{url}/oauth/revoke", token=token["access_token"], token_type_hint="access_token"
        )
        assert response.status_code == 200
        assert (await me(url, token["access_token"])).status_code == 401

        fresh = await client.refresh_token(f"{url}/oauth/token", refresh_token=token["refresh_token"])
        assert (await me(url, fresh["access_token"])).status_code == 200

        response = await client.revoke_token(f"{url}/oauth/revoke", token=token["refresh_token"])
        assert response.status_code == 200
        # Revoking the refresh token drops the grant, including access tokens minted from it.
        assert (await me(url, fresh["access_token"])).status_code == 401
        with pytest.raises(OAuthError) as excinfo:
            await client.refresh_token(f"{url}/oauth/token", refresh_token=token["refresh_token"])
        assert excinfo.value.error == "invalid_grant"

        # Unknown tokens are still a 200 (RFC 7009 §2.2); bad client auth is not.
        assert (await client.revoke_token(f"{url}/oauth/revoke", token="nope")).status_code == 200
    async with oauth_client(secret="wrong") as bad:
        assert (await bad.revoke_token(f"{url}/oauth/revoke", token="nope")).status_code == 401
    assert provider.revoked == [token["access_token"], token["refresh_token"], "nope"]


async def test_token_delay_makes_concurrent_refreshes_overlap(provider: FakeOAuthProvider, url: str) -> None:
    provider.rotate_refresh_tokens = True
    async with oauth_client() as client:
        refresh = dict(await connect(client, url))["refresh_token"]
    provider.token_delay = 0.3
    outcomes: list[str] = []

    async def refresh_once() -> None:
        # Separate clients: Authlib's own refresh lock is per client instance.
        async with oauth_client() as racer:
            try:
                await racer.refresh_token(f"{url}/oauth/token", refresh_token=refresh)
                outcomes.append("ok")
            except OAuthError as exc:
                outcomes.append(str(exc.error))

    started = time.monotonic()
    async with anyio.create_task_group() as tg:
        tg.start_soon(refresh_once)
        tg.start_soon(refresh_once)
    assert time.monotonic() - started >= 0.3
    assert sorted(outcomes) == ["invalid_grant", "ok"]
    assert provider.peak_concurrent_token_requests == 2
    assert provider.refresh_count == 1


# --- Slack-shaped token endpoint ------------------------------------------------------


@pytest.fixture
def slack_provider() -> FakeOAuthProvider:
    fake = FakeOAuthProvider(
        authorize_path="/oauth/v2/authorize",
        token_path="/api/oauth.v2.access",
        require_pkce=False,
        token_response_style="slack",
    )
    fake.register_client(CLIENT_ID, SECRET, [REDIRECT], auth_method="client_secret_post")
    return fake


async def test_slack_style_token_response_and_errors(slack_provider: FakeOAuthProvider) -> None:
    with run_asgi_on_loopback(slack_provider.app) as base:
        token_url = f"{base}/api/oauth.v2.access"
        scope = "chat:write,channels:read"
        async with oauth_client(method="client_secret_post", scope=scope) as client:
            callback, state = await authorize(client, base, None, path="/oauth/v2/authorize")
            token = dict(await client.fetch_token(token_url, authorization_response=callback, state=state))
            assert (await me(base, token["access_token"])).status_code == 200
            with pytest.raises(OAuthError) as excinfo:  # the code is single use
                await client.fetch_token(token_url, authorization_response=callback, state=state)
        assert excinfo.value.error == "invalid_code"
        assert (await me(base, token["access_token"])).status_code == 401  # the replay revoked it
        async with oauth_client(method="client_secret_post", secret="wrong", scope=scope) as bad:
            callback, state = await authorize(bad, base, None, path="/oauth/v2/authorize")
            with pytest.raises(OAuthError) as excinfo:
                await bad.fetch_token(token_url, authorization_response=callback, state=state)
        assert excinfo.value.error == "bad_client_secret"
        async with httpx.AsyncClient() as http:
            raw = await http.post(token_url, data={"code": "nope", "grant_type": "authorization_code"})

    assert token["ok"] is True
    assert token["access_token"].startswith("xoxb-")
    assert token["token_type"] == "bot"
    assert token["scope"] == scope
    assert token["bot_user_id"] == "U0BOT"
    assert token["app_id"] == "A1"
    assert token["team"] == {"id": "T123", "name": "Acme"}
    assert token["authed_user"] == {"id": "U1"}
    assert "refresh_token" not in token and "expires_in" not in token  # classic, non-rotating install
    assert raw.status_code == 200
    assert raw.json() == {"ok": False, "error": "invalid_client_id"}


async def test_slack_style_with_token_rotation_refreshes(slack_provider: FakeOAuthProvider) -> None:
    slack_provider.slack_token_rotation = True
    slack_provider.access_token_ttl = 43200
    with run_asgi_on_loopback(slack_provider.app) as base:
        token_url = f"{base}/api/oauth.v2.access"
        async with oauth_client(method="client_secret_post", scope="chat:write") as client:
            callback, state = await authorize(client, base, None, path="/oauth/v2/authorize")
            token = dict(await client.fetch_token(token_url, authorization_response=callback, state=state))
            refreshed = dict(await client.refresh_token(token_url, refresh_token=token["refresh_token"]))
            with pytest.raises(OAuthError) as excinfo:
                await client.refresh_token(token_url, refresh_token="xoxe-1-unknown")
    assert token["access_token"].startswith("xoxe.xoxb-1-")
    assert token["refresh_token"].startswith("xoxe-1-")
    assert token["expires_in"] == 43200
    assert refreshed["ok"] is True and refreshed["access_token"] != token["access_token"]
    assert excinfo.value.error == "invalid_refresh_token"


# --- controls ------------------------------------------------------------------------


async def test_reset_forgets_tokens_but_keeps_clients(provider: FakeOAuthProvider, url: str) -> None:
    provider.next_consent = "deny"
    provider.reset()
    assert provider.next_consent == "allow"
    async with oauth_client() as client:
        token = dict(await connect(client, url))
        provider.reset()
        assert provider.issued == [] and provider.token_requests == [] and provider.calls == []
        assert (await me(url, token["access_token"])).status_code == 401
        assert (await connect(client, url))["access_token"] in provider.valid_access_tokens()
