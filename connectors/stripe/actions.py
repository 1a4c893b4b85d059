"""Stripe over plain httpx.

The official `stripe` SDK's default HTTP client is the synchronous `requests` library, which would
block the event loop, so this module speaks Stripe's small REST dialect itself: a bearer secret
key, form-encoded bodies with bracket notation for nested fields, a pinned API version, and an
`Idempotency-Key` on every create.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any, Literal
from uuid import uuid4

import httpx
from pydantic import AfterValidator, BaseModel, Field

from connectors import ActionContext, ClientOptions, Connector, Hints, HookRef, HookRequest, RegisteredHook
from connectors._http import new_http_client, retry_after_seconds
from connectors.errors import (
    ConnectorError,
    Forbidden,
    InvalidCredentials,
    InvalidInput,
    MissingScopes,
    NotFound,
    RateLimited,
    UpstreamError,
)

connector = Connector.load(__file__)

# Pinned so response shapes do not change under us when the account's default version moves
# (the version stripe-python 16.1.0 sends).
STRIPE_VERSION = "2026-10-28.endive"

# Stripe echoes the (masked) key in some messages; none of it goes back to the agent.
_API_KEY = re.compile(r"\b(?:sk|rk|pk)_(?:test|live)_[A-Za-z0-9*]+")
# "... Having the 'rak_customer_write' permission would allow this request to continue."
_PERMISSION = re.compile(r"'(rak_[a-z0-9_]+)'")
# Stripe's parameter names where our input field is named differently.
_FIELD_FOR_PARAM = {"customer": "customer_id", "invoice": "invoice_id"}


class StripeApiError(Exception):
    """A non-2xx Stripe answer: {"error": {"type", "code", "message", "param"}} plus its headers."""

    def __init__(self, status: int, error: Mapping[str, Any], headers: httpx.Headers) -> None:
        self.status = status
        self.type = str(error.get("type") or "api_error")
        self.code = error.get("code")
        self.param = error.get("param")
        self.message = _API_KEY.sub("[key]", str(error.get("message") or "no message"))
        should_retry = headers.get("Stripe-Should-Retry")
        self.should_retry = None if should_retry is None else should_retry.lower() == "true"
        self.retry_after = headers.get("Retry-After")
        super().__init__(f"Stripe {status} {self.type}: {self.message}")


@dataclass(frozen=True, slots=True)
class Created:
    body: dict[str, Any]
    replayed: bool  # Stripe answered from an earlier request with the same idempotency key


class StripeApi:
    def __init__(self, http: httpx.AsyncClient) -> None:
        self._http = http

    async def get(self, path: str) -> dict[str, Any]:
        return _body(await self._http.get(path))

    async def delete(self, path: str) -> dict[str, Any]:
        return _body(await self._http.delete(path))

    async def create(self, path: str, params: Mapping[str, Any], idempotency_key: str) -> Created:
        response = await self._http.post(
            path, data=dict(form_fields(params)), headers={"Idempotency-Key": idempotency_key}
        )
        replayed = response.headers.get("Idempotent-Replayed", "").lower() == "true"
        return Created(_body(response), replayed)


def form_fields(params: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Flatten to Stripe's form encoding: metadata[key]=v, payment_method_types[0]=card."""
    fields: list[tuple[str, str]] = []
    for key, value in params.items():
        name = f"{prefix}[{key}]" if prefix else str(key)
        if value is None:
            continue
        if isinstance(value, Mapping):
            fields += form_fields(value, name)
        elif isinstance(value, list | tuple):
            fields += form_fields({str(i): item for i, item in enumerate(value)}, name)
        elif isinstance(value, bool):
            fields.append((name, "true" if value else "false"))
        else:
            fields.append((name, str(value)))
    return fields


def _body(response: httpx.Response) -> dict[str, Any]:
    try:
        payload = response.json()
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        raise UpstreamError(
            f"Stripe answered HTTP {response.status_code} without a JSON object",
            status=response.status_code,
            retryable=response.status_code >= 500,
        )
    if response.is_success:
        return payload
    error = payload.get("error")
    raise StripeApiError(response.status_code, error if isinstance(error, dict) else {}, response.headers)


@connector.client
@asynccontextmanager
async def open_client(credentials: Mapping[str, str], options: ClientOptions) -> AsyncIterator[StripeApi]:
    headers = {"Authorization": f"Bearer {credentials['secret_key']}", "Stripe-Version": STRIPE_VERSION}
    async with new_http_client(options.api_base, headers=headers, transport=options.http_transport) as http:
        yield StripeApi(http)


