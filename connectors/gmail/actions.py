"""Gmail through Google's official google-api-python-client (synchronous httplib2, run on threads)."""

from __future__ import annotations

import base64
import binascii
import codecs
import json
import re
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from email.message import EmailMessage, Message
from email.utils import getaddresses
from typing import Any, Literal
from urllib.parse import urlsplit

import anyio
import httplib2
from google.oauth2.credentials import Credentials
from google_auth_httplib2 import AuthorizedHttp
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError
from pydantic import BaseModel, ConfigDict, Field, field_validator

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

READONLY = "https://www.googleapis.com/auth/gmail.readonly"
SEND = "https://www.googleapis.com/auth/gmail.send"
BODY_TEXT_LIMIT = 100_000

_RATE_REASONS = {"rateLimitExceeded", "userRateLimitExceeded"}
_SCOPE_REASONS = {"insufficientPermissions", "ACCESS_TOKEN_SCOPE_INSUFFICIENT"}
# Gmail's 400 messages name the offending part in prose ("Invalid To header"); map it to our field.
_FIELD_HINTS = {
    "bcc header": "bcc",
    "cc header": "cc",
    "to header": "to",
    "recipient address": "to",
    "id value": "message_id",
    "pagetoken": "page_token",
    "label": "label_ids",
}
_EMAIL = re.compile(r"[^@\s<>,;]+@[^@\s<>,;]+\.[^@\s<>,;]+")


class Gmail:
    """The `users` resource of a built service, and a way to execute its blocking requests."""

    def __init__(self, service: Any) -> None:
        self._service = service
        self.users: Any = service.users()

    async def run(self, request: Any) -> dict[str, Any]:
        # httplib2 blocks: a worker thread keeps the event loop free. If the runtime's deadline
        # cancels us, the thread is abandoned and ends at its socket timeout.
        result = await anyio.to_thread.run_sync(request.execute, abandon_on_cancel=True)
        return dict(result or {})

    def close(self) -> None:
        self._service.close()


def _build(access_token: str, options: ClientOptions) -> Gmail:
    # Only the access token, no refresh token or client secret, so google-auth can never refresh
    # by itself. Tendril refreshes: the hub asks auth/tokens.py's TokenKeeper for fresh credentials
    # before every action, and it refreshes once for all concurrent callers (and processes), then
    # stores the new token. A second refresher in here would race it and bypass that store.
    credentials = Credentials(token=access_token)
    # AuthorizedHttp answers a 401 by refreshing; with nothing to refresh with, let the 401 surface.
    # httplib2 takes the timeout only when constructed; `options.http_transport` (httpx) can't apply.
    raw_http = httplib2.Http(timeout=options.timeout)
    raw_http.follow_redirects = False  # never replay the bearer header to another location
    http = AuthorizedHttp(credentials, http=raw_http, refresh_status_codes=())
    service = build(
        "gmail",
        "v1",
        http=http,
        static_discovery=True,  # the bundled discovery document: no network call to build
        cache_discovery=False,
        client_options={"api_endpoint": options.api_base.rstrip("/") + "/"},
    )
    return Gmail(service)


# Per call: the Gmail service rides on httplib2, which is not safe to share between threads.
@connector.client_per_call_only
@asynccontextmanager
async def open_client(credentials: Mapping[str, str], options: ClientOptions) -> AsyncIterator[Gmail]:
    gmail = await anyio.to_thread.run_sync(_build, credentials["access_token"], options)
    try:
        yield gmail
    finally:
        gmail.close()


@connector.verifier
async def verify(client: Gmail) -> dict[str, Any]:
    """users.getProfile: proves the token works and names the mailbox."""
    profile = await client.run(client.users.getProfile(userId="me"))
    return {"emailAddress": profile.get("emailAddress")}


