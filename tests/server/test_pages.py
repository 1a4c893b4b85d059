"""Signed-in pages over HTTP: sessions, the credential form, CSRF, ownership, the dashboard."""

from __future__ import annotations

import pytest

from tests.conftest import SLACK_TOKEN, TELEGRAM_TOKEN, Fakes, Tendril
from tests.support.browser_http import BrowserLike, csrf_of

pytestmark = pytest.mark.anyio


async def test_the_session_cookie_is_http_only_and_same_site(tendril: Tendril) -> None:
    owner = await tendril.new_owner()
    async with BrowserLike(tendril.transport()) as browser:
        response = await browser.sign_in(owner.api_key)
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "path=/" in cookie
    assert owner.api_key.lower() not in cookie


async def test_an_api_key_connection_is_completed_in_the_browser_form(tendril: Tendril, fakes: Fakes) -> None:
    owner = await tendril.new_owner()
    started = await tendril.client(owner.api_key).create_connection("telegram")
    async with BrowserLike(tendril.transport()) as browser:
        await browser.sign_in(owner.api_key)
        form = await browser.get(f"/connect/{started.connection.id}")
        assert form.status_code == 200 and 'type="password"' in form.text and "Bot token" in form.text
        wrong = await browser.tendril.post(
            f"/connect/{started.connection.id}", data={"bot_token": "1:nope", "csrf": csrf_of(form.text)}
        )
        assert wrong.status_code == 400 and "does not look like a Bot token" in wrong.text
        done = await browser.tendril.post(
            f"/connect/{started.connection.id}",
            data={"bot_token": TELEGRAM_TOKEN, "csrf": csrf_of(form.text)},
        )
    assert done.status_code == 200 and "Telegram is connected" in done.text
    assert "BroadcastChannel" in done.text and TELEGRAM_TOKEN not in done.text
    connection = await tendril.client(owner.api_key).connection(started.connection.id)
    assert connection.status == "active"


async def test_forms_without_the_session_csrf_token_are_refused(tendril: Tendril) -> None:
    owner = await tendril.new_owner()
    started = await tendril.client(owner.api_key).create_connection("slack")
    async with BrowserLike(tendril.transport()) as browser:
        await browser.sign_in(owner.api_key)
        forged = await browser.tendril.post(
            f"/connect/{started.connection.id}", data={"bot_token": SLACK_TOKEN}
        )
        cross_site = await browser.tendril.post(
            f"/connect/{started.connection.id}",
            data={"bot_token": SLACK_TOKEN, "csrf": csrf_of((await browser.get("/dashboard")).text)},
            headers={"Origin": "https://evil.example"},
        )
    assert forged.status_code == cross_site.status_code == 403
    assert (await tendril.client(owner.api_key).connection(started.connection.id)).status == "pending"


async def test_another_owners_connect_page_looks_like_a_missing_one(tendril: Tendril) -> None:
    owner, stranger = await tendril.new_owner(), await tendril.new_owner()
    started = await tendril.client(owner.api_key).create_connection("telegram")
    async with BrowserLike(tendril.transport()) as browser:
        await browser.sign_in(stranger.api_key)
        foreign = await browser.get(f"/connect/{started.connection.id}")
        missing = await browser.get("/connect/6f1c3c55-2f4e-4d8e-9a61-0c7cf0d7c1a1")
        malformed = await browser.get("/connect/not-a-uuid")
    assert foreign.status_code == missing.status_code == 404
    assert foreign.text == missing.text
    assert malformed.status_code == 404
    assert "Telegram" not in foreign.text


async def test_the_dashboard_lists_adds_and_revokes_the_owners_connections(tendril: Tendril) -> None:
    owner, stranger = await tendril.new_owner(), await tendril.new_owner()
    await tendril.client(stranger.api_key).create_connection("slack", label="Stranger Slack")
    async with BrowserLike(tendril.transport()) as browser:
        await browser.sign_in(owner.api_key)
        empty = await browser.get("/dashboard")
        added = await browser.tendril.post(
            "/dashboard/connections", data={"connector": "telegram", "csrf": csrf_of(empty.text)}
        )
        assert added.status_code == 303
        page = await browser.get("/dashboard")
        listing = (await browser.get("/dashboard/connections.json")).json()
        [row] = listing
        assert row["status"] == "pending" and f'href="/connect/{row["id"]}"' in page.text
        assert 'target="_blank"' in page.text and "Stranger Slack" not in page.text
        revoked = await browser.tendril.post(
            f"/dashboard/connections/{row['id']}/revoke", data={"csrf": csrf_of(page.text)}
        )
        assert revoked.status_code == 303
        assert (await browser.get("/dashboard/connections.json")).json() == []


async def test_sign_out_ends_the_session_and_next_never_leaves_tendril(tendril: Tendril) -> None:
    owner = await tendril.new_owner()
    async with BrowserLike(tendril.transport()) as browser:
        for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
            response = await browser.sign_in(owner.api_key, next_path=target)
            assert response.headers["location"] == "/dashboard"
        assert (await browser.get("/dashboard")).status_code == 200
        await browser.tendril.post("/signout")
        assert (await browser.get("/dashboard")).status_code == 303