@connector.verifier
async def verify(client: StripeApi) -> dict[str, Any]:
    """GET /v1/balance: the cheapest authenticated read; says whether the key is live or test."""
    balance = await client.get("/v1/balance")
    return {"livemode": bool(balance.get("livemode"))}


@connector.error_mapper
def map_stripe_error(exc: BaseException) -> ConnectorError | None:
    if not isinstance(exc, StripeApiError):
        return None
    if exc.status == 401:
        return InvalidCredentials("Stripe rejected the API key (revoked, expired or mistyped)")
    if exc.status == 429:
        wait = retry_after_seconds(exc.retry_after, default=1.0)
        return RateLimited(f"Stripe rate limit reached; retry after {wait:g}s", retry_after=wait)
    if exc.type == "idempotency_error" and not exc.should_retry:
        return InvalidInput(
            "Stripe refused: this idempotency_key was already used with different parameters or "
            "another endpoint. Reuse a key only to retry the very same request; omit it for a new one.",
            field="idempotency_key",
        )
    if exc.status == 409:  # another request with this key is still running: Stripe's SDK retries
        return UpstreamError(f"Stripe conflict: {exc.message}", status=409, retryable=True)
    if exc.status == 403:
        permission = _PERMISSION.search(exc.message)
        if permission:  # a restricted key without the permission this endpoint needs
            return MissingScopes([permission.group(1)], provider="Stripe")
        return Forbidden(f"Stripe refused: {exc.message}")
    if exc.status == 404 or exc.code == "resource_missing":
        return NotFound(f"Stripe: {exc.message}")
    if exc.status in (400, 402):  # invalid_request_error, card_error
        code = f" ({exc.code})" if exc.code else ""
        return InvalidInput(f"Stripe refused the request{code}: {exc.message}", field=_field(exc.param))
    # Stripe-Should-Retry says whether repeating (with the same key) can help; without it, 5xx can.
    retryable = exc.should_retry if exc.should_retry is not None else exc.status >= 500
    return UpstreamError(f"Stripe error {exc.status}: {exc.message}", status=exc.status, retryable=retryable)


def _field(param: object) -> str | None:
    if not param:
        return None
    base = str(param).split("[", 1)[0]  # metadata[plan] -> metadata
    return _FIELD_FOR_PARAM.get(base, base)


# -- shared field types ----------------------------------------------------------------------------
def _check_metadata(value: dict[str, str]) -> dict[str, str]:
    if len(value) > 50:
        raise ValueError("Stripe allows at most 50 metadata keys")
    for key, item in value.items():
        if not 1 <= len(key) <= 40 or "[" in key or "]" in key:
            raise ValueError(f"metadata key {key!r} must be 1-40 characters without square brackets")
        if len(item) > 500:
            raise ValueError(f"metadata value of {key!r} is longer than 500 characters")
    return value


Metadata = Annotated[dict[str, str], AfterValidator(_check_metadata)]
Currency = Annotated[str, Field(pattern=r"^[A-Za-z]{3}$"), AfterValidator(lambda code: code.lower())]
CUSTOMER_ID = r"^cus_[A-Za-z0-9]+$"


def _new_idempotency_key() -> str:
    return str(uuid4())


# The runtime parses an action's input once per call and reuses it for every retry, so a key
# generated here stays the same across all attempts of that call: Stripe then replays the first
# result instead of creating a second object. That is what makes `idempotent=True` honest below.
IdempotencyKey = Annotated[
    str,
    Field(
        default_factory=_new_idempotency_key,
        min_length=1,
        max_length=255,
        pattern=r"^[!-~]+$",
        description="Stripe Idempotency-Key (printable ASCII, at most 255). Reuse the same key to "
        "retry safely; omitted, a new one is generated and returned in the result.",
    ),
]
KeyUsed = Annotated[str, Field(description="The Idempotency-Key sent; pass it again to retry safely.")]
Replayed = Annotated[
    bool,
    Field(
        description="True when Stripe answered from an earlier request with this key: "
        "nothing new was created."
    ),
]


# -- customers -------------------------------------------------------------------------------------
class CreateCustomerInput(BaseModel):
    email: str | None = Field(None, max_length=512, description="Customer's email address.")
    name: str | None = Field(None, max_length=256, description="Customer's full name or business name.")
    description: str | None = Field(None, max_length=350, description="Internal note shown in the Dashboard.")
    metadata: Metadata = Field(
        default_factory=dict, description="Up to 50 string key/value pairs stored on the customer."
    )
    idempotency_key: IdempotencyKey