# -- errors ---------------------------------------------------------------------------------------
@connector.error_mapper
def map_gmail_error(exc: BaseException) -> ConnectorError | None:
    if isinstance(exc, HttpError):
        return _from_http_error(exc)
    if isinstance(exc, TimeoutError):
        return UpstreamTimeout("Gmail did not answer in time")
    if isinstance(exc, OSError | httplib2.HttpLib2Error):
        return UpstreamError("could not reach Gmail", retryable=True)
    return None


def _from_http_error(exc: HttpError) -> ConnectorError:
    status = int(exc.resp.status)
    error = _error_body(exc.content)
    message = str(error.get("message") or exc.reason or f"HTTP {status}")
    reasons = _reasons(error)
    if status == 401:
        return InvalidCredentials("Gmail refused the access token: it expired or was revoked")
    if status == 429 or (status == 403 and reasons & _RATE_REASONS):
        wait = _retry_after(exc.resp.get("retry-after"), message)
        return RateLimited(f"Gmail rate limit reached; retry after {wait:g}s", retry_after=wait)
    if status == 403 and reasons & _SCOPE_REASONS:
        return MissingScopes([_needed_scope(exc.uri)], provider="Gmail")
    if status == 403:
        return Forbidden(f"Gmail refused the request: {message}")
    if status == 404:
        return NotFound(f"Gmail found no such item: {message}")
    if status == 400:
        lowered = message.lower()
        field = next((f for hint, f in _FIELD_HINTS.items() if hint in lowered), None)
        return InvalidInput(f"Gmail refused the input: {message}", field=field)
    return UpstreamError(f"Gmail error {status}: {message}", status=status, retryable=status >= 500)


def _error_body(content: bytes) -> dict[str, Any]:
    try:
        error = json.loads(content.decode("utf-8")).get("error")
    except (ValueError, AttributeError):
        return {}
    return error if isinstance(error, dict) else {}


def _reasons(error: Mapping[str, Any]) -> set[str]:
    """Reasons from both Google shapes: legacy `errors[].reason` and `details[]` ErrorInfo."""
    items = [*(error.get("errors") or []), *(error.get("details") or [])]
    return {str(item["reason"]) for item in items if isinstance(item, dict) and item.get("reason")}


def _needed_scope(uri: str | None) -> str:
    """Gmail's scope error doesn't name the scope; the refused call (its URL) tells which one."""
    return SEND if urlsplit(uri or "").path.endswith("/messages/send") else READONLY


def _retry_after(header: str | None, message: str) -> float:
    """Retry-After if sent; else Gmail's own "Retry after <RFC 3339 time>"; else a short backoff."""
    if header:
        return retry_after_seconds(header)
    match = re.search(r"[Rr]etry after (\d{4}-\d\d-\d\dT[\d:.]+Z)", message)
    if match:
        when = datetime.fromisoformat(match.group(1))
        return max(0.0, (when - datetime.now(UTC)).total_seconds())
    return 1.0


# -- list_labels ----------------------------------------------------------------------------------
class ListLabelsInput(BaseModel):
    pass


class Label(BaseModel):
    id: str = Field(description="Label id, usable in list_messages `label_ids` (INBOX, Label_12...).")
    name: str = Field(description="Label name as shown in Gmail.")
    type: str = Field(description="`system` for Gmail's own labels, `user` for labels the user made.")


class ListLabelsOutput(BaseModel):
    labels: list[str] = Field(description="Names of every label in the mailbox.")
    label_details: list[Label] = Field(description="Each label's id, name and type.")


@connector.action(Hints(read_only=True), scopes=(READONLY,))
async def list_labels(ctx: ActionContext[Gmail], params: ListLabelsInput) -> ListLabelsOutput:
    """List the labels (INBOX, SENT, user labels...) of the connected Gmail mailbox."""
    response = await ctx.client.run(ctx.client.users.labels().list(userId="me"))
    details = [
        Label(id=str(label["id"]), name=str(label.get("name", "")), type=str(label.get("type", "user")))
        for label in response.get("labels", [])
    ]
    return ListLabelsOutput(labels=[label.name for label in details], label_details=details)


