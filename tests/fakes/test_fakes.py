"""Prove the fakes answer like Slack and Telegram, using the real client libraries."""

# slack_sdk is only partially typed (untyped **kwargs, SlackApiError.response).
# pyright: reportUnknownMemberType=false, reportUnknownArgumentType=false

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any, cast

import httpx
import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse
from starlette.applications import Starlette

from tests.fakes.loopback import run_asgi_on_loopback
from tests.fakes.slack import FakeSlack
from tests.fakes.telegram import FakeTelegram

TOKEN = "xoxb-test-token"
BOT_TOKEN = "123456789:AAE-test-token"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def slack() -> FakeSlack:
    fake = FakeSlack()
    fake.add_token(TOKEN)
    return fake


@pytest.fixture
def slack_url(slack: FakeSlack) -> Iterator[str]:
    with run_asgi_on_loopback(slack.app) as url:
        yield url


def slack_client(url: str, token: str | None = TOKEN) -> AsyncWebClient:
    return AsyncWebClient(token=token, base_url=f"{url}/api/")


def data(response: AsyncSlackResponse) -> dict[str, Any]:
    """The decoded body; slack_sdk types item access as Optional."""
    body = cast(Any, response.data)
    assert isinstance(body, dict)
    return cast(dict[str, Any], body)


@pytest.fixture
def telegram() -> FakeTelegram:
    fake = FakeTelegram()
    fake.add_bot(BOT_TOKEN)
    return fake


@pytest.fixture
async def tg(telegram: FakeTelegram) -> AsyncIterator[httpx.AsyncClient]:
    with run_asgi_on_loopback(telegram.app) as url:
        async with httpx.AsyncClient(base_url=f"{url}/bot{BOT_TOKEN}/") as client:
            yield client


# --- loopback ---------------------------------------------------------------


def test_loopback_serves_then_releases_port(slack: FakeSlack) -> None:
    with run_asgi_on_loopback(slack.app) as url:
        assert url.startswith("http://127.0.0.1:")
        assert httpx.post(f"{url}/api/auth.test").json() == {
            "ok": False,
            "error": "not_authed",
        }
    with pytest.raises(httpx.ConnectError):
        httpx.post(f"{url}/api/auth.test")


def test_loopback_runs_lifespan_when_asked() -> None:
    events: list[str] = []

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncGenerator[None, None]:
        events.append("startup")
        yield
        events.append("shutdown")

    with run_asgi_on_loopback(Starlette(lifespan=lifespan), lifespan="on"):
        assert events == ["startup"]
    assert events == ["startup", "shutdown"]


def test_loopback_reports_failed_startup() -> None:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncGenerator[None, None]:
        raise RuntimeError("no database")
        yield

    app = Starlette(lifespan=lifespan)
    with pytest.raises(RuntimeError, match="exited during startup"), run_asgi_on_loopback(app, lifespan="on"):
        pass


# --- Slack ------------------------------------------------------------------


@pytest.mark.anyio
async def test_slack_auth_test(slack: FakeSlack, slack_url: str) -> None:
    response = await slack_client(slack_url).auth_test()
    assert response["team_id"] == "T123"
    assert response["user_id"] == "U0BOT"
    assert response["team"] == "Acme"
    assert slack.calls == [("auth.test", TOKEN)]


@pytest.mark.anyio
async def test_slack_post_message_resolves_channel_and_records(slack: FakeSlack, slack_url: str) -> None:
    client = slack_client(slack_url)
    first = await client.chat_postMessage(channel="#general", text="hello")
    reply = data(await client.chat_postMessage(channel="random", text="re", thread_ts=first["ts"]))
    assert first["channel"] == "C01234567"
    assert reply["channel"] == "C07654321"
    assert first["ts"] != reply["ts"]
    assert reply["message"]["thread_ts"] == first["ts"]
    assert [(m["token"], m["channel"], m["text"], m["thread_ts"]) for m in slack.messages] == [
        (TOKEN, "C01234567", "hello", None),
        (TOKEN, "C07654321", "re", first["ts"]),
    ]


def test_slack_accepts_form_and_query_params(slack: FakeSlack, slack_url: str) -> None:
    """Older clients and curl send form bodies or query strings, token included."""
    posted = httpx.post(
        f"{slack_url}/api/chat.postMessage",
        data={"token": TOKEN, "channel": "C07654321", "text": "form"},
    ).json()
    listed = httpx.get(
        f"{slack_url}/api/conversations.list",
        params={"limit": "1"},
        headers={"Authorization": f"Bearer {TOKEN}"},
    ).json()
    assert posted["ok"] and posted["channel"] == "C07654321"
    assert [c["id"] for c in listed["channels"]] == ["C01234567"]
    assert listed["response_metadata"]["next_cursor"]
    assert slack.messages[0]["text"] == "form"