class CreateCustomerOutput(BaseModel):
    customer_id: str = Field(description="Stripe customer id (cus_...).")
    email: str | None = Field(description="Customer's email address.")
    name: str | None = Field(description="Customer's name.")
    created: int = Field(description="Creation time, Unix seconds.")
    livemode: bool = Field(description="False for a test-mode (sandbox) customer.")
    idempotency_key: KeyUsed
    replayed: Replayed


# Creates carry a key that is stable across the runtime's retries (see IdempotencyKey), so a retry
# after a rate limit or a Stripe-Should-Retry failure cannot create a second object.
@connector.action(Hints(idempotent=True), scopes=("rak_customer_write",))
async def create_customer(ctx: ActionContext[StripeApi], params: CreateCustomerInput) -> CreateCustomerOutput:
    """Create a Stripe customer; returns its cus_... id.

    Pass the returned idempotency_key again to retry without creating a duplicate.
    """
    created = await ctx.client.create(
        "/v1/customers", params.model_dump(exclude={"idempotency_key"}), params.idempotency_key
    )
    customer = created.body
    return CreateCustomerOutput(
        customer_id=customer["id"],
        email=customer.get("email"),
        name=customer.get("name"),
        created=customer["created"],
        livemode=bool(customer.get("livemode")),
        idempotency_key=params.idempotency_key,
        replayed=created.replayed,
    )


class RetrieveCustomerInput(BaseModel):
    customer_id: str = Field(pattern=CUSTOMER_ID, max_length=255, description="Stripe customer id (cus_...).")


class RetrieveCustomerOutput(BaseModel):
    customer_id: str = Field(description="Stripe customer id (cus_...).")
    email: str | None = Field(description="Customer's email address.")
    name: str | None = Field(description="Customer's name.")
    description: str | None = Field(description="Internal note on the customer.")
    balance: int = Field(description="Credit (negative) or amount owed (positive), smallest currency unit.")
    currency: str | None = Field(description="Default currency for the customer's invoices, if set.")
    metadata: dict[str, str] = Field(description="Key/value pairs stored on the customer.")
    created: int = Field(description="Creation time, Unix seconds.")
    livemode: bool = Field(description="False for a test-mode (sandbox) customer.")


@connector.action(Hints(read_only=True), scopes=("rak_customer_read",))
async def retrieve_customer(
    ctx: ActionContext[StripeApi], params: RetrieveCustomerInput
) -> RetrieveCustomerOutput:
    """Look up a Stripe customer by id: email, name, balance, metadata."""
    customer = await ctx.client.get(f"/v1/customers/{params.customer_id}")
    if customer.get("deleted"):  # Stripe still answers 200 for a deleted customer
        raise NotFound(f"Stripe customer {params.customer_id} has been deleted")
    return RetrieveCustomerOutput(
        customer_id=customer["id"],
        email=customer.get("email"),
        name=customer.get("name"),
        description=customer.get("description"),
        balance=int(customer.get("balance") or 0),
        currency=customer.get("currency"),
        metadata=customer.get("metadata") or {},
        created=customer["created"],
        livemode=bool(customer.get("livemode")),
    )


# -- invoicing -------------------------------------------------------------------------------------
class CreateInvoiceItemInput(BaseModel):
    customer_id: str = Field(pattern=CUSTOMER_ID, max_length=255, description="Customer to bill (cus_...).")
    amount: int = Field(
        description="Amount in the currency's smallest unit (cents for usd: 1000 = $10.00); "
        "negative for a credit."
    )
    currency: Currency = Field(description="Three-letter ISO currency code, e.g. usd.")
    description: str | None = Field(None, max_length=500, description="Line text shown on the invoice.")
    invoice_id: str | None = Field(
        None,
        pattern=r"^in_[A-Za-z0-9]+$",
        description="Draft invoice (in_...) to add the item to; omitted, the item waits for "
        "the customer's next invoice.",
    )
    idempotency_key: IdempotencyKey


class CreateInvoiceItemOutput(BaseModel):
    invoice_item_id: str = Field(description="Stripe invoice item id (ii_...).")
    customer_id: str = Field(description="Customer billed.")
    amount: int = Field(description="Amount in the smallest currency unit.")
    currency: str = Field(description="Three-letter ISO currency code.")
    description: str | None = Field(description="Line text shown on the invoice.")
    invoice_id: str | None = Field(description="Invoice the item is on; null while pending.")
    idempotency_key: KeyUsed
    replayed: Replayed


