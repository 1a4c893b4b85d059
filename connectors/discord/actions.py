"""Discord REST API v10 over httpx: messages as a bot, and posts through channel webhooks.

A pasted bot token is sent as `Authorization: Bot <token>`. An OAuth connection holds a user's
Bearer token instead, which Discord does not let post to channels: with it only webhooks work.
A webhook URL carries its own secret token, so it is registered for redaction like a credential.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from auth.redaction import secrets_to_redact
from connectors import ActionContext, ClientOptions, Connector, Hints
from connectors._http import new_http_client, retry_after_seconds
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

# Discord refuses clients without a User-Agent of this shape (developers/reference, "User Agent").
USER_AGENT = "DiscordBot (https://github.com/tendril-hub/tendril, 0.1)"
# Only users named in the text get pinged: relayed text must never set off @everyone, @here or a role.
ALLOWED_MENTIONS = {"parse": ["users"]}
# Discord error codes (developers/topics/opcodes-and-status-codes, "JSON Error Codes").
MISSING_ACCESS, MISSING_PERMISSIONS, INVALID_WEBHOOK_TOKEN = 50001, 50013, 50027
# Discord's request fields that our parameters are called differently.
PARAM_FOR_FIELD = {"message_reference": "reply_to"}
# The retired domain still serves the webhook URLs users copied years ago.
LEGACY_ORIGINS = {"https://discord.com": ("https://discordapp.com",)}


@dataclass(eq=False)
class DiscordApiError(Exception):
    """A non-2xx answer, with Discord's JSON error (`message`, `code`, nested `errors`)."""

    status: int
    message: str
    code: int = 0
    errors: Any = None
    retry_after: float | None = None
    is_global: bool = False
    bucket: str | None = None
    # The permissions the failed call needed, so a 403 can name them (Discord does not).
    needs: tuple[str, ...] = ()

    def __str__(self) -> str:
        return f"HTTP {self.status} {self.code}: {self.message}"


def webhook_target(url: str, api_base: str) -> tuple[str, str]:
    """The (id, token) of a Discord webhook URL; anything else is InvalidInput.

    Only Discord's own webhook path on the API's origin is accepted (tests point api_base at a
    fake, so the fake's origin is the accepted one there). The request then goes to api_base
    itself, never to the host written in the URL: a URL parameter must not make Tendril an open
    proxy that POSTs wherever an agent (or a prompt injection) says.
    """
    parts = urlsplit(api_base)
    origin = f"{parts.scheme}://{parts.netloc}"
    origins = "|".join(re.escape(o) for o in (origin, *LEGACY_ORIGINS.get(origin, ())))
    shape = rf"(?:{origins})/api(?:/v[0-9]+)?/webhooks/([0-9]{{1,21}})/([A-Za-z0-9_-]{{16,128}})"
    match = re.fullmatch(shape, url.strip())
    if match is None:
        # Never echo the URL: it holds the webhook's token.
        raise InvalidInput(
            f"webhook_url must be a Discord webhook URL ({origin}/api/webhooks/<id>/<token>)",
            field="webhook_url",
        )
    return match[1], match[2]


class DiscordApi:
    """Discord REST plumbing: bot calls carry the Authorization header, webhook calls do not."""

    def __init__(
        self, http: httpx.AsyncClient, api_base: str, authorization: str | None, webhook_url: str | None
    ) -> None:
        self._http = http
        self._api_base = api_base
        self._authorization = authorization
        self._webhook_url = webhook_url

    def require_bot(self) -> None:
        if self._authorization is None or not self._authorization.startswith("Bot "):
            raise Forbidden(
                "Discord only lets bots post and edit channel messages: connect Discord with a bot "
                "token, or post through a channel webhook with discord_send_webhook"
            )

    async def call(
        self, method: str, path: str, body: dict[str, Any] | None = None, needs: tuple[str, ...] = ()
    ) -> dict[str, Any]:
        if self._authorization is None:
            raise InvalidCredentials("the Discord connection holds no bot token")
        headers = {"Authorization": self._authorization}
        return await self._send(method, path, body, headers=headers, needs=needs)

    async def execute_webhook(self, url: str | None, body: dict[str, Any]) -> dict[str, Any]:
        url = url or self._webhook_url
        if not url:
            raise InvalidInput("give webhook_url, or save one with the connection", field="webhook_url")
        webhook_id, token = webhook_target(url, self._api_base)
        secrets_to_redact.register(token)  # httpx logs request URLs, and this one holds the token
        # wait=true: Discord answers with the message (its id) instead of an empty 204.
        path = f"webhooks/{webhook_id}/{token}"
        return await self._send("POST", path, body, headers={}, query={"wait": "true"})

    async def _send(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        *,
        headers: dict[str, str],
        query: dict[str, str] | None = None,
        needs: tuple[str, ...] = (),
    ) -> dict[str, Any]:
        response = await self._http.request(method, path, json=body, headers=headers, params=query)
        if not response.is_success:
            raise _api_error(response, needs)
        try:
            return response.json() if response.content else {}
        except ValueError:
            raise UpstreamError(f"Discord answered HTTP {response.status_code} without JSON") from None


