"""Slack through the official slack-sdk AsyncWebClient."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from pydantic import BaseModel, Field
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from connectors import ActionContext, ClientOptions, Connector, Hints
from connectors._http import retry_after_seconds
from connectors.errors import (
    ConnectorError,
    Forbidden,
    InvalidCredentials,
    InvalidInput,
    MissingScopes,
    NotFound,
    RateLimited,
    UpstreamError,
    UpstreamTimeout,
)

connector = Connector.load(__file__)

_BAD_TOKEN = {"invalid_auth", "not_authed", "token_revoked", "token_expired", "account_inactive"}
_NOT_FOUND = {"channel_not_found", "message_not_found", "user_not_found", "thread_not_found"}
_FORBIDDEN = {"not_in_channel", "is_archived", "restricted_action", "cant_update_message"}
_BAD_INPUT = {
    "invalid_arguments",
    "no_text",
    "msg_too_long",
    "invalid_blocks",
    "invalid_cursor",
    "invalid_limit",
    "invalid_name",
    "already_reacted",
}


@connector.client
@asynccontextmanager
async def open_client(
    credentials: Mapping[str, str], options: ClientOptions
) -> AsyncIterator[AsyncWebClient]:
    # The SDK's default retry handlers only cover connection errors; the runtime owns 429s.
    async with aiohttp.ClientSession() as session:
        yield AsyncWebClient(
            token=credentials["bot_token"],
            base_url=options.api_base,
            timeout=int(options.timeout),
            session=session,
        )


@connector.verifier
async def verify(client: AsyncWebClient) -> dict[str, Any]:
    """auth.test: proves the token works and names the workspace and bot."""
    response = await client.auth_test()
    return {
        "team": response.get("team"),
        "teamId": response.get("team_id"),
        "user": response.get("user"),
        "userId": response.get("user_id"),
        "botId": response.get("bot_id"),
    }


@connector.error_mapper
def map_slack_error(exc: BaseException) -> ConnectorError | None:
    if isinstance(exc, SlackApiError):
        code = str(exc.response.get("error", "unknown_error"))
        if exc.response.status_code == 429 or code == "ratelimited":
            wait = retry_after_seconds(exc.response.headers.get("Retry-After"))
            return RateLimited(f"Slack rate limit reached; retry after {wait:g}s", retry_after=wait)
        if code in _BAD_TOKEN:
            return InvalidCredentials(f"Slack rejected the bot token ({code})")
        if code == "missing_scope":
            needed = str(exc.response.get("needed") or "")
            return MissingScopes([s for s in needed.split(",") if s], provider="Slack")
        if code in _NOT_FOUND:
            return NotFound(f"Slack says {code}")
        if code in _FORBIDDEN:
            return Forbidden(f"Slack refused the request ({code})")
        if code in _BAD_INPUT:
            return InvalidInput(f"Slack refused the input ({code})")
        status = exc.response.status_code
        return UpstreamError(f"Slack error: {code}", status=status, retryable=status >= 500)
    if isinstance(exc, TimeoutError):
        return UpstreamTimeout("Slack did not answer in time")
    if isinstance(exc, aiohttp.ClientError):
        return UpstreamError("could not reach Slack", retryable=True)
    return None


class PostMessageInput(BaseModel):
    channel: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        description="Channel id (C0123...) or name (#general); defaults to the connection's defaultChannel.",
    )
    text: str = Field(min_length=1, max_length=40_000, description="Message text (Slack mrkdwn).")
    thread_ts: str | None = Field(
        None, pattern=r"^\d+\.\d+$", description="Reply in the thread of this message timestamp."
    )


class PostMessageOutput(BaseModel):
    message_ts: str = Field(description="Timestamp id of the new message (Slack's `ts`).")
    channel: str = Field(description="Id of the channel the message was posted to.")
    status: str = Field(description="Always `sent` when the message was posted.")


@connector.action(Hints(read_only=False, idempotent=False), scopes=("chat:write",))
async def post_message(ctx: ActionContext[AsyncWebClient], params: PostMessageInput) -> PostMessageOutput:
    """Post a message to a Slack channel as the bot.

    The bot must be a member of private channels it posts to.
    """
    response = await ctx.client.chat_postMessage(
        channel=str(params.channel), text=params.text, thread_ts=params.thread_ts
    )
    ts, channel = response.get("ts"), response.get("channel")
    if not ts or not channel:
        raise UpstreamError("Slack accepted the message but did not say where it went (no ts/channel)")
    return PostMessageOutput(message_ts=str(ts), channel=str(channel), status="sent")


class ListChannelsInput(BaseModel):
    limit: int = Field(100, ge=1, le=1000, description="Most channels to return in this page.")
    cursor: str | None = Field(None, description="`next_cursor` from a previous page, to continue.")
    include_private: bool = Field(False, description="Also list private channels the bot is in.")
    exclude_archived: bool = Field(True, description="Leave archived channels out.")


class Channel(BaseModel):
    id: str = Field(description="Channel id, usable as `channel` in post_message.")
    name: str = Field(description="Channel name without the #.")
    is_private: bool = Field(description="True for private channels.")
    is_member: bool = Field(description="True when the bot is a member.")
    num_members: int | None = Field(None, description="Member count, when Slack reports it.")


class ListChannelsOutput(BaseModel):
    channels: list[Channel] = Field(description="Channels in this page.")
    next_cursor: str | None = Field(None, description="Pass as `cursor` for the next page; null at the end.")


@connector.action(Hints(read_only=True), scopes=("channels:read",))
async def list_channels(ctx: ActionContext[AsyncWebClient], params: ListChannelsInput) -> ListChannelsOutput:
    """List the Slack channels visible to the bot, one page at a time."""
    types = "public_channel,private_channel" if params.include_private else "public_channel"
    response = await ctx.client.conversations_list(
        limit=params.limit, cursor=params.cursor, types=types, exclude_archived=params.exclude_archived
    )
    channels = [
        Channel(
            id=str(c["id"]),
            name=str(c.get("name", "")),
            is_private=bool(c.get("is_private", False)),
            is_member=bool(c.get("is_member", False)),
            num_members=c.get("num_members"),
        )
        for c in response.get("channels", [])
    ]
    next_cursor = (response.get("response_metadata") or {}).get("next_cursor") or None
    return ListChannelsOutput(channels=channels, next_cursor=next_cursor)


class UpdateMessageInput(BaseModel):
    channel: str = Field(min_length=1, max_length=200, description="Channel id (C0123...) of the message.")
    ts: str = Field(pattern=r"^\d+\.\d+$", description="Timestamp id (`message_ts`) of the message to edit.")
    text: str = Field(min_length=1, max_length=40_000, description="The message's new text.")


class UpdateMessageOutput(BaseModel):
    message_ts: str = Field(description="Timestamp id of the edited message.")
    channel: str = Field(description="Id of the channel the message is in.")
    status: str = Field(description="Always `updated` when the edit was applied.")


@connector.action(Hints(idempotent=True), scopes=("chat:write",))
async def update_message(
    ctx: ActionContext[AsyncWebClient], params: UpdateMessageInput
) -> UpdateMessageOutput:
    """Replace the text of a message the bot posted earlier."""
    response = await ctx.client.chat_update(channel=params.channel, ts=params.ts, text=params.text)
    return UpdateMessageOutput(
        message_ts=str(response.get("ts") or params.ts),
        channel=str(response.get("channel")),
        status="updated",
    )


class AddReactionInput(BaseModel):
    channel: str = Field(min_length=1, max_length=200, description="Channel id (C0123...) of the message.")
    timestamp: str = Field(pattern=r"^\d+\.\d+$", description="Timestamp id (`message_ts`) of the message.")
    name: str = Field(
        min_length=1, max_length=100, pattern=r"^[a-z0-9_+\-']+$", description="Emoji name without colons."
    )


class AddReactionOutput(BaseModel):
    channel: str = Field(description="Id of the channel the message is in.")
    timestamp: str = Field(description="Timestamp id of the message reacted to.")
    name: str = Field(description="The emoji added.")
    status: str = Field(description="Always `added` when the reaction was added.")


@connector.action(Hints(idempotent=False), scopes=("reactions:write",))
async def add_reaction(ctx: ActionContext[AsyncWebClient], params: AddReactionInput) -> AddReactionOutput:
    """Add an emoji reaction to a message (Slack refuses the same reaction twice: already_reacted)."""
    await ctx.client.reactions_add(channel=params.channel, timestamp=params.timestamp, name=params.name)
    return AddReactionOutput(
        channel=params.channel, timestamp=params.timestamp, name=params.name, status="added"
    )


class UploadFileInput(BaseModel):
    channel: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        description=(
            "Channel id (C0123...) to share the file in; defaults to the connection's defaultChannel."
        ),
    )
    content: str = Field(min_length=1, max_length=5_000_000, description="The file's text content.")
    filename: str = Field(
        "file.txt",
        min_length=1,
        max_length=255,
        pattern=r"^[^/\\]+$",
        description="File name shown in Slack.",
    )
    title: str | None = Field(
        None, max_length=255, description="Title shown above the file; the name if omitted."
    )


class UploadFileOutput(BaseModel):
    file_id: str = Field(description="Slack's id of the uploaded file.")
    channel: str = Field(description="Channel the file was shared in.")
    status: str = Field(description="Always `uploaded` when Slack accepted the file.")


@connector.action(Hints(idempotent=False), scopes=("files:write",))
async def upload_file(ctx: ActionContext[AsyncWebClient], params: UploadFileInput) -> UploadFileOutput:
    """Upload a text file and share it in a channel (Slack's external upload flow)."""
    response = await ctx.client.files_upload_v2(
        channel=params.channel,
        content=params.content,
        filename=params.filename,
        title=params.title or params.filename,
    )
    files = response.get("files") or [response.get("file") or {}]
    file_id = str(files[0].get("id") or "") if files else ""
    if not file_id:
        raise UpstreamError("Slack accepted the upload but returned no file id")
    return UploadFileOutput(file_id=file_id, channel=str(params.channel), status="uploaded")