# -- list_messages --------------------------------------------------------------------------------
class ListMessagesInput(BaseModel):
    max_results: int = Field(10, ge=1, le=500, description="Most messages to return in this page.")
    query: str | None = Field(
        None,
        max_length=2000,
        description="Gmail search query, as typed in Gmail's search box (`from:ada subject:invoice`).",
    )
    label_ids: list[str] | None = Field(
        None, max_length=20, description="Only messages carrying every one of these label ids (INBOX...)."
    )
    page_token: str | None = Field(
        None, max_length=500, description="`next_page_token` from a previous page, to continue."
    )


class MessageRef(BaseModel):
    id: str = Field(description="Message id, for get_message.")
    thread_id: str = Field(description="Id of the conversation the message belongs to.")


class ListMessagesOutput(BaseModel):
    messages: list[MessageRef] = Field(description="Matching messages in this page, newest first.")
    next_page_token: str | None = Field(None, description="Pass as `page_token` for more; null at the end.")
    result_size_estimate: int = Field(description="Gmail's estimate of how many messages match in all.")


@connector.action(Hints(read_only=True), scopes=(READONLY,))
async def list_messages(ctx: ActionContext[Gmail], params: ListMessagesInput) -> ListMessagesOutput:
    """Search or list messages in the mailbox (ids only; use get_message for the content).

    Accepts Gmail's search syntax in `query` and label ids in `label_ids`, one page at a time.
    """
    request = ctx.client.users.messages().list(
        userId="me",
        maxResults=params.max_results,
        q=params.query,
        labelIds=params.label_ids,
        pageToken=params.page_token,
    )
    response = await ctx.client.run(request)
    return ListMessagesOutput(
        messages=[
            MessageRef(id=str(m["id"]), thread_id=str(m.get("threadId", "")))
            for m in response.get("messages", [])
        ],
        next_page_token=response.get("nextPageToken") or None,
        result_size_estimate=int(response.get("resultSizeEstimate", 0)),
    )


# -- get_message ----------------------------------------------------------------------------------
class GetMessageInput(BaseModel):
    message_id: str = Field(
        pattern=r"^[A-Za-z0-9_-]{1,100}$", description="Id of the message (from list_messages)."
    )
    format: Literal["full", "metadata", "minimal"] = Field(
        "full",
        description="`full`: headers and text body; `metadata`: headers only; "
        "`minimal`: ids, labels and snippet.",
    )


class GetMessageOutput(BaseModel):
    # `from` is a Python keyword: the field is `from_` in code and `from` everywhere else.
    model_config = ConfigDict(serialize_by_alias=True)

    id: str = Field(description="Message id.")
    thread_id: str = Field(description="Id of the conversation the message belongs to.")
    label_ids: list[str] = Field(description="Label ids on the message (INBOX, UNREAD, SENT...).")
    snippet: str = Field(description="Gmail's short plain-text preview of the message.")
    subject: str | None = Field(None, description="Subject header; null with format `minimal`.")
    from_: str | None = Field(None, alias="from", description="From header; null with format `minimal`.")
    to: str | None = Field(None, description="To header; null with format `minimal`.")
    date: str | None = Field(None, description="Date header as sent; null with format `minimal`.")
    body_text: str | None = Field(
        None, description="The decoded text/plain body (format `full` only); null when there is none."
    )
    body_truncated: bool = Field(
        False, description=f"True when body_text was cut at {BODY_TEXT_LIMIT} characters."
    )


@connector.action(Hints(read_only=True), scopes=(READONLY,))
async def get_message(ctx: ActionContext[Gmail], params: GetMessageInput) -> GetMessageOutput:
    """Read one message: its headers (subject, from, to, date), labels and plain-text body."""
    request = ctx.client.users.messages().get(userId="me", id=params.message_id, format=params.format)
    message = await ctx.client.run(request)
    payload: dict[str, Any] = message.get("payload") or {}
    header = _header_lookup(payload.get("headers") or [])
    text = _plain_text(payload) if params.format == "full" else None
    return GetMessageOutput.model_validate(
        {
            "id": str(message["id"]),
            "thread_id": str(message.get("threadId", "")),
            "label_ids": [str(label) for label in message.get("labelIds", [])],
            "snippet": str(message.get("snippet", "")),
            "subject": header("subject"),
            "from": header("from"),
            "to": header("to"),
            "date": header("date"),
            "body_text": text[:BODY_TEXT_LIMIT] if text is not None else None,
            "body_truncated": text is not None and len(text) > BODY_TEXT_LIMIT,
        }
    )


