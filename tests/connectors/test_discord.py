"""Discord actions over httpx against the fake Discord API on loopback."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from connectors import ActionRunner, load_catalog
from connectors.discord.actions import USER_AGENT, webhook_target
from connectors.errors import (
    ConnectorError,
    Forbidden,
    InvalidCredentials,
    InvalidInput,
    NotFound,
    RateLimited,
    UpstreamError,
)
from server.logs import install_redaction
from tests.fakes.discord import Channel, FakeDiscord, Webhook
from tests.support.asgi import Swappable

pytestmark = pytest.mark.anyio
discord = load_catalog()["discord"]

# Canary secrets, shaped like the real ones: they must never show up in results, errors or logs.
BOT_TOKEN = "MTE4MDAwMDAwMDAwMDAwMDAwMQ.GCanry.CanaryDiscordBotSecret-9f3kQx7Lm2Zp"
WEBHOOK_TOKEN = "CanaryWebhookSecret_4vQ9nLr2TzK8pWm3YxB7cHd5sFj1gNe6uAo0iRt-ZlM2qXw"
CREDENTIALS = {"bot_token": BOT_TOKEN}


class World:
    """A fresh fake per test, the URL it answers on, and a runner whose sleeps are recorded."""

    def __init__(self, provider_server: tuple[Swappable, str]) -> None:
        self.fake = FakeDiscord()
        self.bot = self.fake.add_bot(BOT_TOKEN)
        self.channel = self.fake.add_channel("general")
        self.hook = self.fake.add_webhook(self.channel.id, token=WEBHOOK_TOKEN)
        provider_server[0].target = self.fake.app
        self.url = provider_server[1]
        self.sleeps: list[float] = []

        async def no_sleep(seconds: float) -> None:
            self.sleeps.append(seconds)

        self.runner = ActionRunner(api_bases={"discord": f"{self.url}/api/v10"}, timeout=5, sleep=no_sleep)

    def webhook_url(self, hook: Webhook | None = None) -> str:
        hook = hook or self.hook
        return f"{self.url}/api/webhooks/{hook.id}/{hook.token}"

    async def run(
        self, action: str, params: dict[str, Any], credentials: dict[str, str] = CREDENTIALS
    ) -> Any:
        result = await self.runner.run(discord, discord.actions[action], params, credentials=credentials)
        return result.model_dump()

    async def fails(self, kind: type[ConnectorError], action: str, params: dict[str, Any]) -> Any:
        with pytest.raises(kind) as caught:
            await self.run(action, params)
        return caught.value

    def send(self, channel: Channel | None = None, **extra: Any) -> dict[str, Any]:
        return {"channel_id": (channel or self.channel).id, "content": "hello", **extra}


@pytest.fixture
def world(provider_server: tuple[Swappable, str]) -> World:
    return World(provider_server)


async def test_verify_names_the_bot_and_sends_discords_headers(world: World) -> None:
    account = await world.runner.verify(discord, CREDENTIALS)
    assert account == {"botId": world.bot.id, "username": "tendril-bot"}
    [call] = world.fake.calls
    assert call.authorization == f"Bot {BOT_TOKEN}"
    assert call.user_agent == USER_AGENT


async def test_send_message_with_embeds_and_a_reply(world: World) -> None:
    earlier = world.fake.add_message(world.channel.id, "question?")
    embed = {"title": "Build", "url": "https://ci.example/1", "fields": [{"name": "ok", "value": "yes"}]}
    result = await world.run("send_message", world.send(embeds=[embed], reply_to=earlier["id"]))
    assert result == {"message_id": result["message_id"], "channel_id": world.channel.id, "status": "sent"}
    stored = world.fake.messages[result["message_id"]]
    assert stored["author"]["id"] == world.bot.id and stored["content"] == "hello"
    assert stored["embeds"] == [{**embed, "fields": [{"name": "ok", "value": "yes", "inline": False}]}]
    assert stored["message_reference"]["message_id"] == earlier["id"]
    assert stored["allowed_mentions"] == {"parse": ["users"]}  # never @everyone, @here or roles


async def test_ids_given_as_numbers_are_accepted(world: World) -> None:
    result = await world.run("send_message", {"channel_id": int(world.channel.id), "content": "hi"})
    assert result["channel_id"] == world.channel.id


async def test_an_omitted_channel_comes_from_the_connections_default(world: World) -> None:
    action = discord.actions["send_message"]
    config = {"defaultChannelId": world.channel.id}
    sent = await world.runner.run(discord, action, {"content": "hi"}, credentials=CREDENTIALS, config=config)
    assert sent.model_dump()["channel_id"] == world.channel.id
    with pytest.raises(InvalidInput, match="defaultChannelId") as caught:
        await world.run("send_message", {"content": "hi"})
    assert caught.value.field == "channel_id"


async def test_editing_twice_to_the_same_text_gives_the_same_state(world: World) -> None:
    sent = await world.run("send_message", world.send())
    edit = {"channel_id": world.channel.id, "message_id": sent["message_id"], "content": "fixed"}
    first = await world.run("edit_message", edit)
    after_first = {
        k: v for k, v in world.fake.messages[sent["message_id"]].items() if k != "edited_timestamp"
    }
    second = await world.run("edit_message", edit)
    after_second = {
        k: v for k, v in world.fake.messages[sent["message_id"]].items() if k != "edited_timestamp"
    }
    assert (
        first
        == second
        == {"message_id": sent["message_id"], "channel_id": world.channel.id, "status": "edited"}
    )
    assert after_first == after_second and after_second["content"] == "fixed"
    assert discord.actions["edit_message"].hints.as_mcp()["destructiveHint"] is False


async def test_send_webhook_by_parameter_and_by_saved_credential(world: World) -> None:
    result = await world.run(
        "send_webhook", {"webhook_url": world.webhook_url(), "content": "hi", "username": "CI"}
    )
    assert result == {"message_id": result["message_id"], "channel_id": world.channel.id, "status": "sent"}
    stored = world.fake.messages[result["message_id"]]
    assert (stored["webhook_id"], stored["author"]["username"]) == (world.hook.id, "CI")
    assert world.fake.calls[-1].authorization is None  # the bot token never goes to a webhook

    other = world.fake.add_webhook(world.channel.id, name="Saved")
    saved = {**CREDENTIALS, "webhook_url": world.webhook_url(other)}
    result = await world.run("send_webhook", {"content": "from the saved hook"}, credentials=saved)
    assert world.fake.messages[result["message_id"]]["webhook_id"] == other.id


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example/api/webhooks/1180000000000000001/{token}",
        "{base}.evil.example/api/webhooks/1180000000000000001/{token}",
        "{base}@evil.example/api/webhooks/1180000000000000001/{token}",
        "{base}/api/v10/channels/1180000000000000001/messages",
        "{base}/api/webhooks/1180000000000000001/{token}?thread_id=1",
        "{base}/api/webhooks/1180000000000000001/{token}/../../users/@me",
        "https://discord.com/api/webhooks/1180000000000000001/{token}",  # not the API in use here
    ],
)
async def test_only_discord_webhook_urls_on_the_api_origin_are_posted_to(world: World, url: str) -> None:
    params = {"webhook_url": url.format(base=world.url, token=WEBHOOK_TOKEN), "content": "x"}
    error = await world.fails(InvalidInput, "send_webhook", params)
    assert error.field == "webhook_url" and WEBHOOK_TOKEN not in error.message
    assert world.fake.calls == []


def test_real_webhook_urls_are_accepted_and_always_sent_to_the_api_base() -> None:
    base = "https://discord.com/api/v10"
    for origin in ("https://discord.com/api", "https://discordapp.com/api", "https://discord.com/api/v9"):
        assert webhook_target(f"{origin}/webhooks/123456789012345678/{WEBHOOK_TOKEN}", base) == (
            "123456789012345678",
            WEBHOOK_TOKEN,
        )
    with pytest.raises(InvalidInput):
        webhook_target(f"http://discord.com/api/webhooks/1/{WEBHOOK_TOKEN}", base)


async def test_discord_errors_become_actionable_kinds(world: World) -> None:
    unknown = await world.fails(
        NotFound, "send_message", {"channel_id": "1180000000000999999", "content": "x"}
    )
    assert "Unknown Channel (10003)" in unknown.message
    edit = {"channel_id": world.channel.id, "message_id": "1180000000000999999", "content": "x"}
    assert "Unknown Message (10008)" in (await world.fails(NotFound, "edit_message", edit)).message
    theirs = world.fake.add_message(world.channel.id, "not yours")
    edit = {**edit, "message_id": theirs["id"]}
    assert "another user" in (await world.fails(Forbidden, "edit_message", edit)).message

    bad_hook = {
        "webhook_url": world.webhook_url(world.fake.add_webhook(world.channel.id)) + "x",
        "content": "x",
    }
    assert (await world.fails(InvalidInput, "send_webhook", bad_hook)).field == "webhook_url"
    world.fake.webhooks.clear()
    assert "Unknown Webhook" in (await world.fails(NotFound, "send_webhook", bad_hook)).message

    world.fake.fail_next("create_message", 502, body="<html>Bad Gateway</html>")
    assert (await world.fails(UpstreamError, "send_message", world.send())).status == 502
    assert len(world.fake.messages) == 1  # only the human's message: no retry of a send


async def test_forbidden_names_the_missing_permission(world: World) -> None:
    hidden = world.fake.add_channel("staff", deny=["VIEW_CHANNEL"])
    error = await world.fails(Forbidden, "send_message", world.send(hidden))
    assert "Missing Access (50001)" in error.message and "View Channel" in error.message
    muted = world.fake.add_channel("announcements", deny=["SEND_MESSAGES"])
    error = await world.fails(Forbidden, "send_message", world.send(muted))
    assert "Missing Permissions (50013)" in error.message and "Send Messages" in error.message
    no_embeds = world.fake.add_channel("plain", deny=["EMBED_LINKS"])
    error = await world.fails(Forbidden, "send_message", world.send(no_embeds, embeds=[{"title": "t"}]))
    assert "Embed Links" in error.message


async def test_invalid_form_body_names_the_field(world: World) -> None:
    error = await world.fails(InvalidInput, "send_message", world.send(reply_to="1180000000000999999"))
    assert error.field == "reply_to" and "Invalid Form Body (50035)" in error.message
    error = await world.fails(
        InvalidInput, "send_message", world.send(embeds=[{"title": "t", "url": "ftp://x"}])
    )
    assert error.field == "embeds.0.url" and "Not a well formed URL" in error.message
    hook = {"webhook_url": world.webhook_url(), "content": "x", "username": "Discord Support"}
    error = await world.fails(InvalidInput, "send_webhook", hook)
    assert error.field == "username" and "discord" in error.message


async def test_input_is_checked_before_calling_discord(world: World) -> None:
    assert (
        await world.fails(InvalidInput, "send_message", world.send(content="x" * 2001))
    ).field == "content"
    bad_channel = {"channel_id": "#general", "content": "x"}
    assert (await world.fails(InvalidInput, "send_message", bad_channel)).field == "channel_id"
    assert (await world.fails(InvalidInput, "send_webhook", {"content": "x"})).field == "webhook_url"
    assert world.fake.calls == []


async def test_an_invalid_token_is_invalid_credentials(world: World) -> None:
    wrong = {"bot_token": "MTE4MDAwMDAwMDAwMDAwMDAwOQ.GWrong.NotAKnownDiscordBotTokenAtAll1234"}
    with pytest.raises(InvalidCredentials, match="401: Unauthorized"):
        await world.runner.verify(discord, wrong)
    with pytest.raises(InvalidCredentials):
        await world.run("send_message", world.send(), credentials=wrong)


async def test_an_oauth_user_token_cannot_post_as_a_bot(world: World) -> None:
    user = {"access_token": "oauth-user-access-token-0123456789"}
    with pytest.raises(Forbidden, match="bot token"):
        await world.run("send_message", world.send(), credentials=user)
    assert world.fake.calls == []
    result = await world.run(
        "send_webhook", {"webhook_url": world.webhook_url(), "content": "hi"}, credentials=user
    )
    assert result["status"] == "sent"


async def test_a_rate_limited_send_reports_discords_retry_after_and_is_not_repeated(world: World) -> None:
    world.fake.rate_limit_next("create_message", retry_after=1.5)
    error = await world.fails(RateLimited, "send_message", world.send())
    assert error.retry_after == 1.5 and "41f9cd5d28af77da04563bcb1d67fdfd" in error.message
    assert len(world.fake.calls) == 1 and world.fake.messages == {} and world.sleeps == []
    world.fake.rate_limit_next("execute_webhook", retry_after=0.25, is_global=True)
    error = await world.fails(
        RateLimited, "send_webhook", {"webhook_url": world.webhook_url(), "content": "x"}
    )
    assert error.retry_after == 0.25 and "global" in error.message


async def test_a_rate_limited_edit_waits_retry_after_then_succeeds(world: World) -> None:
    sent = await world.run("send_message", world.send())
    edit = {"channel_id": world.channel.id, "message_id": sent["message_id"], "content": "again"}
    world.fake.rate_limit_next("edit_message", retry_after=1.5)
    assert (await world.run("edit_message", edit))["status"] == "edited"
    assert world.sleeps == [1.5]
    # Cloudflare's edge 429 has no JSON: the Retry-After header is the signal.
    world.fake.rate_limit_next("edit_message", retry_after=2, json_body=False)
    assert (await world.run("edit_message", edit))["status"] == "edited"
    assert world.sleeps == [1.5, 2.0]
    assert [c.route for c in world.fake.calls].count("edit_message") == 4


async def test_secrets_never_reach_results_errors_or_logs(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    install_redaction(caplog.handler)
    outputs: list[str] = []
    outputs.append(str(await world.run("send_message", world.send())))
    saved = {**CREDENTIALS, "webhook_url": world.webhook_url()}
    outputs.append(str(await world.run("send_webhook", {"content": "hi"}, credentials=saved)))
    outputs.append(
        str(await world.run("send_webhook", {"webhook_url": world.webhook_url(), "content": "hi"}))
    )
    unknown = {"channel_id": "1180000000000999999", "content": "x"}
    outputs.append((await world.fails(NotFound, "send_message", unknown)).message)
    bad_url = {"webhook_url": f"https://evil.example/api/webhooks/1/{WEBHOOK_TOKEN}", "content": "x"}
    outputs.append((await world.fails(InvalidInput, "send_webhook", bad_url)).message)
    world.fake.rate_limit_next("execute_webhook")
    hook = {"webhook_url": world.webhook_url(), "content": "x"}
    outputs.append((await world.fails(RateLimited, "send_webhook", hook)).message)
    wrong = "MTE4MDAwMDAwMDAwMDAwMDAwOQ.GWrong.CanaryWrongDiscordToken-5tY8uI1oP3"
    with pytest.raises(InvalidCredentials) as refused:
        await world.run("send_message", world.send(), credentials={"bot_token": wrong})
    outputs.append(refused.value.message)
    assert any("HTTP Request" in r.getMessage() for r in caplog.records)  # httpx did log the URLs
    for secret in (BOT_TOKEN, WEBHOOK_TOKEN, wrong):
        assert not any(secret in text for text in outputs)
        assert secret not in caplog.text
