"""In-memory fake of the Gmail API v1, served over loopback for google-api-python-client.

Mailboxes hold messages as raw MIME; `format=full` renders Gmail's payload tree (headers and
base64url part bodies) from it, and `messages/send` parses the `raw` it is given, so the connector
is exercised through the real client library, real MIME and Google's JSON error shape.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage, Message
from functools import cached_property
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

logger = logging.getLogger(__name__)

JSON = dict[str, Any]
READONLY = "https://www.googleapis.com/auth/gmail.readonly"
SEND = "https://www.googleapis.com/auth/gmail.send"
# Gmail accepts broader scopes too: any of these lets a call through.
_READ_SCOPES = {READONLY, "https://www.googleapis.com/auth/gmail.modify", "https://mail.google.com/"}
_SEND_SCOPES = {SEND, "https://www.googleapis.com/auth/gmail.compose", *_READ_SCOPES} - {READONLY}
SYSTEM_LABELS = ("INBOX", "SENT", "DRAFT", "SPAM", "TRASH", "UNREAD", "STARRED", "IMPORTANT")
_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}


@dataclass
class StoredMessage:
    id: str
    thread_id: str
    label_ids: list[str]
    raw: bytes  # RFC 5322 bytes, as Gmail keeps them

    @cached_property
    def mime(self) -> Message:
        return message_from_bytes(self.raw, policy=policy.default)

    def header(self, name: str) -> str:
        return str(self.mime.get(name, ""))


@dataclass
class Mailbox:
    email: str
    labels: dict[str, JSON] = field(default_factory=dict[str, JSON])  # id -> {id, name, type}
    messages: list[StoredMessage] = field(default_factory=list[StoredMessage])  # newest first

    def __post_init__(self) -> None:
        for label in SYSTEM_LABELS:
            self.labels.setdefault(label, {"id": label, "name": label, "type": "system"})


@dataclass
class Grant:
    mailbox: Mailbox
    scopes: set[str] | None = None  # None: every scope


class GoogleError(Exception):
    """Answered as Google's {"error": {code, message, status, errors: [{reason}]}} JSON."""

    def __init__(
        self, code: int, message: str, reason: str, headers: dict[str, str] | None = None, **extra: Any
    ) -> None:
        super().__init__(message)
        self.code = code
        self.headers = headers or {}
        error: JSON = {
            "code": code,
            "message": message,
            "errors": [{"message": message, "domain": "global", "reason": reason}],
            "status": _STATUS_NAMES.get(code, "UNKNOWN"),
            **extra,
        }
        self.body: JSON = {"error": error}


def _missing_scope(scope: str) -> GoogleError:
    return GoogleError(
        403,
        "Request had insufficient authentication scopes.",
        "insufficientPermissions",
        {"WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{scope}"'},
        details=[
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "ACCESS_TOKEN_SCOPE_INSUFFICIENT",
                "domain": "googleapis.com",
            }
        ],
    )