@connector.action(Hints(idempotent=True), scopes=("rak_invoice_write",))
async def create_invoice_item(
    ctx: ActionContext[StripeApi], params: CreateInvoiceItemInput
) -> CreateInvoiceItemOutput:
    """Add a charge (or a credit, with a negative amount) for a customer, optionally to a draft invoice.

    Amounts are integers in the smallest currency unit. Pass the returned idempotency_key again to
    retry without adding the item twice.
    """
    body = {
        "customer": params.customer_id,
        "amount": params.amount,
        "currency": params.currency,
        "description": params.description,
        "invoice": params.invoice_id,
    }
    created = await ctx.client.create("/v1/invoiceitems", body, params.idempotency_key)
    item = created.body
    return CreateInvoiceItemOutput(
        invoice_item_id=item["id"],
        customer_id=item["customer"],
        amount=item["amount"],
        currency=item["currency"],
        description=item.get("description"),
        invoice_id=item.get("invoice"),
        idempotency_key=params.idempotency_key,
        replayed=created.replayed,
    )


class CreateInvoiceInput(BaseModel):
    customer_id: str = Field(
        pattern=CUSTOMER_ID, max_length=255, description="Customer to invoice (cus_...)."
    )
    auto_advance: bool = Field(
        False, description="Let Stripe finalize and collect the draft automatically (about an hour later)."
    )
    collection_method: Literal["charge_automatically", "send_invoice"] = Field(
        "charge_automatically",
        description="charge_automatically charges the default payment method; "
        "send_invoice emails the invoice.",
    )
    days_until_due: int | None = Field(
        None,
        ge=0,
        description="Days the customer has to pay; required with send_invoice, not allowed otherwise.",
    )
    description: str | None = Field(None, max_length=1500, description="Memo shown on the invoice.")
    include_pending_items: bool = Field(
        False,
        description="Also pull in the customer's pending invoice items (Stripe leaves them out by default).",
    )
    idempotency_key: IdempotencyKey


class CreateInvoiceOutput(BaseModel):
    invoice_id: str = Field(description="Stripe invoice id (in_...); add items with create_invoice_item.")
    customer_id: str = Field(description="Customer invoiced.")
    status: str = Field(description="Invoice status; `draft` until finalized.")
    collection_method: str = Field(description="charge_automatically or send_invoice.")
    auto_advance: bool = Field(description="Whether Stripe will finalize and collect automatically.")
    amount_due: int = Field(description="Total due so far, smallest currency unit.")
    currency: str = Field(description="Three-letter ISO currency code.")
    due_date: int | None = Field(description="Due date, Unix seconds (send_invoice only).")
    created: int = Field(description="Creation time, Unix seconds.")
    idempotency_key: KeyUsed
    replayed: Replayed


@connector.action(Hints(idempotent=True), scopes=("rak_invoice_write",))
async def create_invoice(ctx: ActionContext[StripeApi], params: CreateInvoiceInput) -> CreateInvoiceOutput:
    """Create a draft invoice for a customer; returns its in_... id.

    Add lines with create_invoice_item(invoice_id=...). Pass the returned idempotency_key again to
    retry without creating a second invoice.
    """
    body = {
        "customer": params.customer_id,
        "auto_advance": params.auto_advance,
        "collection_method": params.collection_method,
        "days_until_due": params.days_until_due,
        "description": params.description,
        "pending_invoice_items_behavior": "include" if params.include_pending_items else None,
    }
    created = await ctx.client.create("/v1/invoices", body, params.idempotency_key)
    invoice = created.body
    return CreateInvoiceOutput(
        invoice_id=invoice["id"],
        customer_id=invoice["customer"],
        status=invoice["status"],
        collection_method=invoice["collection_method"],
        auto_advance=bool(invoice.get("auto_advance")),
        amount_due=int(invoice.get("amount_due") or 0),
        currency=invoice["currency"],
        due_date=invoice.get("due_date"),
        created=invoice["created"],
        idempotency_key=params.idempotency_key,
        replayed=created.replayed,
    )


