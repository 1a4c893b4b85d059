"""Browser sessions: a session acts with the key it was opened with (its permissions, and only
while the key lives), and signing in cannot be forced on a person from another site."""

from __future__ import annotations

import html

import pytest

from tests.conftest import TELEGRAM_TOKEN, Fakes, Tendril
from tests.support.browser_http import BrowserLike, csrf_of, signin_token_of

pytestmark = pytest.mark.anyio


async def test_a_read_only_key_signs_in_to_look_but_every_page_action_is_refused_as_over_rest(
    tendril: Tendril, fakes: Fakes
) -> None:
    owner = await tendril.new_owner()
    admin = tendril.client(owner.api_key)
    active = await admin.create_connection("telegram", label="Active")
    await admin.submit_credentials(active.connection.id, {"bot_token": TELEGRAM_TOKEN})
    pending = await admin.create_connection("telegram", label="Pending")
    reader = (await admin.create_key("reader", ["read"])).api_key
    async with BrowserLike(tendril.transport()) as browser:
        await browser.sign_in(reader)
        dashboard = await browser.get("/dashboard")
        assert dashboard.status_code == 200 and "Active" in dashboard.text
        assert (await browser.get(f"/connect/{pending.connection.id}")).status_code == 200
        csrf = csrf_of(dashboard.text)
        attempts = {
            "revoke": await browser.tendril.post(
                f"/dashboard/connections/{active.connection.id}/revoke", data={"csrf": csrf}
            ),
            "add": await browser.tendril.post(
                "/dashboard/connections", data={"connector": "slack", "csrf": csrf}
            ),
            "connect": await browser.tendril.post(
                f"/connect/{pending.connection.id}", data={"bot_token": TELEGRAM_TOKEN, "csrf": csrf}
            ),
        }
    for what, response in attempts.items():
        assert response.status_code == 403, (what, response.text)
        assert "lacks the 'write' permission" in html.unescape(response.text)
    statuses = {c.label: c.status for c in await admin.connections()}
    assert statuses == {"Active": "active", "Pending": "pending"}  # nothing revoked, added or connected


async def test_an_execute_only_key_cannot_even_read_the_dashboard(tendril: Tendril) -> None:
    owner = await tendril.new_owner()
    runner = (await tendril.client(owner.api_key).create_key("runner", ["execute"])).api_key
    async with BrowserLike(tendril.transport()) as browser:
        await browser.sign_in(runner)
        refused = await browser.get("/dashboard")
    assert refused.status_code == 403 and "'read' permission" in html.unescape(refused.text)


async def test_revoking_the_key_ends_its_browser_sessions_at_once(tendril: Tendril) -> None:
    owner = await tendril.new_owner()
    admin = tendril.client(owner.api_key)
    made = await admin.create_key("browser", ["read", "write"])
    async with BrowserLike(tendril.transport()) as browser:
        await browser.sign_in(made.api_key)
        assert (await browser.get("/dashboard")).status_code == 200
        await admin.revoke_key(made.key.id)
        after = await browser.get("/dashboard")
    assert after.status_code == 303 and after.headers["location"].startswith("/signin")


async def test_sign_in_refuses_a_cross_site_post_and_a_form_it_did_not_hand_out(tendril: Tendril) -> None:
    attacker = await tendril.new_owner()
    async with BrowserLike(tendril.transport()) as browser:
        form = await browser.tendril.get("/signin")
        token = signin_token_of(form.text)
        cross_site = await browser.tendril.post(
            "/signin",
            data={"api_key": attacker.api_key, "signin_token": token},
            headers={"Origin": "https://evil.example"},
        )
        browser.tendril.cookies.clear()  # another site's post carries no SameSite=Strict cookie
        no_cookie = await browser.tendril.post(
            "/signin", data={"api_key": attacker.api_key, "signin_token": token}
        )
        no_token = await browser.tendril.post("/signin", data={"api_key": attacker.api_key})
        signed_in = await browser.get("/dashboard")
    for response in (cross_site, no_cookie, no_token):
        assert response.status_code == 403, response.text
        assert "tendril_session" not in response.headers.get("set-cookie", "")
    assert signed_in.status_code == 303  # still nobody's session in this browser
