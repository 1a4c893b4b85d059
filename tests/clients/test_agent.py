"""The agent-side helper resumes a blocked call by whichever path the server offers."""

from __future__ import annotations

import pytest

from clients.agent import AuthorizationRequest, TendrilAgent
from tests.conftest import TELEGRAM_TOKEN, Fakes, LiveTendril
from tests.support.browser_http import BrowserLike, csrf_of

pytestmark = pytest.mark.anyio

PATHS = {
    "2025-11-25 URL elicitation": {"mode": "legacy", "url_elicitation": True},
    "2026-07-28 input request": {"mode": "2026-07-28", "url_elicitation": True},
    "in-band error and wait tool": {"mode": "legacy", "url_elicitation": False},
}


@pytest.mark.parametrize("path", list(PATHS))
async def test_a_telegram_call_waits_for_the_credential_form_and_succeeds(
    live_tendril: LiveTendril, fakes: Fakes, path: str
) -> None:
    async with live_tendril.client() as owner:
        agent_key = (await owner.create_agent("helper", ["telegram"])).api_key
        shown: list[AuthorizationRequest] = []

        async def person_connects(request: AuthorizationRequest) -> None:
            """The person opens the link, signs in, and types the bot token into Tendril's form."""
            shown.append(request)
            async with BrowserLike(None, base_url=live_tendril.url) as browser:
                await browser.sign_in(live_tendril.admin.api_key)
                form = await browser.get(request.url)
                done = await browser.tendril.post(
                    f"/connect/{request.connection_id}",
                    data={"bot_token": TELEGRAM_TOKEN, "csrf": csrf_of(form.text)},
                )
                assert "Telegram is connected" in done.text

        async with TendrilAgent(
            f"{live_tendril.url}/mcp", agent_key, on_authorization=person_connects, **PATHS[path]
        ) as agent:
            result = await agent.call_tool("telegram_send_message", {"chat_id": 123456789, "text": "resumed"})

    assert result.is_error is False, result
    assert [r.url.split("/connect/")[1] for r in shown] == [shown[0].connection_id]
    assert fakes.telegram.messages[-1]["text"] == "resumed"


@pytest.mark.parametrize("path", list(PATHS))
async def test_a_slack_call_waits_for_oauth_in_the_browser_and_succeeds(
    oauth_live_tendril: LiveTendril, fakes: Fakes, path: str
) -> None:
    live = oauth_live_tendril
    async with live.client() as owner:
        agent_key = (await owner.create_agent("installer", ["slack"])).api_key

    async def person_authorizes(request: AuthorizationRequest) -> None:
        async with BrowserLike(None, base_url=live.url) as browser:
            await browser.sign_in(live.admin.api_key)
            connect = await browser.get(request.url)
            start = connect.text.split('id="continue" href="')[1].split('"')[0].replace("&amp;", "&")
            page = await browser.follow(start)
            assert "Slack is connected" in page.text

    async with TendrilAgent(
        f"{live.url}/mcp", agent_key, on_authorization=person_authorizes, **PATHS[path]
    ) as agent:
        result = await agent.call_tool("slack_post_message", {"channel": "#general", "text": "after oauth"})
    assert result.is_error is False, result
    assert fakes.slack.messages[-1]["text"] == "after oauth"
