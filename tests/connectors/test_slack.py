"""Slack actions through the real slack-sdk AsyncWebClient, against the fake on loopback."""

from __future__ import annotations

import pytest

from connectors import ActionRunner, load_catalog
from connectors.errors import InvalidCredentials, InvalidInput, MissingScopes, NotFound, RateLimited
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


async def test_update_react_and_upload_reach_the_fake(fakes: Fakes) -> None:
    run = runner(fakes)
    credentials = {"bot_token": SLACK_TOKEN}
    posted = await run.run(
        slack,
        slack.actions["post_message"],
        {"channel": "#general", "text": "draft"},
        credentials=credentials,
    )
    ts = posted.model_dump()["message_ts"]
    updated = await run.run(
        slack,
        slack.actions["update_message"],
        {"channel": "C01234567", "ts": ts, "text": "final"},
        credentials=credentials,
    )
    assert updated.model_dump() == {"message_ts": ts, "channel": "C01234567", "status": "updated"}
    assert fakes.slack.messages[-1]["text"] == "final"
    await run.run(
        slack,
        slack.actions["add_reaction"],
        {"channel": "C01234567", "timestamp": ts, "name": "white_check_mark"},
        credentials=credentials,
    )
    assert fakes.slack.reactions == [{"channel": "C01234567", "ts": ts, "name": "white_check_mark"}]
    with pytest.raises(InvalidInput, match="already_reacted"):
        await run.run(
            slack,
            slack.actions["add_reaction"],
            {"channel": "C01234567", "timestamp": ts, "name": "white_check_mark"},
            credentials=credentials,
        )
    uploaded = await run.run(
        slack,
        slack.actions["upload_file"],
        {"channel": "C01234567", "content": "a,b\n1,2\n", "filename": "report.csv"},
        credentials=credentials,
    )
    file_id = uploaded.model_dump()["file_id"]
    assert fakes.slack.files[file_id]["content"] == b"a,b\n1,2\n"
    assert fakes.slack.files[file_id]["channel"] == "C01234567"
    with pytest.raises(NotFound, match="message_not_found"):
        await run.run(
            slack,
            slack.actions["update_message"],
            {"channel": "C01234567", "ts": "1.2", "text": "x"},
            credentials=credentials,
        )
