"""In-memory fake of the Slack Web API, served over loopback for slack_sdk.

It answers the way Slack does (HTTP 200 with {"ok": false, "error": ...} for
API errors, HTTP 429 + Retry-After for rate limits) so connector code is
tested against real slack_sdk behaviour rather than hand-written mocks.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import logging
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.fakes.loopback import request_params

logger = logging.getLogger(__name__)

JSON = dict[str, Any]
BASE_EPOCH = 1699276800


@dataclass
class SlackToken:
    """What Slack knows about a token: its workspace, bot user and granted scopes."""

    team: str = "T123"
    team_name: str = "Acme"
    bot_user: str = "U0BOT"
    scopes: list[str] | None = None  # None: every scope is granted


@dataclass
class _Fault:
    status: int
    body: JSON
    headers: dict[str, str] = field(default_factory=dict[str, str])


class SlackError(Exception):
    """An API-level error, answered as HTTP 200 {"ok": false, ...} like Slack does."""

    def __init__(self, error: str, **extra: Any) -> None:
        super().__init__(error)
        self.body: JSON = {"ok": False, "error": error, **extra}


class FakeSlack:
    """Slack workspace state plus a Starlette app serving `/api/<method>`."""

    def __init__(self) -> None:
        # Set to a fake OAuth server's check so the tokens it issues work here too.
        self.token_authority: Callable[[str], bool] | None = None
        self.tokens: dict[str, SlackToken] = {}
        self.revoked: set[str] = set()
        self.channels: dict[str, JSON] = {}
        self.messages: list[JSON] = []
        self.calls: list[tuple[str, str | None]] = []
        self._faults: dict[str, deque[_Fault]] = {}
        self._ts_counter = itertools.count(100)
        self._lock = threading.Lock()
        self._methods: dict[str, Callable[[JSON, SlackToken, str], JSON]] = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._chat_post_message,
            "conversations.list": self._conversations_list,
            "chat.update": self._chat_update,
            "reactions.add": self._reactions_add,
            "files.getUploadURLExternal": self._files_get_upload_url,
            "files.completeUploadExternal": self._files_complete_upload,
        }
        self.reactions: list[JSON] = []
        self.files: dict[str, JSON] = {}  # file id -> {filename, content, channel, title}
        self._upload_base = ""
        self.add_channel("C01234567", "general", num_members=42, topic="Company-wide")
        self.add_channel("C07654321", "random", num_members=17, topic="Non-work banter")

    # --- test controls -------------------------------------------------------

    def add_token(
        self,
        token: str,
        team: str = "T123",
        team_name: str = "Acme",
        bot_user: str = "U0BOT",
        scopes: list[str] | None = None,
    ) -> SlackToken:
        """Make `token` valid; `scopes=None` grants everything."""
        info = SlackToken(team=team, team_name=team_name, bot_user=bot_user, scopes=scopes)
        with self._lock:
            self.tokens[token] = info
            self.revoked.discard(token)
        return info

    def revoke_token(self, token: str) -> None:
        """Later calls with `token` get `token_revoked`, as after an app uninstall."""
        with self._lock:
            self.revoked.add(token)

    def add_channel(
        self,
        channel_id: str,
        name: str,
        *,
        is_private: bool = False,
        is_member: bool = True,
        is_archived: bool = False,
        num_members: int = 1,
        topic: str = "",
    ) -> JSON:
        """Create (or replace) a channel shaped like a conversations.list entry."""
        channel: JSON = {
            "id": channel_id,
            "name": name,
            "name_normalized": name,
            "is_channel": True,
            "is_group": False,
            "is_im": False,
            "is_private": is_private,
            "is_archived": is_archived,
            "is_member": is_member,
            "num_members": num_members,
            "created": BASE_EPOCH,
            "topic": {"value": topic, "creator": "", "last_set": 0},
            "purpose": {"value": "", "creator": "", "last_set": 0},
        }
        with self._lock:
            self.channels[channel_id] = channel
        return channel

    def rate_limit_next(self, method: str, retry_after: int = 1, times: int = 1) -> None:
        """Answer the next `times` calls of `method` with HTTP 429 + Retry-After."""
        body: JSON = {"ok": False, "error": "ratelimited"}
        self._queue(method, _Fault(429, body, {"Retry-After": str(retry_after)}), times)

    def fail_next(
        self,
        method: str,
        status: int = 500,
        times: int = 1,
        error: str = "internal_error",
    ) -> None:
        """Answer the next `times` calls of `method` with an HTTP 5xx."""
        self._queue(method, _Fault(status, {"ok": False, "error": error}), times)

    def break_next(self, method: str, body: JSON, status: int = 200, times: int = 1) -> None:
        """Answer the next `times` calls of `method` with exactly `body`, e.g. a success without `ts`."""
        self._queue(method, _Fault(status, body), times)

    def _queue(self, method: str, fault: _Fault, times: int) -> None:
        with self._lock:
            self._faults.setdefault(method, deque()).extend([fault] * times)

    # --- HTTP ----------------------------------------------------------------

    @cached_property
    def app(self) -> Starlette:
        """The ASGI app; serve it with `run_asgi_on_loopback`."""
        endpoint: Callable[[Request], Awaitable[JSONResponse]] = self._endpoint
        return Starlette(
            routes=[
                Route("/api/{method}", endpoint, methods=["GET", "POST"]),
                Route("/upload/{file_id}", self._upload, methods=["POST"]),
            ]
        )

    async def _upload(self, request: Request) -> JSONResponse:
        """The pre-signed upload URL of files.getUploadURLExternal (no token: the URL is the secret)."""
        file_id = request.path_params["file_id"]
        body = await request.body()
        with self._lock:
            if file_id not in self.files:
                return JSONResponse({"ok": False}, status_code=404)
            self.files[file_id]["content"] = body
        return JSONResponse({"ok": True})

    async def _endpoint(self, request: Request) -> JSONResponse:
        method: str = request.path_params["method"]
        params = await request_params(request)
        self._upload_base = str(request.base_url).rstrip("/")
        token = _bearer(request.headers.get("authorization")) or params.pop("token", None)
        with self._lock:
            self.calls.append((method, token))
            queued = self._faults.get(method)
            fault = queued.popleft() if queued else None
            if fault is not None:
                return JSONResponse(fault.body, status_code=fault.status, headers=fault.headers)
            headers: dict[str, str] = {}
            try:
                handler = self._methods.get(method)
                if handler is None:
                    raise SlackError("unknown_method")
                valid, info = self._authenticate(token)
                if info.scopes is not None:
                    headers["X-OAuth-Scopes"] = ",".join(info.scopes)
                body = handler(params, info, valid)
            except SlackError as exc:
                body = exc.body
        logger.debug("slack %s -> %s", method, body.get("error", "ok"))
        return JSONResponse(body, headers=headers)

    def _authenticate(self, token: str | None) -> tuple[str, SlackToken]:
        if not token:
            raise SlackError("not_authed")
        if token in self.revoked:
            raise SlackError("token_revoked")
        info = self.tokens.get(token)
        if info is None and self.token_authority is not None and self.token_authority(token):
            info = SlackToken()  # issued by the (fake) OAuth server, as real Slack tokens are
        if info is None:
            raise SlackError("invalid_auth")
        return token, info

    # --- API methods (called with the lock held) -----------------------------

    def _auth_test(self, params: JSON, info: SlackToken, token: str) -> JSON:
        return {
            "ok": True,
            "url": "https://acme.slack.com/",
            "team": info.team_name,
            "user": "tendril-bot",
            "team_id": info.team,
            "user_id": info.bot_user,
            "bot_id": "B0BOT",
        }

    def _chat_post_message(self, params: JSON, info: SlackToken, token: str) -> JSON:
        _require_scope(info, "chat:write")
        channel = self._resolve_channel(str(params.get("channel") or ""))
        if channel is None or (channel["is_private"] and not channel["is_member"]):
            raise SlackError("channel_not_found")
        if channel["is_archived"]:
            raise SlackError("is_archived")
        public_ok = info.scopes is None or "chat:write.public" in info.scopes
        if not channel["is_member"] and not public_ok:
            raise SlackError("not_in_channel")
        text = params.get("text")
        blocks = params.get("blocks")
        if not text and not blocks and not params.get("attachments"):
            raise SlackError("no_text")
        ts = self._next_ts()
        message: JSON = {
            "type": "message",
            "text": text or "",
            "user": info.bot_user,
            "bot_id": "B0BOT",
            "team": info.team,
            "ts": ts,
        }
        if params.get("thread_ts"):
            message["thread_ts"] = str(params["thread_ts"])
        if blocks:
            message["blocks"] = blocks
        self.messages.append(
            {
                "token": token,
                "channel": channel["id"],
                "text": text,
                "thread_ts": message.get("thread_ts"),
                "blocks": blocks,
                "ts": ts,
            }
        )
        return {"ok": True, "channel": channel["id"], "ts": ts, "message": message}

    def _find_message(self, channel_ref: str, ts: str) -> JSON:
        channel = self._resolve_channel(channel_ref)
        if channel is None:
            raise SlackError("channel_not_found")
        for message in self.messages:
            if message["channel"] == channel["id"] and message["ts"] == ts:
                return message
        raise SlackError("message_not_found")

    def _chat_update(self, params: JSON, info: SlackToken, token: str) -> JSON:
        _require_scope(info, "chat:write")
        message = self._find_message(str(params.get("channel") or ""), str(params.get("ts") or ""))
        if not params.get("text") and not params.get("blocks"):
            raise SlackError("no_text")
        message["text"] = params.get("text")
        return {"ok": True, "channel": message["channel"], "ts": message["ts"], "text": message["text"]}

    def _reactions_add(self, params: JSON, info: SlackToken, token: str) -> JSON:
        _require_scope(info, "reactions:write")
        message = self._find_message(str(params.get("channel") or ""), str(params.get("timestamp") or ""))
        name = str(params.get("name") or "")
        if not name or ":" in name:
            raise SlackError("invalid_name")
        reaction = {"channel": message["channel"], "ts": message["ts"], "name": name}
        if reaction in self.reactions:
            raise SlackError("already_reacted")
        self.reactions.append(reaction)
        return {"ok": True}

    def _files_get_upload_url(self, params: JSON, info: SlackToken, token: str) -> JSON:
        _require_scope(info, "files:write")
        if not params.get("filename") or not str(params.get("length") or "").isdigit():
            raise SlackError("invalid_arguments")
        file_id = f"F{len(self.files) + 1:08d}"
        self.files[file_id] = {"filename": params["filename"], "content": None, "channel": None}
        return {"ok": True, "upload_url": f"{self._upload_base}/upload/{file_id}", "file_id": file_id}

    def _files_complete_upload(self, params: JSON, info: SlackToken, token: str) -> JSON:
        _require_scope(info, "files:write")
        files = params.get("files")
        listed = json.loads(files) if isinstance(files, str) else files or []
        channel_ref = str(params.get("channel_id") or params.get("channels") or "")
        channel = self._resolve_channel(channel_ref) if channel_ref else None
        if channel_ref and channel is None:
            raise SlackError("channel_not_found")
        completed = []
        for item in listed:
            stored = self.files.get(item["id"])
            if stored is None or stored["content"] is None:
                raise SlackError("file_not_found")
            stored["channel"] = channel["id"] if channel else None
            stored["title"] = item.get("title")
            completed.append({"id": item["id"], "name": stored["filename"], "title": item.get("title")})
        return {"ok": True, "files": completed}

    def _conversations_list(self, params: JSON, info: SlackToken, token: str) -> JSON:
        types = str(params.get("types") or "public_channel").split(",")
        if "public_channel" in types:
            _require_scope(info, "channels:read")
        if "private_channel" in types:
            _require_scope(info, "groups:read")
        try:
            limit = int(params.get("limit") or 100)
        except ValueError:
            raise SlackError("invalid_limit") from None
        if not 1 <= limit <= 1000:
            raise SlackError("invalid_limit")
        offset = _decode_cursor(str(params.get("cursor") or ""))
        exclude_archived = str(params.get("exclude_archived", "")).lower() in (
            "1",
            "true",
        )
        visible = [
            dict(c)
            for c in self.channels.values()
            if ("private_channel" if c["is_private"] else "public_channel") in types
            and (c["is_member"] or not c["is_private"])
            and not (exclude_archived and c["is_archived"])
        ]
        page = visible[offset : offset + limit]
        more = offset + limit < len(visible)
        next_cursor = _encode_cursor(offset + limit) if more else ""
        return {
            "ok": True,
            "channels": page,
            "response_metadata": {"next_cursor": next_cursor},
        }

    def _resolve_channel(self, ref: str) -> JSON | None:
        if ref in self.channels:
            return self.channels[ref]
        name = ref.removeprefix("#")
        return next((c for c in self.channels.values() if c["name"] == name), None)

    def _next_ts(self) -> str:
        n = next(self._ts_counter)
        return f"{BASE_EPOCH + n // 1_000_000}.{n % 1_000_000:06d}"


def _bearer(header: str | None) -> str | None:
    if header and header.lower().startswith("bearer "):
        return header[7:].strip() or None
    return None


def _require_scope(info: SlackToken, scope: str) -> None:
    if info.scopes is not None and scope not in info.scopes:
        raise SlackError("missing_scope", needed=scope, provided=",".join(info.scopes))


def _encode_cursor(offset: int) -> str:
    return base64.b64encode(f"offset:{offset}".encode()).decode()


def _decode_cursor(cursor: str) -> int:
    if not cursor:
        return 0
    try:
        kind, _, value = base64.b64decode(cursor, validate=True).decode().partition(":")
        if kind == "offset" and value.isdigit():
            return int(value)
    except (binascii.Error, UnicodeDecodeError):
        pass
    raise SlackError("invalid_cursor")