class FakeGmail:
    """Mailboxes behind access tokens, plus a Starlette app serving `/gmail/v1/users/me/...`."""

    def __init__(self, email: str = "ada@example.com") -> None:
        self.mailbox = Mailbox(email)  # where tokens accepted by `token_authority` land
        # Set to a fake OAuth server's check so the tokens it issues work here too.
        self.token_authority: Callable[[str], bool] | None = None
        self.grants: dict[str, Grant] = {}
        self.expired: set[str] = set()
        self.calls: list[tuple[str, str | None]] = []  # (operation, bearer token)
        self._faults: dict[str, deque[GoogleError]] = {}
        self._ids = itertools.count(0x18C0_0000_0000_0001)
        self._lock = threading.Lock()

    # --- test controls ---------------------------------------------------------

    def add_token(
        self, token: str, *, scopes: set[str] | None = None, mailbox: Mailbox | None = None
    ) -> None:
        """Let `token` open `mailbox` (the default one) with `scopes` (None: all of them)."""
        with self._lock:
            self.grants[token] = Grant(mailbox or self.mailbox, scopes)

    def expire_token(self, token: str) -> None:
        """From now on `token` gets 401, as an expired or revoked Google access token does."""
        with self._lock:
            self.expired.add(token)

    def add_label(self, name: str, *, mailbox: Mailbox | None = None) -> str:
        box = mailbox or self.mailbox
        with self._lock:
            label_id = f"Label_{len(box.labels) + 1}"
            box.labels[label_id] = {"id": label_id, "name": name, "type": "user"}
        return label_id

    def deliver(
        self,
        *,
        sender: str,
        subject: str,
        text: str,
        to: str | None = None,
        html: str | None = None,
        labels: tuple[str, ...] = ("INBOX", "UNREAD"),
        charset: str = "utf-8",
        mailbox: Mailbox | None = None,
    ) -> str:
        """Put a message in the mailbox (newest first) and return its id."""
        box = mailbox or self.mailbox
        mime = EmailMessage()
        mime["From"], mime["To"], mime["Subject"] = sender, to or box.email, subject
        mime["Date"] = "Tue, 14 Nov 2023 09:30:00 +0000"
        mime.set_content(text, charset=charset)
        if html is not None:
            mime.add_alternative(html, subtype="html")
        with self._lock:
            return self._store(box, mime.as_bytes(), list(labels)).id

    def rate_limit_next(
        self,
        operation: str,
        *,
        status: int = 429,
        reason: str = "rateLimitExceeded",
        retry_after: int | None = None,
        message: str = "User-rate limit exceeded.",
        times: int = 1,
    ) -> None:
        """Answer the next `times` calls of `operation` (`messages.list`, ...) with a rate limit."""
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        self._queue(operation, GoogleError(status, message, reason, headers), times)

    def fail_next(
        self,
        operation: str,
        *,
        status: int = 500,
        reason: str = "backendError",
        message: str = "Internal error encountered.",
        times: int = 1,
    ) -> None:
        """Answer the next `times` calls of `operation` with this Google error."""
        self._queue(operation, GoogleError(status, message, reason), times)

    def _queue(self, operation: str, fault: GoogleError, times: int) -> None:
        with self._lock:
            self._faults.setdefault(operation, deque()).extend([fault] * times)

    def operations(self, operation: str) -> list[str | None]:
        """Tokens presented on each call of `operation`, in order."""
        with self._lock:
            return [token for op, token in self.calls if op == operation]

    # --- HTTP --------------------------------------------------------------------

    @cached_property
    def app(self) -> Starlette:
        """The ASGI app; serve it with `run_asgi_on_loopback` and point the client at its URL."""
        base = "/gmail/v1/users/{user}"
        return Starlette(
            routes=[
                Route(f"{base}/profile", self._endpoint("getProfile", _READ_SCOPES), methods=["GET"]),
                Route(f"{base}/labels", self._endpoint("labels.list", _READ_SCOPES), methods=["GET"]),
                Route(f"{base}/messages", self._endpoint("messages.list", _READ_SCOPES), methods=["GET"]),
                Route(
                    f"{base}/messages/send", self._endpoint("messages.send", _SEND_SCOPES), methods=["POST"]
                ),
                Route(
                    f"{base}/messages/{{id}}", self._endpoint("messages.get", _READ_SCOPES), methods=["GET"]
                ),
            ]
        )

    def _endpoint(self, operation: str, allowed: set[str]) -> Callable[[Request], Any]:
        handlers: dict[str, Callable[[Request, Grant, JSON], JSON]] = {
            "getProfile": self._profile,
            "labels.list": self._labels,
            "messages.list": self._list,
            "messages.get": self._get,
            "messages.send": self._send,
        }
        handler = handlers[operation]
        needed = SEND if operation == "messages.send" else READONLY

        async def endpoint(request: Request) -> JSONResponse:
            token = _bearer(request.headers.get("authorization"))
            body: JSON = {}
            if request.method == "POST":
                try:
                    body = json.loads(await request.body() or b"{}")
                except ValueError:
                    body = {"raw": None}
            with self._lock:
                self.calls.append((operation, token))
                queued = self._faults.get(operation)
                try:
                    if queued:
                        raise queued.popleft()
                    grant = self._authenticate(token)
                    if request.path_params["user"] != "me":
                        raise GoogleError(403, "Delegation denied", "forbidden")
                    if grant.scopes is not None and not grant.scopes & allowed:
                        raise _missing_scope(needed)
                    answer = handler(request, grant, body)
                except GoogleError as exc:
                    logger.debug("gmail %s -> %d", operation, exc.code)
                    return JSONResponse(exc.body, status_code=exc.code, headers=exc.headers)
            return JSONResponse(answer)

        return endpoint

    def _authenticate(self, token: str | None) -> Grant:
        if not token:
            raise GoogleError(401, "Request is missing required authentication credential.", "required")
        grant = self.grants.get(token)
        if grant is None and self.token_authority is not None and self.token_authority(token):
            grant = Grant(self.mailbox)  # issued by the (fake) OAuth server, as Google's tokens are
        if grant is None or token in self.expired:
            raise GoogleError(
                401,
                "Request had invalid authentication credentials.",
                "authError",
                {"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/", error="invalid_token"'},
            )
        return grant

    # --- API methods (called with the lock held) ---------------------------------

    def _profile(self, request: Request, grant: Grant, body: JSON) -> JSON:
        box = grant.mailbox
        return {"emailAddress": box.email, "messagesTotal": len(box.messages), "historyId": "1000"}

    def _labels(self, request: Request, grant: Grant, body: JSON) -> JSON:
        return {"labels": [dict(label) for label in grant.mailbox.labels.values()]}

    def _list(self, request: Request, grant: Grant, body: JSON) -> JSON:
        query = request.query_params
        try:
            limit = int(query.get("maxResults", "100"))
        except ValueError:
            limit = 0
        if not 1 <= limit <= 500:
            raise GoogleError(400, "Invalid maxResults", "invalidArgument")
        token = query.get("pageToken", "")
        if token and not token.isdigit():
            raise GoogleError(400, "Invalid pageToken", "invalidArgument")
        offset = int(token or 0)
        wanted = query.getlist("labelIds")
        terms = query.get("q", "").lower().split()
        matches = [
            m for m in grant.mailbox.messages if set(wanted) <= set(m.label_ids) and _matches(m, terms)
        ]
        page = matches[offset : offset + limit]
        answer: JSON = {"resultSizeEstimate": len(matches)}
        if page:  # like Gmail, no `messages` key at all when nothing matches
            answer["messages"] = [{"id": m.id, "threadId": m.thread_id} for m in page]
        if offset + limit < len(matches):
            answer["nextPageToken"] = str(offset + limit)
        return answer

    def _get(self, request: Request, grant: Grant, body: JSON) -> JSON:
        message_id = request.path_params["id"]
        found = next((m for m in grant.mailbox.messages if m.id == message_id), None)
        if found is None:
            raise GoogleError(404, "Requested entity was not found.", "notFound")
        fmt = request.query_params.get("format", "full")
        if fmt not in ("full", "metadata", "minimal", "raw"):
            raise GoogleError(400, f"Invalid value for format: {fmt}", "invalidArgument")
        answer: JSON = {
            "id": found.id,
            "threadId": found.thread_id,
            "labelIds": list(found.label_ids),
            "snippet": _snippet(found.mime),
            "sizeEstimate": len(found.raw),
            "historyId": "1000",
            "internalDate": "1699954200000",
        }
        if fmt == "raw":
            answer["raw"] = base64.urlsafe_b64encode(found.raw).decode()
        elif fmt == "metadata":
            answer["payload"] = {"mimeType": found.mime.get_content_type(), "headers": _headers(found.mime)}
        elif fmt == "full":
            answer["payload"] = _payload(found.mime, "")
        return answer

    def _send(self, request: Request, grant: Grant, body: JSON) -> JSON:
        encoded = body.get("raw")
        if not isinstance(encoded, str) or not encoded:
            raise GoogleError(
                400,
                "'raw' RFC822 payload message string or uploading message via /upload/* URL required",
                "invalidArgument",
            )
        try:
            raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        except (binascii.Error, ValueError):
            raise GoogleError(400, "Invalid value for ByteString", "invalidArgument") from None
        mime = message_from_bytes(raw, policy=policy.default)
        if not any(mime.get(h) for h in ("To", "Cc", "Bcc")):
            raise GoogleError(400, "Recipient address required", "invalidArgument")
        if "From" not in mime:
            mime["From"] = grant.mailbox.email  # Gmail fills in the authenticated sender
        stored = self._store(grant.mailbox, mime.as_bytes(), ["SENT"])
        return {"id": stored.id, "threadId": stored.thread_id, "labelIds": ["SENT"]}

    def _store(self, box: Mailbox, raw: bytes, labels: list[str]) -> StoredMessage:
        message_id = f"{next(self._ids):x}"
        stored = StoredMessage(message_id, message_id, labels, raw)
        box.messages.insert(0, stored)
        return stored

    def sent(self, mailbox: Mailbox | None = None) -> list[StoredMessage]:
        """Messages sent through the API, newest first."""
        with self._lock:
            return [m for m in (mailbox or self.mailbox).messages if "SENT" in m.label_ids]


def _matches(message: StoredMessage, terms: list[str]) -> bool:
    """A small subset of Gmail search: bare words and from:/subject: prefixes, substring matches."""
    subject, sender = message.header("Subject").lower(), message.header("From").lower()
    for term in terms:
        key, _, value = term.partition(":")
        if key == "from" and value:
            ok = value in sender
        elif key == "subject" and value:
            ok = value in subject
        else:
            ok = term in subject or term in sender
        if not ok:
            return False
    return True


def _headers(part: Message) -> list[JSON]:
    return [{"name": name, "value": str(value)} for name, value in part.items()]


def _payload(part: Message, part_id: str) -> JSON:
    """Gmail's MessagePart tree: partId, mimeType, filename, headers, body {size, data}, parts."""
    node: JSON = {
        "partId": part_id,
        "mimeType": part.get_content_type(),
        "filename": part.get_filename() or "",
        "headers": _headers(part),
    }
    if part.is_multipart():
        payload = part.get_payload()
        assert isinstance(payload, list)
        children = [child for child in payload if isinstance(child, Message)]
        prefix = f"{part_id}." if part_id else ""
        node["body"] = {"size": 0}
        node["parts"] = [_payload(child, f"{prefix}{i}") for i, child in enumerate(children)]
    else:
        data = part.get_payload(decode=True)
        assert isinstance(data, bytes)
        node["body"] = {"size": len(data), "data": base64.urlsafe_b64encode(data).decode()}
    return node


def _snippet(message: Message) -> str:
    for part in message.walk():
        if part.get_content_type() == "text/plain" and not part.get_filename():
            data = part.get_payload(decode=True)
            if isinstance(data, bytes):
                text = data.decode(part.get_content_charset() or "utf-8", errors="replace")
                return " ".join(text.split())[:200]
    return ""


def _bearer(header: str | None) -> str | None:
    if header and header.lower().startswith("bearer "):
        return header[7:].strip() or None
    return None