def _api_error(response: httpx.Response, needs: tuple[str, ...]) -> DiscordApiError:
    try:
        payload = response.json()
    except ValueError:
        payload = None  # Cloudflare's HTML pages (bans, 502s) are not JSON
    data: dict[str, Any] = payload if isinstance(payload, dict) else {}
    error = DiscordApiError(
        status=response.status_code,
        message=str(data.get("message") or response.reason_phrase or "error"),
        code=int(data.get("code") or 0),
        errors=data.get("errors"),
        needs=needs,
    )
    if response.status_code == 429:
        # The JSON value is exact (float seconds); Retry-After is rounded up, and alone on Cloudflare's 429s.
        json_wait = data.get("retry_after")
        header_wait = response.headers.get("Retry-After")
        error.retry_after = float(json_wait) if json_wait is not None else retry_after_seconds(header_wait)
        error.is_global = bool(data.get("global")) or response.headers.get("X-RateLimit-Global") == "true"
        error.bucket = response.headers.get("X-RateLimit-Bucket")
    return error


@connector.client
@asynccontextmanager
async def open_client(credentials: Mapping[str, str], options: ClientOptions) -> AsyncIterator[DiscordApi]:
    # A pasted bot token, or the access token of an OAuth connection (a user's Bearer token).
    if credentials.get("bot_token"):
        authorization: str | None = f"Bot {credentials['bot_token']}"
    elif credentials.get("access_token"):
        authorization = f"Bearer {credentials['access_token']}"
    else:
        authorization = None
    base = options.api_base.rstrip("/") + "/"
    headers = {"User-Agent": USER_AGENT}
    async with new_http_client(base, headers=headers, transport=options.http_transport) as http:
        yield DiscordApi(http, options.api_base, authorization, credentials.get("webhook_url"))


@connector.verifier
async def verify(client: DiscordApi) -> dict[str, Any]:
    """GET /users/@me: proves the token works and names the bot."""
    me = await client.call("GET", "users/@me")
    return {"botId": me.get("id"), "username": me.get("username")}


@connector.error_mapper
def map_discord_error(exc: BaseException) -> ConnectorError | None:
    if not isinstance(exc, DiscordApiError):
        return None
    what = f"{exc.message} ({exc.code})" if exc.code else exc.message
    if exc.status == 429:
        wait = exc.retry_after if exc.retry_after is not None else 1.0
        scope = "global rate limit" if exc.is_global else f"rate limit of bucket {exc.bucket or 'unknown'}"
        return RateLimited(f"Discord {scope}; retry after {wait:g}s", retry_after=wait)
    if exc.code == INVALID_WEBHOOK_TOKEN:
        return InvalidInput(
            "Discord: Invalid Webhook Token; the webhook was deleted or its URL regenerated",
            field="webhook_url",
        )
    if exc.status == 401:
        return InvalidCredentials(f"Discord rejected the token ({exc.message})")
    if exc.status == 403:
        return Forbidden(f"Discord refused: {what}{_permission_hint(exc)}")
    if exc.status == 404:
        return NotFound(f"Discord: {what}")
    if exc.status == 400:
        field, reason = _first_field_error(exc.errors)
        if field is None:
            return InvalidInput(f"Discord: {what}")
        param = PARAM_FOR_FIELD.get(field.split(".")[0], field)
        return InvalidInput(f"Discord: {what} at '{param}': {reason}", field=param)
    return UpstreamError(
        f"Discord error: HTTP {exc.status} {what}", status=exc.status, retryable=exc.status >= 500
    )


def _permission_hint(exc: DiscordApiError) -> str:
    if exc.code == MISSING_ACCESS:
        return "; the bot must be in the channel's server and have the View Channel permission there"
    if exc.code == MISSING_PERMISSIONS and exc.needs:
        return f"; the bot needs these permissions in the channel: {', '.join(exc.needs)}"
    return ""


def _first_field_error(errors: Any, path: tuple[str, ...] = ()) -> tuple[str | None, str]:
    """Walk 50035's nested `errors` ({"embeds": {"0": {"url": {"_errors": [...]}}}}) to a field path."""
    if not isinstance(errors, dict):
        return None, ""
    listed = errors.get("_errors")
    if isinstance(listed, list) and listed and isinstance(listed[0], dict):
        first: dict[str, Any] = listed[0]
        return ".".join(path) or None, str(first.get("message") or first.get("code") or "invalid")
    for key, nested in errors.items():
        field, reason = _first_field_error(nested, (*path, str(key)))
        if field is not None:
            return field, reason
    return None, ""


# -- actions ---------------------------------------------------------------------------------------
Snowflake = Annotated[str, Field(pattern=r"^[0-9]{15,21}$")]


class _Input(BaseModel):
    # Agents often pass Discord ids as JSON numbers; they are strings on the wire.
    model_config = ConfigDict(coerce_numbers_to_str=True)


class EmbedField(BaseModel):
    name: str = Field(min_length=1, max_length=256, description="Field title.")
    value: str = Field(min_length=1, max_length=1024, description="Field text.")
    inline: bool = Field(False, description="Show beside neighbouring inline fields.")