@pytest.mark.anyio
@pytest.mark.parametrize(("token", "error"), [("xoxb-wrong", "invalid_auth"), (None, "not_authed")])
async def test_slack_bad_token(slack_url: str, token: str | None, error: str) -> None:
    with pytest.raises(SlackApiError) as info:
        await slack_client(slack_url, token).auth_test()
    assert info.value.response.status_code == 200
    assert info.value.response["error"] == error


@pytest.mark.anyio
async def test_slack_revoked_token(slack: FakeSlack, slack_url: str) -> None:
    slack.revoke_token(TOKEN)
    with pytest.raises(SlackApiError) as info:
        await slack_client(slack_url).auth_test()
    assert info.value.response["error"] == "token_revoked"


@pytest.mark.anyio
async def test_slack_channel_not_found(slack: FakeSlack, slack_url: str) -> None:
    with pytest.raises(SlackApiError) as info:
        await slack_client(slack_url).chat_postMessage(channel="#nope", text="hi")
    assert info.value.response["error"] == "channel_not_found"
    assert slack.messages == []


@pytest.mark.anyio
async def test_slack_missing_scope(slack: FakeSlack, slack_url: str) -> None:
    slack.add_token("xoxb-readonly", scopes=["channels:read"])
    with pytest.raises(SlackApiError) as info:
        await slack_client(slack_url, "xoxb-readonly").chat_postMessage(channel="C01234567", text="hi")
    assert info.value.response["error"] == "missing_scope"
    assert info.value.response["needed"] == "chat:write"
    assert info.value.response["provided"] == "channels:read"


@pytest.mark.anyio
async def test_slack_rate_limit_then_recovers(slack: FakeSlack, slack_url: str) -> None:
    slack.rate_limit_next("chat.postMessage", retry_after=7)
    client = slack_client(slack_url)
    with pytest.raises(SlackApiError) as info:
        await client.chat_postMessage(channel="general", text="hi")
    assert info.value.response.status_code == 429
    assert info.value.response.headers["Retry-After"] == "7"
    assert info.value.response["error"] == "ratelimited"
    assert (await client.chat_postMessage(channel="general", text="hi"))["ok"]
    assert len(slack.calls) == 2
    assert len(slack.messages) == 1


@pytest.mark.anyio
async def test_slack_server_error(slack: FakeSlack, slack_url: str) -> None:
    slack.fail_next("auth.test", status=503)
    with pytest.raises(SlackApiError) as info:
        await slack_client(slack_url).auth_test()
    assert info.value.response.status_code == 503


@pytest.mark.anyio
async def test_slack_break_next_sends_body_verbatim(slack: FakeSlack, slack_url: str) -> None:
    slack.break_next("chat.postMessage", {"ok": True})
    response = await slack_client(slack_url).chat_postMessage(channel="general", text="hi")
    assert data(response) == {"ok": True}
    assert slack.messages == []


@pytest.mark.anyio
async def test_slack_unknown_method(slack_url: str) -> None:
    with pytest.raises(SlackApiError) as info:
        await slack_client(slack_url).api_call("nope.nothing")
    assert info.value.response["error"] == "unknown_method"


@pytest.mark.anyio
async def test_slack_conversations_list_paginates(slack: FakeSlack, slack_url: str) -> None:
    for i in range(5):
        slack.add_channel(f"C1000000{i}", f"team-{i}")
    slack.add_channel("C20000000", "secret", is_private=True)
    client = slack_client(slack_url)
    seen: list[str] = []
    cursor = ""
    pages = 0
    while True:
        page = data(await client.conversations_list(limit=3, cursor=cursor, exclude_archived=True))
        seen += [c["id"] for c in page["channels"]]
        pages += 1
        cursor = page["response_metadata"]["next_cursor"]
        if not cursor:
            break
    assert pages == 3
    assert len(seen) == len(set(seen)) == 7
    assert "C20000000" not in seen  # types defaults to public_channel
    with pytest.raises(SlackApiError) as info:
        await client.conversations_list(cursor="garbage!")
    assert info.value.response["error"] == "invalid_cursor"


# --- Telegram ---------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("verb", ["GET", "POST"])
async def test_telegram_get_me(tg: httpx.AsyncClient, verb: str) -> None:
    response = await tg.request(verb, "getMe")
    assert response.status_code == 200
    result = response.json()["result"]
    assert result["is_bot"] is True
    assert result["username"] == "tendril_bot"
    assert result["id"] == 123456789


