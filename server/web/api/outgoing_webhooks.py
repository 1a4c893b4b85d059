"""/api/v1/webhooks: outgoing webhooks, the owner's URLs Tendril tells about events (as the Integration
Layer documents them), and their deliveries. Incoming provider webhooks are server/web/api/webhooks.py.

The signing secret is shown once, in the answer that made the webhook; custom headers are kept
sealed and shown by name only."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, ClassVar

from pydantic import Field, StringConstraints

from server.core.outgoing import (
    ATTEMPTS_MAX,
    BACKOFF_MS_MAX,
    DEFAULT_ATTEMPTS,
    DEFAULT_BACKOFF_MS,
    EVENTS,
    FAMILIES,
    KEEP,
    PAGE_DEFAULT,
    PAGE_MAX,
    OutgoingWebhook,
    RetryPolicy,
)
from server.web.api.endpoint import Answer, ApiRequest, ApiResponse, Call, Deleted, api, examples
from storage.outgoing import DeliveryStatus, OutgoingDeliveryRecord

_EVENTS = ", ".join([*EVENTS, *FAMILIES])
_RETRY = (
    f"retryPolicy must be {{maxAttempts: 1-{ATTEMPTS_MAX}, backoffMs: 0-{BACKOFF_MS_MAX}}} "
    "(both whole numbers)"
)
_HEADERS = "headers must be an object of header names to string values"
Event = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class RetryPolicyIn(ApiRequest, extra="forbid"):
    max_attempts: int = Field(
        DEFAULT_ATTEMPTS, ge=1, le=ATTEMPTS_MAX, description="Attempts before the delivery is dead."
    )
    backoff_ms: int = Field(
        DEFAULT_BACKOFF_MS,
        ge=0,
        le=BACKOFF_MS_MAX,
        description="Wait before the first retry, in milliseconds; doubled for each retry after it "
        "(at most an hour).",
    )
    takes: ClassVar[str] = "retryPolicy takes maxAttempts and backoffMs"


class RetryPolicyOut(ApiResponse):
    max_attempts: int = Field(description="Attempts before a delivery is dead.")
    backoff_ms: int = Field(description="Wait before the first retry (ms), doubled for each retry after it.")


class NewOutgoingWebhook(ApiRequest):
    model_config = examples(
        {
            "name": "Workflow Completed Hook",
            "url": "https://your-app.com/webhook",
            "events": ["workflow.completed", "workflow.failed"],
            "headers": {"X-Custom-Header": "value"},
            "retryPolicy": {"maxAttempts": 3, "backoffMs": 1000},
        }
    )
    name: str = Field(description="A name for it.")
    url: str = Field(description="Where to POST events: an absolute http(s) URL to a public address.")
    events: list[Event] = Field(description=f"The events to send: {_EVENTS}.")
    headers: dict[str, str] | None = Field(
        None, description="Headers sent with every delivery (kept sealed; shown back by name only)."
    )
    retry_policy: RetryPolicyIn | None = Field(
        None, description=f"Retries; default {DEFAULT_ATTEMPTS} attempts, {DEFAULT_BACKOFF_MS} ms."
    )
    field_messages: ClassVar[dict[str, str]] = {
        "name": "name must be a string",
        "url": "url must be a string",
        "events": f"events must be a list of event names: {_EVENTS}",
        "headers": _HEADERS,
        "retryPolicy": _RETRY,
    }


class OutgoingWebhookChanges(ApiRequest, extra="forbid"):
    model_config = examples(
        {"events": ["workflow.failed"], "retryPolicy": {"maxAttempts": 5, "backoffMs": 2000}}
    )
    name: str | None = Field(None, description="A new name.")
    url: str | None = Field(None, description="A new URL.")
    events: list[Event] | None = Field(None, description="The new list of events.")
    headers: dict[str, str] | None = Field(
        None, description="The new set of custom headers (null clears them)."
    )
    retry_policy: RetryPolicyIn | None = Field(None, description="The new retry policy.")
    active: bool | None = Field(
        None, description="false pauses it (events are not queued; queued deliveries wait); true resumes."
    )
    field_messages: ClassVar[dict[str, str]] = {
        **NewOutgoingWebhook.field_messages,
        "active": "active must be true or false",
    }
    takes: ClassVar[str] = "PATCH takes name, url, events, headers, retryPolicy and active"


class OutgoingWebhookOut(ApiResponse):
    id: str = Field(description="The webhook's id.")
    name: str = Field(description="Its name.")
    url: str = Field(description="Where events are POSTed.")
    events: list[str] = Field(description="The events it gets.")
    headers: dict[str, str] = Field(
        description="Its custom headers by name; the values are kept sealed and shown as ****."
    )
    retry_policy: RetryPolicyOut = Field(description="Its retries.")
    active: bool = Field(description="false while paused.")
    created_at: datetime = Field(description="When it was made.")
    updated_at: datetime = Field(description="When it last changed.")

    @classmethod
    def of(cls, webhook: OutgoingWebhook) -> OutgoingWebhookOut:
        record = webhook.record
        return cls(
            id=str(record.id),
            name=record.name,
            url=record.url,
            events=list(record.events),
            headers=dict.fromkeys(webhook.header_names, "****"),
            retry_policy=RetryPolicyOut(max_attempts=record.max_attempts, backoff_ms=record.backoff_ms),
            active=record.active,
            created_at=record.created_at,
            updated_at=record.updated_at,
        )


class OutgoingWebhookCreated(ApiResponse):
    webhook: OutgoingWebhookOut = Field(description="The new webhook.")
    secret: str = Field(
        description="Its signing secret, shown only this once: X-Webhook-Signature is the hex "
        "HMAC-SHA256 of each delivery's raw body with it."
    )


class OutgoingWebhookList(ApiResponse):
    webhooks: list[OutgoingWebhookOut] = Field(description="The owner's outgoing webhooks, oldest first.")


class OutgoingDeliveryOut(ApiResponse):
    id: str = Field(description="The delivery's id, sent as X-Webhook-Delivery.")
    webhook_id: str = Field(description="The webhook it goes to.")
    event: str = Field(description="The event (X-Webhook-Event).")
    status: str = Field(
        description="pending, sending, delivered, failed (to be retried at nextAttemptAt) or dead."
    )
    attempts: int = Field(description="Attempts made so far.")
    last_status_code: int | None = Field(description="What the receiver answered last; null if it did not.")
    last_error: str | None = Field(description="Why the last attempt failed.")
    created_at: datetime = Field(description="When the event was queued.")
    next_attempt_at: datetime | None = Field(description="While pending or failed: when it is (re)tried.")
    delivered_at: datetime | None = Field(description="When the receiver accepted it.")

    @classmethod
    def of(cls, delivery: OutgoingDeliveryRecord) -> OutgoingDeliveryOut:
        waiting = delivery.status in (DeliveryStatus.PENDING, DeliveryStatus.FAILED)
        return cls(
            id=str(delivery.id),
            webhook_id=str(delivery.webhook_id),
            event=delivery.event,
            status=delivery.status,
            attempts=delivery.attempts,
            last_status_code=delivery.last_status_code,
            last_error=delivery.last_error,
            created_at=delivery.created_at,
            next_attempt_at=delivery.next_attempt_at if waiting else None,
            delivered_at=delivery.delivered_at,
        )


class OutgoingDeliveryList(ApiResponse):
    deliveries: list[OutgoingDeliveryOut] = Field(description="Newest first.")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last one.")


class RedeliveredOut(ApiResponse):
    delivery: OutgoingDeliveryOut = Field(description="The new delivery: the same body, due now.")


class DeliveryQuery(ApiRequest):
    status: str | None = Field(None, description="Only deliveries in this status.")
    limit: int = Field(
        PAGE_DEFAULT, ge=1, le=PAGE_MAX, description=f"Deliveries per page, at most {PAGE_MAX}."
    )
    cursor: str | None = Field(None, description="The previous page's nextCursor, for the page after it.")
    field_messages: ClassVar[dict[str, str]] = {"limit": f"limit must be a number from 1 to {PAGE_MAX}"}


def _retry(policy: RetryPolicyIn | None) -> RetryPolicy | None:
    return RetryPolicy(policy.max_attempts, policy.backoff_ms) if policy is not None else None


_WEBHOOK_ID = {"id": "webhook id"}


@api(
    "write",
    body=NewOutgoingWebhook,
    response=OutgoingWebhookCreated,
    success=(201,),
    creates="/webhook/id",
)
async def create_webhook(call: Call) -> Answer[OutgoingWebhookCreated]:
    """Create an outgoing webhook
    Tendril POSTs the events named in `events` to `url`, signed with a secret it generates, which
    the answer holds (shown only this once). The URL must reach a public address."""
    body: NewOutgoingWebhook = call.body
    created = await call.core.outgoing.create(
        call.owner_id,
        name=body.name,
        url=body.url,
        events=body.events,
        headers=body.headers,
        retry=_retry(body.retry_policy),
    )
    return Answer(
        OutgoingWebhookCreated(webhook=OutgoingWebhookOut.of(created.webhook), secret=created.secret), 201
    )


@api("read", response=OutgoingWebhookList)
async def list_webhooks(call: Call) -> OutgoingWebhookList:
    """List outgoing webhooks"""
    hooks = await call.core.outgoing.list(call.owner_id)
    return OutgoingWebhookList(webhooks=[OutgoingWebhookOut.of(hook) for hook in hooks])


@api("read", response=OutgoingWebhookOut, ids=_WEBHOOK_ID)
async def get_webhook(call: Call) -> OutgoingWebhookOut:
    """Get an outgoing webhook"""
    return OutgoingWebhookOut.of(await call.core.outgoing.get(call.owner_id, call.ids["id"]))


@api("write", body=OutgoingWebhookChanges, response=OutgoingWebhookOut, ids=_WEBHOOK_ID)
async def update_webhook(call: Call) -> OutgoingWebhookOut:
    """Change an outgoing webhook
    Fields left out stay as they are; `headers` replaces the whole set. The secret never changes."""
    body: OutgoingWebhookChanges = call.body
    given = body.model_fields_set
    updated = await call.core.outgoing.update(
        call.owner_id,
        call.ids["id"],
        name=body.name if "name" in given and body.name is not None else KEEP,
        url=body.url if "url" in given and body.url is not None else KEEP,
        events=body.events if "events" in given and body.events is not None else KEEP,
        headers=body.headers if "headers" in given else KEEP,
        retry=_retry(body.retry_policy) if "retry_policy" in given and body.retry_policy else KEEP,
        active=body.active if "active" in given and body.active is not None else KEEP,
    )
    return OutgoingWebhookOut.of(updated)


@api("write", response=Deleted, ids=_WEBHOOK_ID)
async def delete_webhook(call: Call) -> Deleted:
    """Delete an outgoing webhook
    Nothing more is sent to it; deliveries still waiting are dead."""
    await call.core.outgoing.delete(call.owner_id, call.ids["id"])
    return Deleted(deleted=True)


@api("read", query=DeliveryQuery, response=OutgoingDeliveryList, ids=_WEBHOOK_ID)
async def list_webhook_deliveries(call: Call) -> OutgoingDeliveryList:
    """List an outgoing webhook's deliveries
    Newest first, with their status, attempts and the receiver's last answer; page with `cursor`."""
    query: DeliveryQuery = call.query
    page = await call.core.outgoing.deliveries(
        call.owner_id,
        call.ids["id"],
        status=query.status or None,
        limit=query.limit,
        cursor=query.cursor or None,
    )
    return OutgoingDeliveryList(
        deliveries=[OutgoingDeliveryOut.of(d) for d in page.deliveries], next_cursor=page.next_cursor
    )


@api(
    "write",
    response=RedeliveredOut,
    ids={"id": "webhook id", "delivery_id": "delivery id"},
    success=(201,),
)
async def redeliver_webhook_delivery(call: Call) -> Answer[RedeliveredOut]:
    """Send a delivery again
    A new delivery (its own id and attempts) with the same body, due now."""
    made = await call.core.outgoing.redeliver(call.owner_id, call.ids["id"], call.ids["delivery_id"])
    return Answer(RedeliveredOut(delivery=OutgoingDeliveryOut.of(made)), 201)