class Embed(BaseModel):
    title: str | None = Field(None, max_length=256, description="Embed title.")
    description: str | None = Field(None, max_length=4096, description="Embed body text (Markdown).")
    url: str | None = Field(None, description="Link opened by clicking the title (http or https).")
    color: int | None = Field(None, ge=0, le=0xFFFFFF, description="Side bar colour as an RGB integer.")
    fields: list[EmbedField] = Field(default_factory=list, max_length=25, description="Name/value fields.")
    footer: str | None = Field(None, max_length=2048, description="Small footer text.")

    def as_discord(self) -> dict[str, Any]:
        embed = self.model_dump(exclude_none=True, exclude={"footer"})
        if self.footer:
            embed["footer"] = {"text": self.footer}
        return embed


class MessageResult(BaseModel):
    message_id: str = Field(description="Discord id (snowflake) of the message.")
    channel_id: str = Field(description="Id of the channel the message is in.")
    status: Literal["sent", "edited"] = Field(description="`sent` for a new message, `edited` after an edit.")


def _result(message: dict[str, Any], status: Literal["sent", "edited"]) -> MessageResult:
    if not message.get("id") or not message.get("channel_id"):
        raise UpstreamError("Discord accepted the request but did not return the message")
    return MessageResult(message_id=str(message["id"]), channel_id=str(message["channel_id"]), status=status)


class SendMessageInput(_Input):
    channel_id: Snowflake | None = Field(
        None,
        description="Id of the channel or thread to post in (a snowflake); "
        "defaults to the connection's defaultChannelId.",
    )
    content: str = Field(
        min_length=1, max_length=2000, description="Message text (Markdown), 1-2000 characters."
    )
    embeds: list[Embed] = Field(default_factory=list, max_length=10, description="Up to 10 rich embeds.")
    reply_to: Snowflake | None = Field(None, description="Id of a message in the same channel to reply to.")


@connector.action(Hints(read_only=False, idempotent=False))
async def send_message(ctx: ActionContext[DiscordApi], params: SendMessageInput) -> MessageResult:
    """Post a message as the bot to a Discord channel or thread, optionally with embeds or as a reply.

    The bot needs View Channel and Send Messages there (Embed Links for embeds, Read Message
    History to reply). Only users named in the text are pinged, never @everyone, @here or roles.
    """
    ctx.client.require_bot()
    body: dict[str, Any] = {"content": params.content, "allowed_mentions": ALLOWED_MENTIONS}
    needs = ["View Channel", "Send Messages"]
    if params.embeds:
        body["embeds"] = [embed.as_discord() for embed in params.embeds]
        needs.append("Embed Links")
    if params.reply_to:
        body["message_reference"] = {"message_id": params.reply_to, "fail_if_not_exists": True}
        needs.append("Read Message History")
    # The runtime has filled an omitted channel_id from defaultChannelId, or refused the call.
    path = f"channels/{params.channel_id}/messages"
    message = await ctx.client.call("POST", path, body, tuple(needs))
    return _result(message, "sent")


class EditMessageInput(_Input):
    channel_id: Snowflake = Field(description="Id of the channel the message is in.")
    message_id: Snowflake = Field(description="Id of a message the bot itself sent.")
    content: str = Field(
        min_length=1, max_length=2000, description="The new text, replacing the old, 1-2000 characters."
    )


# Idempotent: editing to the same text twice leaves the same message, so a retry is harmless.
@connector.action(Hints(read_only=False, idempotent=True))
async def edit_message(ctx: ActionContext[DiscordApi], params: EditMessageInput) -> MessageResult:
    """Replace the text of a message the bot sent earlier (embeds are kept).

    Discord lets a bot edit only its own messages.
    """
    ctx.client.require_bot()
    body = {"content": params.content, "allowed_mentions": ALLOWED_MENTIONS}
    path = f"channels/{params.channel_id}/messages/{params.message_id}"
    message = await ctx.client.call("PATCH", path, body, ("View Channel",))
    return _result(message, "edited")


class SendWebhookInput(BaseModel):
    webhook_url: SecretStr | None = Field(
        None,
        description="Discord webhook URL (https://discord.com/api/webhooks/<id>/<token>); "
        "omit to use the webhook saved with the connection.",
    )
    content: str = Field(
        min_length=1, max_length=2000, description="Message text (Markdown), 1-2000 characters."
    )
    username: str | None = Field(
        None,
        min_length=1,
        max_length=80,
        description="Display name for this message instead of the webhook's.",
    )


@connector.action(Hints(read_only=False, idempotent=False))
async def send_webhook(ctx: ActionContext[DiscordApi], params: SendWebhookInput) -> MessageResult:
    """Post a message to a Discord channel through one of its webhooks (no bot needed).

    Only users named in the text are pinged, never @everyone, @here or roles.
    """
    body: dict[str, Any] = {"content": params.content, "allowed_mentions": ALLOWED_MENTIONS}
    if params.username:
        body["username"] = params.username
    url = params.webhook_url.get_secret_value() if params.webhook_url else None
    message = await ctx.client.execute_webhook(url, body)
    return _result(message, "sent")
