"""OAuth connections end to end against fake authorization servers, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import logging
import time
import uuid
from datetime import timedelta

import anyio
import pytest
import sqlalchemy as sa

from clients import TendrilApiError
from server.logs import install_redaction
from server.settings import Settings
from storage import schema
from tests.conftest import Fakes, OAuthFakes, Owner, Tendril
from tests.support.browser_http import BrowserLike, signin_token_of
from tests.support.core import prepared_core, stored_rows, vault_of

pytestmark = pytest.mark.anyio


async def connected_via_oauth(tendril: Tendril, owner: Owner, slug: str, **query: str) -> str:
    client = tendril.client(owner.api_key)
    started = await client.create_connection(slug)
    assert started.oauth_url is not None and started.credential_submit_url is None
    url = started.oauth_url + "".join(f"&{k}={v}" for k, v in query.items())
    async with BrowserLike(tendril.transport()) as browser:
        await browser.sign_in(owner.api_key)
        page = await browser.follow(url)
    assert page.status_code == 200, page.text
    assert "is connected" in page.text
    return started.connection.id


async def test_slack_oauth_install_activates_the_connection_with_a_working_bot_token(
    oauth_tendril: Tendril, oauth_fakes: OAuthFakes, fakes: Fakes
) -> None:
    owner = await oauth_tendril.new_owner()
    client = oauth_tendril.client(owner.api_key)
    [slack] = [c for c in await client.connectors() if c.slug == "slack"]
    assert (slack.auth_type, slack.configured, slack.availability) == ("oauth", True, "available")

    connection_id = await connected_via_oauth(oauth_tendril, owner, "slack")
    connection = await client.connection(connection_id)
    assert connection.status == "active"
    assert connection.model_extra is not None and connection.model_extra["authMethod"] == "oauth"
    assert connection.model_extra["scopes"] == [
        "chat:write",
        "channels:read",
        "reactions:write",
        "files:write",
    ]
    assert connection.account["team"] == {"id": "T123", "name": "Acme"}

    result = await client.run_action(
        connection_id, "post_message", {"channel": "#general", "text": "installed"}
    )
    assert result["status"] == "sent"
    [issued] = [t.value for t in oauth_fakes.slack.issued if t.kind == "access"]
    assert fakes.slack.messages[-1]["token"] == issued
    row = await stored_row(oauth_tendril, connection_id)
    assert issued not in repr(row) and row["credentials"].startswith("v1:")


async def test_github_flow_uses_pkce_and_the_account_picker(
    oauth_tendril: Tendril, oauth_fakes: OAuthFakes
) -> None:
    owner = await oauth_tendril.new_owner()
    await connected_via_oauth(oauth_tendril, owner, "github", selectAccount="1")
    [authorize] = oauth_fakes.github.authorize_requests
    assert authorize["code_challenge_method"] == "S256" and authorize["code_challenge"]
    assert authorize["prompt"] == "select_account"
    assert authorize["redirect_uri"] == "http://127.0.0.1:8080/api/v1/connections/oauth/callback"
    [exchange] = oauth_fakes.github.token_requests
    assert (exchange["grant_type"], exchange["result"], exchange["auth_method"]) == (
        "authorization_code",
        "ok",
        "client_secret_post",
    )


async def test_catalog_reports_oauth_connectors_without_a_client_as_not_configured(tendril: Tendril) -> None:
    owner = await tendril.new_owner()
    client = tendril.client(owner.api_key)
    catalog = {c.slug: c for c in await client.connectors()}
    assert (catalog["gmail"].configured, catalog["gmail"].availability) == (False, "not_configured")
    assert "TENDRIL_GMAIL_CLIENT_ID" in (catalog["gmail"].availability_reason or "")
    assert "gmail" not in {c.slug for c in await client.connectors(available=True)}
    # Connectors that also take a pasted token fall back to it while OAuth is not configured.
    for slug in ("slack", "github"):
        assert (catalog[slug].auth_type, catalog[slug].configured) == ("api_key", True)
    with pytest.raises(TendrilApiError) as refused:
        await client.create_connection("gmail")
    assert refused.value.status == 400 and "not configured" in refused.value.message


async def test_pages_and_start_require_a_signed_in_owner(oauth_tendril: Tendril) -> None:
    owner = await oauth_tendril.new_owner()
    started = await oauth_tendril.client(owner.api_key).create_connection("github")
    assert started.oauth_url is not None
    async with BrowserLike(oauth_tendril.transport()) as browser:
        for url in (started.oauth_url, f"/connect/{started.connection.id}", "/dashboard"):
            response = await browser.get(url)
            assert response.status_code == 303
            assert response.headers["location"].startswith("/signin?next=")
        form = await browser.tendril.get("/signin")
        refused = await browser.tendril.post(
            "/signin", data={"api_key": "tdl_not-a-key", "signin_token": signin_token_of(form.text)}
        )
        assert refused.status_code == 401 and "not valid" in refused.text


async def test_access_denied_ends_on_a_clear_page_and_stores_nothing(
    oauth_tendril: Tendril, oauth_fakes: OAuthFakes
) -> None:
    oauth_fakes.github.next_consent = "deny"
    owner = await oauth_tendril.new_owner()
    client = oauth_tendril.client(owner.api_key)
    started = await client.create_connection("github")
    assert started.oauth_url is not None
    async with BrowserLike(oauth_tendril.transport()) as browser:
        await browser.sign_in(owner.api_key)
        page = await browser.follow(started.oauth_url)
    assert page.status_code == 400 and "declined" in page.text
    connection = await client.connection(started.connection.id)
    assert (connection.status, connection.has_credentials) == ("pending", False)
    assert oauth_fakes.github.token_requests == []


async def test_replayed_forged_expired_and_foreign_states_are_refused(
    oauth_tendril: Tendril, oauth_fakes: OAuthFakes
) -> None:
    owner, stranger = await oauth_tendril.new_owner(), await oauth_tendril.new_owner()
    client = oauth_tendril.client(owner.api_key)
    started = await client.create_connection("github")
    assert started.oauth_url is not None
    async with (
        BrowserLike(oauth_tendril.transport()) as mine,
        BrowserLike(oauth_tendril.transport()) as theirs,
    ):
        await mine.sign_in(owner.api_key)
        await theirs.sign_in(stranger.api_key)

        # Foreign: the owner's authorization lands in the stranger's browser.
        callback = await mine.provider_redirect(await mine.stop_at_provider(started.oauth_url))
        foreign = await theirs.get(callback)
        assert foreign.status_code == 400 and "another Tendril account" in foreign.text
        # Replayed: the same callback again, now in the right browser; the state was burned.
        replayed = await mine.get(callback)
        assert replayed.status_code == 400 and "already used" in replayed.text
        # Forged: a state Tendril never issued.
        forged_url = callback.replace("state=", "state=forged")
        forged = await mine.get(forged_url)
        assert forged.status_code == 400 and "not one Tendril issued" in forged.text
        # Expired: a fresh handshake, completed after the state's ten minutes.
        fresh = await mine.provider_redirect(await mine.stop_at_provider(started.oauth_url))
        oauth_tendril.clock.advance(STATE_LIFETIME)
        expired = await mine.get(fresh)
        assert expired.status_code == 400 and "expired" in expired.text

    connection = await client.connection(started.connection.id)
    assert (connection.status, connection.has_credentials) == ("pending", False)
    # Codes were never redeemed: each refusal happened before the token endpoint.
    assert oauth_fakes.github.token_requests == []


async def test_a_wrong_pkce_verifier_or_redirect_is_refused_and_nothing_is_stored(
    oauth_tendril: Tendril, oauth_fakes: OAuthFakes
) -> None:
    owner = await oauth_tendril.new_owner()
    client = oauth_tendril.client(owner.api_key)
    started = await client.create_connection("github")
    assert started.oauth_url is not None
    async with BrowserLike(oauth_tendril.transport()) as browser:
        await browser.sign_in(owner.api_key)
        callback = await browser.provider_redirect(await browser.stop_at_provider(started.oauth_url))
        # Swap the stored verifier for another one, as an attacker holding a stolen code would have.
        settings = oauth_tendril.core.settings
        other = vault_of(settings).seal(_uuid(started.connection.id), {"code_verifier": "x" * 64})
        async with stored_rows(settings) as store, store.engine.begin() as conn:
            await conn.execute(sa.update(schema.oauth_states).values(sealed_verifier=other))
        wrong_verifier = await browser.get(callback)
        assert wrong_verifier.status_code == 400 and "did not accept" in wrong_verifier.text
        assert oauth_fakes.github.token_requests[-1]["result"] == "invalid_grant"

        # A redirect URI the provider does not know: it refuses on its own page, never redirecting.
        oauth_fakes.github.register_client(
            "github-client", "github-secret-canary-7f3", ["http://evil.example/cb"]
        )
        authorize = await browser.stop_at_provider(started.oauth_url)
        refused = await browser.outside.get(authorize)
        assert refused.status_code == 400 and "location" not in refused.headers

    connection = await client.connection(started.connection.id)
    assert (connection.status, connection.has_credentials) == ("pending", False)


async def test_oauth_status_and_restart_endpoints(oauth_tendril: Tendril, oauth_fakes: OAuthFakes) -> None:
    owner = await oauth_tendril.new_owner()
    client = oauth_tendril.client(owner.api_key)
    started = await client.create_connection("github")
    status = await client.request("GET", f"/api/v1/connections/{started.connection.id}/oauth")
    assert status["status"] == "pending" and status["oauthUrl"] == started.oauth_url
    async with BrowserLike(oauth_tendril.transport()) as browser:
        await browser.sign_in(owner.api_key)
        stale = await browser.provider_redirect(await browser.stop_at_provider(started.oauth_url or ""))
        restarted = await client.request("POST", f"/api/v1/connections/{started.connection.id}/oauth")
        assert restarted["oauthUrl"]
        assert (await browser.get(stale)).status_code == 400  # the restart burned the earlier state
        page = await browser.follow(restarted["oauthUrl"])
        assert page.status_code == 200
    done = await client.request("GET", f"/api/v1/connections/{started.connection.id}/oauth")
    assert (done["status"], done["oauthUrl"], done["authMethod"]) == ("active", None, "oauth")


async def test_deleting_an_oauth_connection_revokes_at_the_provider(
    oauth_tendril: Tendril, oauth_fakes: OAuthFakes
) -> None:
    owner = await oauth_tendril.new_owner()
    connection_id = await connected_via_oauth(oauth_tendril, owner, "github")
    [refresh] = [t.value for t in oauth_fakes.github.issued if t.kind == "refresh"]
    await oauth_tendril.client(owner.api_key).delete_connection(connection_id)
    assert oauth_fakes.github.revoked == [refresh]


async def test_fifty_concurrent_calls_on_an_expired_token_refresh_once(
    oauth_tendril: Tendril, oauth_settings: Settings, oauth_fakes: OAuthFakes, fakes: Fakes
) -> None:
    oauth_fakes.slack.slack_token_rotation = True  # expiring xoxe tokens with refresh tokens
    oauth_fakes.slack.token_delay = 0.2  # keeps the refresh in flight while the others arrive
    owner = await oauth_tendril.new_owner()
    connection_id = await connected_via_oauth(oauth_tendril, owner, "slack")

    await expire_the_access_token(oauth_tendril, connection_id)
    results: list[str] = []

    # A second core on the same database stands in for another process (its own locks).
    async with prepared_core(oauth_settings) as other:

        async def call(core_index: int) -> None:
            core = (oauth_tendril.core, other)[core_index]
            record = await core.connections.get(_uuid(owner.id), _uuid(connection_id))
            action = core.catalog["slack"].actions["list_channels"]
            output = await core.connections.run(record, action, {"limit": 1})
            results.append(output.model_dump()["channels"][0]["id"])

        async with anyio.create_task_group() as group:
            for index in range(50):
                group.start_soon(call, index % 2)
    assert len(results) == 50
    assert oauth_fakes.slack.refresh_count == 1
    refreshed = [t.value for t in oauth_fakes.slack.issued if t.kind == "access"][-1]
    assert {m[1] for m in fakes.slack.calls if m[0] == "conversations.list"} == {refreshed}


async def test_a_refused_refresh_marks_the_connection_for_reauthorization(
    oauth_tendril: Tendril, oauth_fakes: OAuthFakes
) -> None:
    oauth_fakes.slack.slack_token_rotation = True
    owner = await oauth_tendril.new_owner()
    connection_id = await connected_via_oauth(oauth_tendril, owner, "slack")
    for token in oauth_fakes.slack.issued:
        token.revoked = True  # the user removed the app: every grant is gone
    await expire_the_access_token(oauth_tendril, connection_id)
    client = oauth_tendril.client(owner.api_key)
    with pytest.raises(TendrilApiError) as refused:
        await client.run_action(connection_id, "list_channels", {})
    assert (refused.value.status, refused.value.code) == (409, "NOT_CONNECTED")
    connection = await client.connection(connection_id)
    assert connection.status == "needs_reauth"
    assert "refused the refresh token" in (connection.model_extra or {})["lastError"]


STATE_LIFETIME = timedelta(minutes=11)  # the state lives ten


def _uuid(value: str) -> uuid.UUID:
    return uuid.UUID(value)


async def expire_the_access_token(tendril: Tendril, connection_id: str) -> None:
    """Rewrite the sealed credential so its access token expired a moment ago."""
    settings, cid = tendril.core.settings, _uuid(connection_id)
    vault = vault_of(settings)
    async with stored_rows(settings) as store:
        record = await store.connection_by_id(cid)
        assert record is not None and record.sealed_credentials is not None
        credentials = vault.open(cid, record.sealed_credentials)
        credentials["expires_at"] = str(time.time() - 1)
        await store.store_refreshed_token(
            cid, sealed_credentials=vault.seal(cid, credentials), token_expires_at=None, scopes=None
        )


async def stored_row(tendril: Tendril, connection_id: str) -> dict[str, object]:
    async with stored_rows(tendril.core.settings) as store, store.engine.connect() as conn:
        row = (
            (
                await conn.execute(
                    sa.select(schema.connections).where(schema.connections.c.id == _uuid(connection_id))
                )
            )
            .mappings()
            .one()
        )
    return dict(row)


async def test_no_token_or_client_secret_reaches_a_page_a_response_or_the_log(
    oauth_tendril: Tendril, oauth_fakes: OAuthFakes, fakes: Fakes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    install_redaction(caplog.handler)
    oauth_fakes.slack.slack_token_rotation = True
    owner = await oauth_tendril.new_owner()
    client = oauth_tendril.client(owner.api_key)
    seen: list[str] = []
    async with BrowserLike(oauth_tendril.transport()) as browser:
        await browser.sign_in(owner.api_key)
        for slug in ("slack", "github"):
            started = await client.create_connection(slug)
            seen.append(started.model_dump_json())
            page = await browser.follow(started.oauth_url or "")
            seen.append(page.text)
            seen.append((await browser.get("/dashboard")).text)
            seen.append((await browser.get(f"/connect/{started.connection.id}")).text)
        slack_id = next(c.id for c in await client.connections() if c.connector_slug == "slack")
        await expire_the_access_token(oauth_tendril, slack_id)
        seen.append(json.dumps(await client.run_action(slack_id, "list_channels", {})))
        seen.append(json.dumps(await client.request("GET", f"/api/v1/connections/{slack_id}/oauth")))
        seen.append(json.dumps(await client.request("GET", "/api/v1/connections")))
    assert oauth_fakes.slack.refresh_count == 1
    secrets = [t.value for fake in (oauth_fakes.slack, oauth_fakes.github) for t in fake.issued]
    secrets += ["slack-secret-canary-9d1", "github-secret-canary-7f3"]
    assert len(secrets) >= 5
    for secret in secrets:
        for text in seen:
            assert secret not in text
        assert secret not in caplog.text