def _header_lookup(headers: Sequence[Mapping[str, Any]]) -> Callable[[str], str | None]:
    values = {str(h.get("name", "")).lower(): str(h.get("value", "")) for h in reversed(headers)}
    return values.get


def _plain_text(part: Mapping[str, Any]) -> str | None:
    """The first text/plain part that is not an attachment, depth first (as mail clients read it)."""
    data = (part.get("body") or {}).get("data")
    if part.get("mimeType") == "text/plain" and data and not part.get("filename"):
        try:
            raw = base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
        except (binascii.Error, ValueError):
            return None
        return raw.decode(_charset(part), errors="replace")
    for child in part.get("parts") or []:
        text = _plain_text(child)
        if text is not None:
            return text
    return None


def _charset(part: Mapping[str, Any]) -> str:
    probe = Message()
    probe["Content-Type"] = _header_lookup(part.get("headers") or [])("content-type") or "text/plain"
    charset = probe.get_content_charset() or "utf-8"
    try:
        codecs.lookup(charset)
    except LookupError:
        return "utf-8"
    return charset


# -- send_email -----------------------------------------------------------------------------------
class SendEmailInput(BaseModel):
    to: str = Field(
        min_length=3,
        max_length=10_000,
        description="Recipient address(es), comma-separated (`ada@example.com, Bob <bob@example.org>`).",
    )
    subject: str = Field(max_length=998, pattern=r"^[^\r\n]*$", description="Subject line (one line).")
    body: str = Field(max_length=2_000_000, description="Plain-text body.")
    cc: str | None = Field(None, max_length=10_000, description="Cc address(es), comma-separated.")
    bcc: str | None = Field(None, max_length=10_000, description="Bcc address(es), comma-separated.")
    html: str | None = Field(
        None, max_length=2_000_000, description="HTML version of the body, sent alongside the plain text."
    )

    @field_validator("to", "cc", "bcc")
    @classmethod
    def _addresses(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if "\r" in value or "\n" in value:
            raise ValueError("must be on one line")
        pairs = getaddresses([value])
        if not pairs or not all(_EMAIL.fullmatch(address) for _, address in pairs):
            raise ValueError("must be email addresses, comma-separated")
        return value


class SendEmailOutput(BaseModel):
    message_id: str = Field(description="Gmail id of the sent message.")
    thread_id: str = Field(description="Id of the conversation the sent message started or joined.")
    status: str = Field(description="Always `sent` when Gmail accepted the message.")


@connector.action(Hints(read_only=False, idempotent=False), scopes=(SEND,))
async def send_email(ctx: ActionContext[Gmail], params: SendEmailInput) -> SendEmailOutput:
    """Send an email from the connected Gmail account.

    Each call sends a new message; repeating it sends the email again.
    """
    mime = EmailMessage()
    mime["To"] = params.to
    if params.cc:
        mime["Cc"] = params.cc
    if params.bcc:
        mime["Bcc"] = params.bcc  # Gmail delivers to Bcc and strips the header from what others see
    mime["Subject"] = params.subject
    mime.set_content(params.body)
    if params.html is not None:
        mime.add_alternative(params.html, subtype="html")
    raw = base64.urlsafe_b64encode(mime.as_bytes()).decode("ascii")
    sent = await ctx.client.run(ctx.client.users.messages().send(userId="me", body={"raw": raw}))
    if not sent.get("id"):
        raise UpstreamError("Gmail accepted the message but returned no id")
    return SendEmailOutput(message_id=str(sent["id"]), thread_id=str(sent.get("threadId", "")), status="sent")