@pytest.mark.anyio
async def test_telegram_send_message(telegram: FakeTelegram, tg: httpx.AsyncClient) -> None:
    first = (await tg.post("sendMessage", json={"chat_id": 123456789, "text": "hi"})).json()
    second = (
        await tg.post(
            "sendMessage",
            data={"chat_id": "123456789", "text": "again", "reply_to_message_id": "1"},
        )
    ).json()
    assert first["ok"] is True
    assert first["result"]["message_id"] == 1
    assert first["result"]["chat"]["id"] == 123456789
    assert first["result"]["from"]["username"] == "tendril_bot"
    assert second["result"]["message_id"] == 2
    assert second["result"]["reply_to_message"]["text"] == "hi"
    assert [(m["chat_id"], m["text"]) for m in telegram.messages] == [
        (123456789, "hi"),
        (123456789, "again"),
    ]


@pytest.mark.anyio
async def test_telegram_send_to_channel_username(telegram: FakeTelegram, tg: httpx.AsyncClient) -> None:
    telegram.add_chat(-1001234567890, type="channel", title="News", username="tendril_news")
    response = await tg.post("sendMessage", params={"chat_id": "@tendril_news", "text": "x"})
    assert response.json()["result"]["chat"]["id"] == -1001234567890
    assert response.json()["result"]["message_id"] == 1


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("payload", "description"),
    [
        ({"chat_id": 999, "text": "hi"}, "Bad Request: chat not found"),
        ({"chat_id": 123456789, "text": " "}, "Bad Request: message text is empty"),
    ],
)
async def test_telegram_bad_request(
    tg: httpx.AsyncClient, payload: dict[str, object], description: str
) -> None:
    response = await tg.post("sendMessage", json=payload)
    assert response.status_code == 400
    assert response.json() == {
        "ok": False,
        "error_code": 400,
        "description": description,
    }


@pytest.mark.anyio
async def test_telegram_unauthorized_and_unknown_method(tg: httpx.AsyncClient) -> None:
    response = await tg.post(f"{tg.base_url.copy_with(path='/')}bot1:wrong/getMe")
    assert response.status_code == 401
    assert response.json() == {
        "ok": False,
        "error_code": 401,
        "description": "Unauthorized",
    }
    response = await tg.post("noSuchMethod")
    assert response.status_code == 404
    assert response.json()["description"] == "Not Found"


@pytest.mark.anyio
async def test_telegram_rate_limit(telegram: FakeTelegram, tg: httpx.AsyncClient) -> None:
    telegram.rate_limit_next("sendMessage", retry_after=3)
    payload = {"chat_id": 123456789, "text": "hi"}
    response = await tg.post("sendMessage", json=payload)
    assert response.status_code == 429
    body = response.json()
    assert body["parameters"] == {"retry_after": 3}
    assert body["description"] == "Too Many Requests: retry after 3"
    assert (await tg.post("sendMessage", json=payload)).status_code == 200
    assert [m for m, _ in telegram.calls] == ["sendMessage", "sendMessage"]


@pytest.mark.anyio
async def test_telegram_break_next_and_server_error(telegram: FakeTelegram, tg: httpx.AsyncClient) -> None:
    telegram.break_next("getMe", {"ok": True})
    telegram.fail_next("getMe", status=502)
    assert (await tg.get("getMe")).json() == {"ok": True}
    assert (await tg.get("getMe")).status_code == 502
    assert (await tg.get("getMe")).json()["result"]["is_bot"] is True


@pytest.mark.anyio
async def test_telegram_get_updates_offset(telegram: FakeTelegram, tg: httpx.AsyncClient) -> None:
    ids = [telegram.push_message(123456789, f"m{i}")["update_id"] for i in range(3)]
    assert ids == sorted(ids)

    async def fetch(**params: int) -> list[int]:
        response = await tg.post("getUpdates", json={"timeout": 30, **params})
        return [u["update_id"] for u in response.json()["result"]]

    assert await fetch() == ids
    assert await fetch(limit=1) == ids[:1]
    assert await fetch() == ids  # nothing confirmed yet
    assert await fetch(offset=ids[1]) == ids[1:]  # confirms ids[0]
    assert await fetch() == ids[1:]
    assert await fetch(offset=ids[-1] + 1) == []
    late = telegram.push_update({"message": {"text": "late"}})
    response = await tg.get("getUpdates", params={"offset": str(ids[-1] + 1)})
    assert response.json()["result"] == [late]
