"""In-memory fake of the Discord REST API v10 (bots, channels, messages, webhooks), over loopback.

Errors use Discord's shape, `{"message": ..., "code": N}` with nested `errors` for 50035 Invalid
Form Body, and Discord's statuses; a rate limit answers 429 with Discord's body and headers.
Serve it and use `<url>/api/v10` as the API base and `<url>/api/webhooks/<id>/<token>` as webhook
URLs. Not emulated: guilds and roles (a channel denies permissions to every bot alike), the
gateway, attachments, and webhooks without `?wait=true` beyond an empty 204.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

logger = logging.getLogger(__name__)

JSON = dict[str, Any]
FIRST_SNOWFLAKE = 1_180_000_000_000_000_000  # 19 digits, like ids minted in 2023
MAX_CONTENT = 2000
PERMISSIONS = {"VIEW_CHANNEL", "SEND_MESSAGES", "EMBED_LINKS", "READ_MESSAGE_HISTORY"}


@dataclass
class Bot:
    id: str
    username: str


@dataclass
class Channel:
    id: str
    name: str
    deny: set[str] = field(default_factory=set[str])  # permissions every bot lacks here


@dataclass
class Webhook:
    id: str
    token: str
    channel_id: str
    name: str


@dataclass
class Call:
    """One request as received; `authorization` is the raw header (tests check what was sent)."""

    route: str
    method: str
    authorization: str | None
    user_agent: str | None
    body: Any


@dataclass
class _Fault:
    status: int
    body: JSON | str
    headers: dict[str, str] = field(default_factory=dict[str, str])


class DiscordError(Exception):
    def __init__(self, status: int, code: int, message: str, errors: JSON | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body: JSON = {"message": message, "code": code}
        if errors is not None:
            self.body["errors"] = errors


def form_error(path: Iterable[str], code: str, message: str) -> DiscordError:
    """50035 Invalid Form Body with the offending field nested the way Discord nests it."""
    errors: JSON = {"_errors": [{"code": code, "message": message}]}
    for part in reversed(list(path)):
        errors = {part: errors}
    return DiscordError(400, 50035, "Invalid Form Body", errors)


UNAUTHORIZED = (401, 0, "401: Unauthorized")


class FakeDiscord:
    """Discord state plus a Starlette app serving `/api/v10/...` and webhook executions."""

    def __init__(self) -> None:
        self.bots: dict[str, Bot] = {}
        self.channels: dict[str, Channel] = {}
        self.messages: dict[str, JSON] = {}
        self.webhooks: dict[str, Webhook] = {}
        self.calls: list[Call] = []
        self._faults: dict[str, deque[_Fault]] = {}
        self._ids = itertools.count(FIRST_SNOWFLAKE)
        self._lock = threading.Lock()

    # --- test controls -------------------------------------------------------

    def add_bot(self, token: str, username: str = "tendril-bot") -> Bot:
        bot = Bot(self._snowflake(), username)
        with self._lock:
            self.bots[token] = bot
        return bot

    def add_channel(self, name: str = "general", *, deny: Iterable[str] = ()) -> Channel:
        """A text channel; `deny` names permissions (VIEW_CHANNEL, SEND_MESSAGES, ...) bots lack in it."""
        denied = set(deny)
        assert denied <= PERMISSIONS, denied - PERMISSIONS
        channel = Channel(self._snowflake(), name, denied)
        with self._lock:
            self.channels[channel.id] = channel
        return channel

    def add_webhook(self, channel_id: str, name: str = "Captain Hook", token: str | None = None) -> Webhook:
        webhook = Webhook(self._snowflake(), token or f"hook-{self._snowflake()}-token", channel_id, name)
        with self._lock:
            self.webhooks[webhook.id] = webhook
        return webhook

    def add_message(self, channel_id: str, content: str, author_id: str = "80351110224678912") -> JSON:
        """A message someone (by default a human user) already posted."""
        with self._lock:
            return self._store(channel_id, {"id": author_id, "username": "someone"}, {"content": content})

    def rate_limit_next(
        self,
        route: str,
        retry_after: float = 1.5,
        *,
        is_global: bool = False,
        bucket: str = "41f9cd5d28af77da04563bcb1d67fdfd",
        json_body: bool = True,
        times: int = 1,
    ) -> None:
        """Answer the next `times` calls of `route` with Discord's 429 (body and headers).

        `json_body=False` answers like Cloudflare does at its edge: only a Retry-After header.
        """
        body: JSON | str = "error code: 1015"
        if json_body:
            body = {"message": "You are being rate limited.", "retry_after": retry_after, "global": is_global}
        headers = {
            "Retry-After": str(math.ceil(retry_after)),
            "X-RateLimit-Limit": "5",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset-After": str(retry_after),
            "X-RateLimit-Bucket": bucket,
            "X-RateLimit-Scope": "global" if is_global else "user",
        }
        if is_global:
            headers["X-RateLimit-Global"] = "true"
        self._queue(route, _Fault(429, body, headers), times)

    def fail_next(
        self, route: str, status: int = 500, *, body: JSON | str | None = None, times: int = 1
    ) -> None:
        """Answer the next `times` calls of `route` with `status`; a str body is sent as HTML."""
        default: JSON = {"message": f"{status}: Internal Server Error", "code": 0}
        self._queue(route, _Fault(status, body if body is not None else default), times)

    def _queue(self, route: str, fault: _Fault, times: int) -> None:
        with self._lock:
            self._faults.setdefault(route, deque()).extend([fault] * times)

    # --- HTTP ----------------------------------------------------------------

    @cached_property
    def app(self) -> Starlette:
        """The ASGI app; serve it with `run_asgi_on_loopback`."""
        handlers: dict[str, Callable[[Request, Any], JSON | None]] = {
            "get_current_user": self._get_current_user,
            "create_message": self._create_message,
            "edit_message": self._edit_message,
            "execute_webhook": self._execute_webhook,
        }

        def endpoint(route: str) -> Callable[[Request], Awaitable[Response]]:
            async def handle(request: Request) -> Response:
                return await self._dispatch(route, handlers[route], request)

            return handle

        v10 = "/api/v10"
        return Starlette(
            routes=[
                Route(f"{v10}/users/@me", endpoint("get_current_user"), methods=["GET"]),
                Route(
                    f"{v10}/channels/{{channel_id}}/messages", endpoint("create_message"), methods=["POST"]
                ),
                Route(
                    f"{v10}/channels/{{channel_id}}/messages/{{message_id}}",
                    endpoint("edit_message"),
                    methods=["PATCH"],
                ),
                Route(
                    f"{v10}/webhooks/{{webhook_id}}/{{webhook_token}}",
                    endpoint("execute_webhook"),
                    methods=["POST"],
                ),
            ]
        )

    async def _dispatch(
        self, route: str, handler: Callable[[Request, Any], JSON | None], request: Request
    ) -> Response:
        raw = await request.body()
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                return JSONResponse(
                    {"message": "The request body contains invalid JSON.", "code": 50109}, 400
                )
        with self._lock:
            self.calls.append(
                Call(
                    route,
                    request.method,
                    request.headers.get("authorization"),
                    request.headers.get("user-agent"),
                    body,
                )
            )
            queued = self._faults.get(route)
            fault = queued.popleft() if queued else None
            if fault is not None:
                if isinstance(fault.body, str):
                    return PlainTextResponse(fault.body, fault.status, headers=fault.headers)
                return JSONResponse(fault.body, fault.status, headers=fault.headers)
            try:
                result = handler(request, body if isinstance(body, dict) else {})
            except DiscordError as exc:
                logger.debug("discord %s -> %s %s", route, exc.status, exc.body["code"])
                return JSONResponse(exc.body, exc.status)
        if result is None:
            return Response(status_code=204)
        return JSONResponse(result)

    # --- routes (called with the lock held) ----------------------------------

    def _bot(self, request: Request) -> Bot:
        header = request.headers.get("authorization") or ""
        scheme, _, token = header.partition(" ")
        bot = self.bots.get(token) if scheme == "Bot" else None
        if bot is None:
            raise DiscordError(*UNAUTHORIZED)
        return bot

    def _channel(self, channel_id: str, *needed: str) -> Channel:
        channel = self.channels.get(channel_id)
        if channel is None:
            raise DiscordError(404, 10003, "Unknown Channel")
        if "VIEW_CHANNEL" in channel.deny:
            raise DiscordError(403, 50001, "Missing Access")
        if channel.deny.intersection(needed):
            raise DiscordError(403, 50013, "Missing Permissions")
        return channel

    def _get_current_user(self, request: Request, body: JSON) -> JSON:
        bot = self._bot(request)
        return {"id": bot.id, "username": bot.username, "discriminator": "0", "bot": True, "avatar": None}

    def _create_message(self, request: Request, body: JSON) -> JSON:
        bot = self._bot(request)
        embeds: list[JSON] = body.get("embeds") or []
        reference: JSON | None = body.get("message_reference")
        needed = ["SEND_MESSAGES"]
        needed += ["EMBED_LINKS"] if embeds else []
        needed += ["READ_MESSAGE_HISTORY"] if reference else []
        channel = self._channel(request.path_params["channel_id"], *needed)
        _check_content(body, allow_empty=bool(embeds))
        for index, embed in enumerate(embeds):
            url = embed.get("url")
            if url is not None and not str(url).startswith(("http://", "https://")):
                raise form_error(
                    ["embeds", str(index), "url"], "URL_TYPE_INVALID_URL", "Not a well formed URL."
                )
        if reference is not None:
            replied = self.messages.get(str(reference.get("message_id")))
            if (replied is None or replied["channel_id"] != channel.id) and reference.get(
                "fail_if_not_exists", True
            ):
                raise form_error(
                    ["message_reference"], "MESSAGE_REFERENCE_UNKNOWN_MESSAGE", "Unknown message"
                )
        author = {"id": bot.id, "username": bot.username, "bot": True}
        return self._store(channel.id, author, body)

    def _edit_message(self, request: Request, body: JSON) -> JSON:
        bot = self._bot(request)
        channel = self._channel(request.path_params["channel_id"])
        message = self.messages.get(request.path_params["message_id"])
        if message is None or message["channel_id"] != channel.id:
            raise DiscordError(404, 10008, "Unknown Message")
        if message["author"]["id"] != bot.id:
            raise DiscordError(403, 50005, "Cannot edit a message authored by another user")
        if "content" in body:
            _check_content(body, allow_empty=bool(message["embeds"]))
            message["content"] = body["content"]
        if "allowed_mentions" in body:
            message["allowed_mentions"] = body["allowed_mentions"]
        message["edited_timestamp"] = _now()
        return dict(message)

    def _execute_webhook(self, request: Request, body: JSON) -> JSON | None:
        webhook = self.webhooks.get(request.path_params["webhook_id"])
        if webhook is None:
            raise DiscordError(404, 10015, "Unknown Webhook")
        if request.path_params["webhook_token"] != webhook.token:
            raise DiscordError(401, 50027, "Invalid Webhook Token")
        username = body.get("username")
        if username is not None:
            for word in ("discord", "clyde"):
                if word in str(username).lower():
                    raise form_error(
                        ["username"], "USERNAME_INVALID_CONTAINS", f'Username cannot contain "{word}"'
                    )
        _check_content(body, allow_empty=bool(body.get("embeds")))
        author = {"id": webhook.id, "username": username or webhook.name, "bot": True}
        message = self._store(webhook.channel_id, author, body, webhook_id=webhook.id)
        return message if request.query_params.get("wait") == "true" else None

    def _store(self, channel_id: str, author: JSON, body: JSON, webhook_id: str | None = None) -> JSON:
        message: JSON = {
            "id": self._snowflake(),
            "type": 19 if body.get("message_reference") else 0,
            "channel_id": channel_id,
            "author": author,
            "content": body.get("content") or "",
            "embeds": body.get("embeds") or [],
            "allowed_mentions": body.get("allowed_mentions"),
            "timestamp": _now(),
            "edited_timestamp": None,
        }
        if body.get("message_reference"):
            message["message_reference"] = {**body["message_reference"], "channel_id": channel_id}
        if webhook_id is not None:
            message["webhook_id"] = webhook_id
        self.messages[message["id"]] = message
        return dict(message)

    def _snowflake(self) -> str:
        return str(next(self._ids))


def _check_content(body: JSON, *, allow_empty: bool) -> None:
    content = str(body.get("content") or "")
    if not content and not allow_empty:
        raise DiscordError(400, 50006, "Cannot send an empty message")
    if len(content) > MAX_CONTENT:
        raise form_error(["content"], "BASE_TYPE_MAX_LENGTH", f"Must be {MAX_CONTENT} or fewer in length.")


def _now() -> str:
    return datetime.now(UTC).isoformat()
