"""Slack actions through the real slack-sdk AsyncWebClient, against the fake on loopback."""

from __future__ import annotations

import pytest

from connectors import ActionRunner, load_catalog
from connectors.errors import InvalidCredentials, MissingScopes, NotFound, RateLimited
from tests.conftest import SLACK_TOKEN, Fakes

pytestmark = pytest.mark.anyio
slack = load_catalog()["slack"]


def runner(fakes: Fakes) -> ActionRunner:
    return ActionRunner(api_bases={"slack": fakes.slack_url}, timeout=5)


async def test_verify_names_the_workspace_and_bot(fakes: Fakes) -> None:
    account = await runner(fakes).verify(slack, {"bot_token": SLACK_TOKEN})
    assert account == {
        "team": "Acme",
        "teamId": "T123",
        "user": "tendril-bot",
        "userId": "U0BOT",
        "botId": "B0BOT",
    }


async def test_post_message_returns_the_levqor_shape(fakes: Fakes) -> None:
    result = await runner(fakes).run(
        slack,
        slack.actions["post_message"],
        {"channel": "general", "text": "hi", "thread_ts": "1699276800.000001"},
        credentials={"bot_token": SLACK_TOKEN},
    )
    assert result.model_dump() == {
        "message_ts": "1699276800.000100",
        "channel": "C01234567",
        "status": "sent",
    }
    assert fakes.slack.messages[-1]["thread_ts"] == "1699276800.000001"


async def test_a_missing_scope_is_named(fakes: Fakes) -> None:
    fakes.slack.add_token("xoxb-read-only-token-1234", scopes=["channels:read"])
    with pytest.raises(MissingScopes) as caught:
        await runner(fakes).run(
            slack,
            slack.actions["post_message"],
            {"channel": "#general", "text": "x"},
            credentials={"bot_token": "xoxb-read-only-token-1234"},
        )
    assert caught.value.scopes == ["chat:write"]
    assert "chat:write" in caught.value.message


async def test_provider_errors_map_to_actionable_kinds(fakes: Fakes) -> None:
    with pytest.raises(InvalidCredentials, match="invalid_auth"):
        await runner(fakes).verify(slack, {"bot_token": "xoxb-not-a-known-token"})
    with pytest.raises(NotFound, match="channel_not_found"):
        await runner(fakes).run(
            slack,
            slack.actions["post_message"],
            {"channel": "#nope", "text": "x"},
            credentials={"bot_token": SLACK_TOKEN},
        )
    fakes.slack.rate_limit_next("chat.postMessage", retry_after=42)
    with pytest.raises(RateLimited) as caught:
        await runner(fakes).run(
            slack,
            slack.actions["post_message"],
            {"channel": "#general", "text": "x"},
            credentials={"bot_token": SLACK_TOKEN},
        )
    assert caught.value.retry_after == 42
    assert fakes.slack.messages == []