# -- payments --------------------------------------------------------------------------------------
class CreatePaymentIntentInput(BaseModel):
    amount: int = Field(
        ge=1,
        le=99_999_999,
        description="Amount in the currency's smallest unit (cents for usd: 1000 = $10.00).",
    )
    currency: Currency = Field(description="Three-letter ISO currency code, e.g. usd.")
    customer_id: str | None = Field(
        None, pattern=CUSTOMER_ID, max_length=255, description="Customer the payment belongs to (cus_...)."
    )
    description: str | None = Field(
        None, max_length=1000, description="Shown in the Dashboard and on receipts."
    )
    payment_method_types: list[str] = Field(
        default_factory=lambda: ["card"],
        min_length=1,
        description='Payment method types allowed, e.g. ["card"].',
    )
    metadata: Metadata = Field(
        default_factory=dict, description="Up to 50 string key/value pairs stored on the payment intent."
    )
    idempotency_key: IdempotencyKey


class CreatePaymentIntentOutput(BaseModel):
    payment_intent_id: str = Field(description="Stripe payment intent id (pi_...).")
    amount: int = Field(description="Amount in the smallest currency unit.")
    currency: str = Field(description="Three-letter ISO currency code.")
    status: str = Field(description="e.g. requires_payment_method: the customer still has to pay.")
    customer_id: str | None = Field(description="Customer the payment belongs to, if any.")
    payment_method_types: list[str] = Field(description="Payment method types allowed.")
    created: int = Field(description="Creation time, Unix seconds.")
    livemode: bool = Field(description="False in test mode: no real money moves.")
    idempotency_key: KeyUsed
    replayed: Replayed


# The client_secret is left out on purpose: Stripe says to hand it only to the paying customer, and
# tool results end up in transcripts and logs.
@connector.action(Hints(idempotent=True), scopes=("rak_payment_intent_write",))
async def create_payment_intent(
    ctx: ActionContext[StripeApi], params: CreatePaymentIntentInput
) -> CreatePaymentIntentOutput:
    """Create a payment intent (an unconfirmed payment the customer completes later); returns its pi_... id.

    Nothing is charged yet. Amounts are integers in the smallest currency unit. Pass the returned
    idempotency_key again to retry without creating a second intent.
    """
    body = {
        "amount": params.amount,
        "currency": params.currency,
        "customer": params.customer_id,
        "description": params.description,
        "payment_method_types": params.payment_method_types,
        "metadata": params.metadata,
    }
    created = await ctx.client.create("/v1/payment_intents", body, params.idempotency_key)
    intent = created.body
    return CreatePaymentIntentOutput(
        payment_intent_id=intent["id"],
        amount=intent["amount"],
        currency=intent["currency"],
        status=intent["status"],
        customer_id=intent.get("customer"),
        payment_method_types=list(intent.get("payment_method_types") or []),
        created=intent["created"],
        livemode=bool(intent.get("livemode")),
        idempotency_key=params.idempotency_key,
        replayed=created.replayed,
    )


# -- webhook registration (for Tendril's own receiver; not an agent tool) -------------------------
# Stripe requires a list; these follow the objects the catalog's actions create.
DEFAULT_HOOK_EVENTS = (
    "customer.created",
    "invoice.paid",
    "invoice.payment_failed",
    "payment_intent.succeeded",
    "payment_intent.payment_failed",
    "checkout.session.completed",
)


@connector.hook_registrar
async def create_webhook_endpoint(client: StripeApi, request: HookRequest) -> RegisteredHook:
    """POST /v1/webhook_endpoints; Stripe mints the whsec_ signing secret and returns it once."""
    events = list(request.events or DEFAULT_HOOK_EVENTS)
    params = {"url": request.url, "enabled_events": events, "description": "Tendril"}
    endpoint = (await client.create("/v1/webhook_endpoints", params, _new_idempotency_key())).body
    secret = endpoint.get("secret")
    if not isinstance(secret, str) or not secret.startswith("whsec_"):
        raise UpstreamError("Stripe created the webhook endpoint without returning its signing secret")
    return RegisteredHook(
        hook_id=str(endpoint["id"]),
        secrets={"signing_secret": secret},
        description=f"Stripe webhook endpoint {endpoint['id']} for {', '.join(events)}",
    )


@connector.hook_remover
async def delete_webhook_endpoint(client: StripeApi, hook: HookRef) -> bool:
    """DELETE /v1/webhook_endpoints/{id}; an endpoint already deleted answers 404 resource_missing."""
    if not hook.hook_id:
        return False
    try:
        await client.delete(f"/v1/webhook_endpoints/{hook.hook_id}")
    except StripeApiError as error:
        if error.status == 404:
            return False
        raise
    return True
