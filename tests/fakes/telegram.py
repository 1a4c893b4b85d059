"""In-memory fake of the Telegram Bot API, served over loopback.

Error shapes, status codes and getUpdates offset confirmation follow the real
Bot API so connector retry and polling logic is exercised for real.
Not emulated: parse_mode entity parsing (text is echoed as sent) and long
polling (getUpdates returns at once whatever `timeout` says).
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any, cast

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.fakes.loopback import request_params

logger = logging.getLogger(__name__)

JSON = dict[str, Any]
MAX_TEXT = 4096
PARSE_MODES = {"HTML", "Markdown", "MarkdownV2"}


class TelegramError(Exception):
    """A Bot API error: HTTP status equals error_code, like Telegram."""

    def __init__(self, code: int, description: str, parameters: JSON | None = None) -> None:
        super().__init__(description)
        self.code = code
        self.body: JSON = {"ok": False, "error_code": code, "description": description}
        if parameters:
            self.body["parameters"] = parameters


@dataclass
class _Fault:
    status: int
    body: JSON


class FakeTelegram:
    """Bots, chats and an update queue plus a Starlette app serving `/bot<token>/<method>`."""

    def __init__(self) -> None:
        self.bots: dict[str, JSON] = {}
        self.chats: dict[int, JSON] = {}
        self.messages: list[JSON] = []
        self.updates: list[JSON] = []
        self.calls: list[tuple[str, str]] = []
        self._sent: dict[int, dict[int, JSON]] = {}
        self._faults: dict[str, deque[_Fault]] = {}
        self._update_ids = itertools.count(100_000_001)
        self._lock = threading.Lock()
        self._methods: dict[str, Callable[[JSON, JSON, str], Any]] = {
            "getme": self._get_me,
            "sendmessage": self._send_message,
            "getupdates": self._get_updates,
            "setwebhook": self._set_webhook,
            "deletewebhook": self._delete_webhook,
            "getwebhookinfo": self._get_webhook_info,
        }
        self.webhooks: dict[str, JSON] = {}  # bot token -> {url, secret_token, ...}
        self.add_chat(123456789, first_name="Alice")

    # --- test controls -------------------------------------------------------

    def add_bot(
        self,
        token: str,
        id: int = 123456789,  # shadows a builtin to mirror the Bot API field name
        username: str = "tendril_bot",
        first_name: str = "Tendril",
    ) -> JSON:
        """Make `token` valid for a bot with this identity."""
        bot: JSON = {
            "id": id,
            "is_bot": True,
            "first_name": first_name,
            "username": username,
        }
        with self._lock:
            self.bots[token] = bot
        return bot

    def add_chat(
        self,
        chat_id: int,
        type: str = "private",  # shadows a builtin to mirror the Bot API field name
        title: str | None = None,
        username: str | None = None,
        first_name: str | None = None,
    ) -> JSON:
        """Make `chat_id` (and `@username`, if given) reachable by sendMessage."""
        chat: JSON = {"id": chat_id, "type": type}
        if type == "private":
            chat["first_name"] = first_name or "User"
        else:
            chat["title"] = title or f"Chat {chat_id}"
        if username:
            chat["username"] = username
        with self._lock:
            self.chats[chat_id] = chat
        return chat

    def push_update(self, update: JSON) -> JSON:
        """Queue an update for getUpdates; assigns the next update_id and returns it."""
        with self._lock:
            full = {**update, "update_id": next(self._update_ids)}
            self.updates.append(full)
        return full

    def push_message(self, chat_id: int, text: str, from_id: int = 42, first_name: str = "Alice") -> JSON:
        """Queue a `message` update as if a user wrote `text` in `chat_id`."""
        chat = self.chats.get(chat_id) or {"id": chat_id, "type": "private"}
        sender: JSON = {"id": from_id, "is_bot": False, "first_name": first_name}
        with self._lock:
            message = self._store_message(chat, text, sender)
        return self.push_update({"message": message})

    def rate_limit_next(self, method: str, retry_after: int = 1, times: int = 1) -> None:
        """Answer the next `times` calls of `method` with HTTP 429 and retry_after."""
        description = f"Too Many Requests: retry after {retry_after}"
        error = TelegramError(429, description, {"retry_after": retry_after})
        self.break_next(method, error.body, status=429, times=times)

    def fail_next(self, method: str, status: int = 500, times: int = 1) -> None:
        """Answer the next `times` calls of `method` with an HTTP 5xx."""
        error = TelegramError(status, "Internal Server Error")
        self.break_next(method, error.body, status=status, times=times)

    def break_next(self, method: str, body: JSON, status: int = 200, times: int = 1) -> None:
        """Answer the next `times` calls of `method` with exactly `body`, e.g. a malformed result."""
        with self._lock:
            self._faults.setdefault(method.lower(), deque()).extend([_Fault(status, body)] * times)

    # --- HTTP ----------------------------------------------------------------

    @cached_property
    def app(self) -> Starlette:
        """The ASGI app; serve it with `run_asgi_on_loopback`."""
        endpoint: Callable[[Request], Awaitable[JSONResponse]] = self._endpoint
        route = Route("/bot{token}/{method}", endpoint, methods=["GET", "POST"])
        return Starlette(routes=[route])

    async def _endpoint(self, request: Request) -> JSONResponse:
        token: str = request.path_params["token"]
        method: str = request.path_params["method"]
        params = await request_params(request)
        with self._lock:
            self.calls.append((method, token))
            try:
                status, body = self._dispatch(token, method, params)
            except TelegramError as exc:
                body, status = exc.body, exc.code
            except ValueError as exc:  # malformed numbers or JSON in parameters
                body = TelegramError(400, f"Bad Request: {exc}").body
                status = 400
        logger.debug("telegram %s -> %s", method, status)
        return JSONResponse(body, status_code=status)

    def _dispatch(self, token: str, method: str, params: JSON) -> tuple[int, JSON]:
        bot = self.bots.get(token)
        if bot is None:
            raise TelegramError(401, "Unauthorized")
        handler = self._methods.get(method.lower())  # Bot API method names are case-insensitive
        if handler is None:
            raise TelegramError(404, "Not Found")
        queued = self._faults.get(method.lower())
        if queued:
            fault = queued.popleft()
            return fault.status, fault.body
        return 200, {"ok": True, "result": handler(params, bot, token)}

    # --- API methods (called with the lock held) -----------------------------

    def _get_me(self, params: JSON, bot: JSON, token: str) -> JSON:
        return {
            **bot,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }

    def _send_message(self, params: JSON, bot: JSON, token: str) -> JSON:
        chat = self._resolve_chat(params.get("chat_id"))
        text = str(params.get("text") or "")
        if not text.strip():
            raise TelegramError(400, "Bad Request: message text is empty")
        if len(text) > MAX_TEXT:
            raise TelegramError(400, "Bad Request: message is too long")
        parse_mode = params.get("parse_mode")
        if parse_mode and parse_mode not in PARSE_MODES:
            raise TelegramError(400, f"Bad Request: unsupported parse_mode {parse_mode!r}")
        reply_to = _reply_target(params)
        replied: JSON | None = None
        if reply_to is not None:
            replied = self._sent.get(chat["id"], {}).get(reply_to)
            if replied is None:
                raise TelegramError(400, "Bad Request: message to be replied not found")
        sender = {k: bot[k] for k in ("id", "is_bot", "first_name", "username")}
        message = self._store_message(chat, text, sender)
        if replied is not None:
            message["reply_to_message"] = replied
        self.messages.append(
            {
                "token": token,
                "chat_id": chat["id"],
                "message_id": message["message_id"],
                "text": text,
                "parse_mode": parse_mode,
                "reply_to_message_id": reply_to,
                "disable_notification": _truthy(params.get("disable_notification")),
            }
        )
        return message

    def _get_updates(self, params: JSON, bot: JSON, token: str) -> list[JSON]:
        offset = int(params.get("offset") or 0)
        limit = min(max(int(params.get("limit") or 100), 1), 100)
        if offset < 0:  # keep only the last -offset updates, forgetting the rest
            self.updates = self.updates[offset:]
        elif offset:  # calling with offset confirms every earlier update
            self.updates = [u for u in self.updates if u["update_id"] >= offset]
        allowed = _json_list(params.get("allowed_updates"))
        pending = [u for u in self.updates if not allowed or any(k in u for k in allowed)]
        return pending[:limit]

    def _set_webhook(self, params: JSON, bot: JSON, token: str) -> bool:
        """As the Bot API checks it: an https URL on an allowed port, a secret_token of 1-256 safe chars."""
        url = str(params.get("url") or "")
        secret = params.get("secret_token")
        if url and not url.startswith("https://"):
            raise TelegramError(400, "Bad Request: bad webhook: An HTTPS URL must be provided for webhook")
        if secret is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", str(secret)):
            raise TelegramError(400, "Bad Request: secret token contains unallowed characters")
        options = ("max_connections", "allowed_updates", "drop_pending_updates")
        self.webhooks[token] = {
            "url": url,
            "secret_token": secret,
            **{k: params[k] for k in options if k in params},
        }
        return True

    def _delete_webhook(self, params: JSON, bot: JSON, token: str) -> bool:
        self.webhooks.pop(token, None)
        return True

    def _get_webhook_info(self, params: JSON, bot: JSON, token: str) -> JSON:
        hook = self.webhooks.get(token) or {}
        return {"url": hook.get("url", ""), "has_custom_certificate": False, "pending_update_count": 0}

    def _resolve_chat(self, chat_id: Any) -> JSON:
        ref = str(chat_id or "")
        if ref.startswith("@"):
            found = next((c for c in self.chats.values() if c.get("username") == ref[1:]), None)
        else:
            try:
                found = self.chats.get(int(ref))
            except ValueError:
                found = None
        if found is None:
            raise TelegramError(400, "Bad Request: chat not found")
        return found

    def _store_message(self, chat: JSON, text: str, sender: JSON) -> JSON:
        sent = self._sent.setdefault(chat["id"], {})
        message: JSON = {
            "message_id": len(sent) + 1,
            "from": sender,
            "chat": dict(chat),
            "date": int(time.time()),
            "text": text,
        }
        sent[message["message_id"]] = message
        return dict(message)


def _reply_target(params: JSON) -> int | None:
    reply = params.get("reply_parameters")
    if isinstance(reply, str):
        reply = json.loads(reply)
    if isinstance(reply, dict) and "message_id" in reply:
        return int(reply["message_id"])  # pyright: ignore[reportUnknownArgumentType]
    raw = params.get("reply_to_message_id")
    return int(raw) if raw not in (None, "") else None


def _truthy(value: Any) -> bool:
    return value is True or str(value).lower() in ("1", "true")


def _json_list(value: Any) -> list[str]:
    """allowed_updates arrives as a JSON array, or as its string form in forms/queries."""
    parsed: Any = json.loads(value) if isinstance(value, str) and value else value
    items = cast(list[Any], parsed) if isinstance(parsed, list) else []
    return [str(v) for v in items]
