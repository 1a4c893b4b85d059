"""Telegram Bot API over httpx (the token lives in the URL path, so URLs are never logged)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, Literal

import httpx
from pydantic import BaseModel, Field

from connectors import ActionContext, ClientOptions, Connector, Hints, HookRef, HookRequest, RegisteredHook
from connectors._http import new_http_client
from connectors.errors import (
    ConnectorError,
    Forbidden,
    InvalidCredentials,
    InvalidInput,
    NotFound,
    RateLimited,
    UpstreamError,
)

connector = Connector.load(__file__)


class TelegramApiError(Exception):
    """A Bot API answer with `ok: false`."""

    def __init__(self, status: int, description: str, retry_after: float | None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.retry_after = retry_after


class BotApi:
    """The few lines of Bot API plumbing: POST JSON to /bot<token>/<method>, unwrap `result`."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self._http = http

    async def call(self, method: str, **params: Any) -> Any:
        body = {key: value for key, value in params.items() if value is not None}
        response = await self._http.post(method, json=body)
        try:
            payload = response.json()
        except ValueError:
            raise UpstreamError(
                f"Telegram answered HTTP {response.status_code} without JSON",
                status=response.status_code,
                retryable=response.status_code >= 500,
            ) from None
        if not payload.get("ok"):
            retry_after = (payload.get("parameters") or {}).get("retry_after")
            raise TelegramApiError(
                int(payload.get("error_code") or response.status_code),
                str(payload.get("description") or "unknown error"),
                float(retry_after) if retry_after is not None else None,
            )
        return payload["result"]


@connector.client
@asynccontextmanager
async def open_client(credentials: Mapping[str, str], options: ClientOptions) -> AsyncIterator[BotApi]:
    base = f"{options.api_base.rstrip('/')}/bot{credentials['bot_token']}/"
    async with new_http_client(base, transport=options.http_transport) as http:
        yield BotApi(http)


@connector.verifier
async def verify(client: BotApi) -> dict[str, Any]:
    """getMe: proves the token works and names the bot."""
    me = await client.call("getMe")
    return {"botId": me.get("id"), "username": me.get("username"), "firstName": me.get("first_name")}


@connector.error_mapper
def map_telegram_error(exc: BaseException) -> ConnectorError | None:
    if not isinstance(exc, TelegramApiError):
        return None
    text = exc.description
    if exc.status == 429:
        wait = exc.retry_after if exc.retry_after is not None else 1.0
        return RateLimited(f"Telegram flood control; retry after {wait:g}s", retry_after=wait)
    if exc.status in (401, 404) and text in ("Unauthorized", "Not Found"):
        return InvalidCredentials(f"Telegram rejected the bot token ({text})")
    if exc.status == 403:
        return Forbidden(f"Telegram refused: {text}")
    if exc.status == 400 and "not found" in text:
        return NotFound(f"Telegram: {text}")
    if exc.status == 400:
        return InvalidInput(f"Telegram: {text}")
    return UpstreamError(
        f"Telegram error {exc.status}: {text}", status=exc.status, retryable=exc.status >= 500
    )


class SendMessageInput(BaseModel):
    chat_id: int | str | None = Field(
        None, description="Target chat id (e.g. 123456789) or @channelusername; defaults to defaultChatId."
    )
    text: str = Field(min_length=1, max_length=4096, description="Message text, 1-4096 characters.")
    parse_mode: Literal["MarkdownV2", "HTML", "Markdown"] | None = Field(
        None, description="How Telegram should format `text`; plain text when omitted."
    )
    reply_to_message_id: int | None = Field(None, description="Send as a reply to this message id.")
    disable_notification: bool = Field(False, description="Deliver silently.")


class SendMessageOutput(BaseModel):
    message_id: int = Field(description="Id of the sent message within the chat.")
    chat_id: int | str = Field(description="Id of the chat the message went to.")
    status: str = Field(description="Always `sent` when Telegram accepted the message.")


@connector.action(Hints(read_only=False, idempotent=False))
async def send_message(ctx: ActionContext[BotApi], params: SendMessageInput) -> SendMessageOutput:
    """Send a text message from the bot to a Telegram chat.

    The user must have started a chat with the bot (or added it to the group) first.
    """
    reply = {"message_id": params.reply_to_message_id} if params.reply_to_message_id else None
    message = await ctx.client.call(
        "sendMessage",
        chat_id=params.chat_id,
        text=params.text,
        parse_mode=params.parse_mode,
        reply_parameters=reply,
        disable_notification=params.disable_notification or None,
    )
    return SendMessageOutput(message_id=message["message_id"], chat_id=message["chat"]["id"], status="sent")


class GetMeInput(BaseModel):
    pass


class GetMeOutput(BaseModel):
    id: int = Field(description="The bot's user id.")
    is_bot: bool = Field(description="Always true for bots.")
    first_name: str = Field(description="The bot's display name.")
    username: str | None = Field(None, description="The bot's @username, without the @.")
    can_join_groups: bool | None = Field(None, description="Whether the bot can be added to groups.")


@connector.action(Hints(read_only=True))
async def get_me(ctx: ActionContext[BotApi], params: GetMeInput) -> GetMeOutput:
    """Describe the bot this connection acts as."""
    me = await ctx.client.call("getMe")
    return GetMeOutput.model_validate(me)


class GetUpdatesInput(BaseModel):
    limit: int = Field(10, ge=1, le=100, description="Most updates to return.")
    offset: int | None = Field(
        None, description="Return updates from this update_id on; earlier ones are confirmed and dropped."
    )


class GetUpdatesOutput(BaseModel):
    count: int = Field(description="Number of updates returned.")
    updates: list[dict[str, Any]] = Field(description="Telegram Update objects, oldest first.")
    next_offset: int | None = Field(None, description="Pass as `offset` to confirm these and get newer ones.")


# Not read-only: an offset confirms (drops) earlier updates. Repeating a call changes nothing more.
@connector.action(Hints(read_only=False, idempotent=True))
async def get_updates(ctx: ActionContext[BotApi], params: GetUpdatesInput) -> GetUpdatesOutput:
    """Fetch messages and other updates the bot has received (not available while a webhook is set)."""
    updates = await ctx.client.call("getUpdates", offset=params.offset, limit=params.limit, timeout=0)
    next_offset = max((u["update_id"] for u in updates), default=None)
    return GetUpdatesOutput(
        count=len(updates), updates=updates, next_offset=next_offset + 1 if next_offset is not None else None
    )


# -- webhook registration (for Tendril's own receiver; not an agent tool) -------------------------
@connector.hook_registrar
async def set_webhook(client: BotApi, request: HookRequest) -> RegisteredHook:
    """setWebhook with a secret_token, which Telegram then sends in X-Telegram-Bot-Api-Secret-Token."""
    await client.call("setWebhook", url=request.url, secret_token=request.secret)
    return RegisteredHook(
        hook_id=None,
        secrets={"secret_token": request.secret},
        description="Telegram webhook (setWebhook with a secret token)",
    )


@connector.hook_remover
async def delete_webhook(client: BotApi, hook: HookRef) -> bool:
    """deleteWebhook, but only while the bot still delivers to this endpoint: if someone pointed it
    elsewhere since, that hook is theirs to keep."""
    info = await client.call("getWebhookInfo")
    if not isinstance(info, dict) or info.get("url") != hook.url:
        return False
    await client.call("deleteWebhook")
    return True
