"""In-memory fake of the Stripe API (the few endpoints the connector uses), served over loopback.

It answers the way Stripe does: form-encoded bodies with bracket notation (metadata[k]=v,
payment_method_types[0]=card), errors as {"error": {"type", "code", "message", "param"}},
`Stripe-Should-Retry` on failures, restricted keys refused with a named `rak_...` permission, and
Idempotency-Key semantics (a POST repeated with the same key and parameters replays the saved
answer with `Idempotent-Replayed: true`; other parameters get a 400 idempotency_error).
Not emulated: pagination, expand[], key expiry after 24 h, payment confirmation.
"""

from __future__ import annotations

import base64
import itertools
import logging
import random
import re
import string
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

logger = logging.getLogger(__name__)

JSON = dict[str, Any]
BASE_EPOCH = 1_762_000_000
DEFAULT_VERSION = "2026-10-28.endive"
CURRENCIES = {"usd", "eur", "gbp", "cad", "aud", "chf", "jpy", "sek", "nok", "dkk"}
PAYMENT_METHOD_TYPES = {"card", "us_bank_account", "sepa_debit", "link", "ideal", "bancontact"}
MIN_CHARGE = 50  # smallest unit; e.g. $0.50 for usd


class StripeError(Exception):
    """An API error, answered with Stripe's error shape and status."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",  # shadows a builtin to mirror Stripe's field name
        code: str | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        error = {"type": type, "code": code, "message": message, "param": param}
        self.body: JSON = {"error": {k: v for k, v in error.items() if v is not None}}


@dataclass
class StripeKey:
    """What Stripe knows about a key: its account, mode and (restricted keys) permissions."""

    account: str = "acct_1FakeTendril"
    livemode: bool = False
    permissions: set[str] | None = None  # None: a secret key, allowed everything


@dataclass
class Call:
    operation: str
    api_key: str | None
    idempotency_key: str | None
    stripe_version: str | None
    params: JSON


@dataclass
class _Fault:
    status: int
    body: JSON
    headers: dict[str, str]
    commit: bool  # do the work (and save it under the key) but lose the answer


@dataclass
class _Saved:
    operation: str
    params: JSON
    status: int
    body: JSON
    request_id: str


@dataclass
class _Route:
    operation: str
    method: str
    pattern: re.Pattern[str]
    permission: str
    handler: Callable[[JSON, StripeKey, dict[str, str]], JSON]
    allowed: frozenset[str] = field(default_factory=frozenset[str])


class FakeStripe:
    """One Stripe account's customers, invoice items, invoices and payment intents, plus `app`."""

    def __init__(self) -> None:
        self.keys: dict[str, StripeKey] = {}
        self.customers: dict[str, JSON] = {}
        self.invoice_items: dict[str, JSON] = {}
        self.invoices: dict[str, JSON] = {}
        self.payment_intents: dict[str, JSON] = {}
        self.webhook_endpoints: dict[str, JSON] = {}  # secrets included (Stripe shows them only once)
        self.calls: list[Call] = []
        self._saved: dict[tuple[str, str], _Saved] = {}
        self._faults: dict[str, deque[_Fault]] = {}
        self._random = random.Random(20261028)  # Stripe-looking ids that repeat run to run
        self._clock = itertools.count(BASE_EPOCH)
        self._lock = threading.Lock()
        self._routes = [
            _Route("balance.retrieve", "GET", re.compile(r"/v1/balance"), "rak_balance_read", self._balance),
            _Route(
                "customers.create",
                "POST",
                re.compile(r"/v1/customers"),
                "rak_customer_write",
                self._create_customer,
                frozenset({"email", "name", "description", "metadata", "phone"}),
            ),
            _Route(
                "customers.retrieve",
                "GET",
                re.compile(r"/v1/customers/(?P<id>[^/]+)"),
                "rak_customer_read",
                self._retrieve_customer,
            ),
            _Route(
                "invoiceitems.create",
                "POST",
                re.compile(r"/v1/invoiceitems"),
                "rak_invoice_write",
                self._create_invoice_item,
                frozenset({"customer", "amount", "currency", "description", "invoice", "metadata"}),
            ),
            _Route(
                "invoices.create",
                "POST",
                re.compile(r"/v1/invoices"),
                "rak_invoice_write",
                self._create_invoice,
                frozenset(
                    {
                        "customer",
                        "auto_advance",
                        "collection_method",
                        "days_until_due",
                        "description",
                        "metadata",
                        "pending_invoice_items_behavior",
                    }
                ),
            ),
            _Route(
                "webhook_endpoints.create",
                "POST",
                re.compile(r"/v1/webhook_endpoints"),
                "rak_webhook_write",
                self._create_webhook_endpoint,
                frozenset({"url", "enabled_events", "description", "api_version", "metadata"}),
            ),
            _Route(
                "webhook_endpoints.delete",
                "DELETE",
                re.compile(r"/v1/webhook_endpoints/(?P<id>we_\w+)"),
                "rak_webhook_write",
                self._delete_webhook_endpoint,
            ),
            _Route(
                "payment_intents.create",
                "POST",
                re.compile(r"/v1/payment_intents"),
                "rak_payment_intent_write",
                self._create_payment_intent,
                frozenset(
                    {"amount", "currency", "customer", "description", "payment_method_types", "metadata"}
                ),
            ),
        ]

    # --- test controls -------------------------------------------------------

    def add_key(
        self, key: str, *, permissions: set[str] | None = None, account: str = "acct_1FakeTendril"
    ) -> StripeKey:
        """Make `key` valid; `permissions` (rak_... names) makes it a restricted key."""
        info = StripeKey(account=account, livemode="_live_" in key, permissions=permissions)
        with self._lock:
            self.keys[key] = info
        return info

    def add_customer(self, **fields: Any) -> JSON:
        """Create a customer directly, as if made in the Dashboard."""
        with self._lock:
            return self._new_customer(fields, livemode=False)

    def delete_customer(self, customer_id: str) -> None:
        """Later retrieves answer {"id", "deleted": true}, as Stripe does."""
        with self._lock:
            self.customers[customer_id] = {"id": customer_id, "object": "customer", "deleted": True}

    def rate_limit_next(self, operation: str, retry_after: float | None = None, times: int = 1) -> None:
        """Answer the next `times` calls of `operation` with HTTP 429 (and Retry-After when given)."""
        body = StripeError(
            429,
            "Too many requests hit the API too quickly. "
            "We recommend an exponential backoff of your requests.",
            code="rate_limit",
        ).body
        headers = {} if retry_after is None else {"Retry-After": f"{retry_after:g}"}
        self._queue(operation, _Fault(429, body, headers, commit=False), times)

    def fail_next(
        self,
        operation: str,
        status: int = 500,
        *,
        should_retry: bool | None = None,
        error: JSON | None = None,
        commit: bool = False,
        times: int = 1,
    ) -> None:
        """Answer the next `times` calls of `operation` with `status` and Stripe's error shape.

        `should_retry` sets the Stripe-Should-Retry header. `commit=True` performs the request first
        (saving its real answer under the Idempotency-Key) and loses the answer on the way back, the
        case where only a stable idempotency key prevents a duplicate on retry. Without `commit`, a
        failure Stripe says not to retry is itself saved under the key, as Stripe saves 500s.
        """
        body = (
            {"error": error}
            if error
            else StripeError(status, "An unknown error occurred", type="api_error").body
        )
        headers = {} if should_retry is None else {"Stripe-Should-Retry": "true" if should_retry else "false"}
        self._queue(operation, _Fault(status, body, headers, commit=commit), times)

    def _queue(self, operation: str, fault: _Fault, times: int) -> None:
        with self._lock:
            self._faults.setdefault(operation, deque()).extend([fault] * times)

    # --- HTTP ----------------------------------------------------------------

    @cached_property
    def app(self) -> Starlette:
        """The ASGI app; serve it with `run_asgi_on_loopback` and use its URL as the api_base."""
        return Starlette(routes=[Route("/v1/{rest:path}", self._endpoint, methods=["GET", "POST", "DELETE"])])

    async def _endpoint(self, request: Request) -> JSONResponse:
        items = list(request.query_params.multi_items())
        if request.method == "POST":
            items += [(k, v) for k, v in (await request.form()).multi_items() if isinstance(v, str)]
        params = parse_form(items)
        api_key = _api_key(request.headers.get("authorization"))
        idem = request.headers.get("idempotency-key") if request.method == "POST" else None
        version = request.headers.get("stripe-version")
        headers = {"Request-Id": self._id("req_"), "Stripe-Version": version or DEFAULT_VERSION}
        with self._lock:
            try:
                route, path_params = self._route(request.method, request.url.path)
                self.calls.append(Call(route.operation, api_key, idem, version, params))
                status, body = self._handle(route, path_params, params, api_key, idem, headers)
            except StripeError as exc:
                status, body = exc.status, exc.body
        logger.debug("stripe %s %s -> %d", request.method, request.url.path, status)
        return JSONResponse(body, status_code=status, headers=headers)

    def _route(self, method: str, path: str) -> tuple[_Route, dict[str, str]]:
        for route in self._routes:
            match = route.pattern.fullmatch(path)
            if match and route.method == method:
                return route, match.groupdict()
        raise StripeError(404, f"Unrecognized request URL ({method}: {path}).")

    def _handle(
        self,
        route: _Route,
        path_params: dict[str, str],
        params: JSON,
        api_key: str | None,
        idem: str | None,
        headers: dict[str, str],
    ) -> tuple[int, JSON]:
        key = self._authenticate(api_key)
        queued = self._faults.get(route.operation)
        fault = queued.popleft() if queued else None
        headers.update(fault.headers if fault else {})
        if fault and not fault.commit:
            if idem and fault.headers.get("Stripe-Should-Retry") == "false":
                self._save(key, idem, route, params, fault.status, fault.body, headers)
            return fault.status, fault.body
        if key.permissions is not None and route.permission not in key.permissions:
            raise StripeError(
                403,
                f"The provided key '{_masked(api_key or '')}' does not have the required permissions for "
                f"this endpoint on account '{key.account}'. Having the '{route.permission}' permission "
                "would allow this request to continue.",
            )
        if idem and (saved := self._saved.get((key.account, idem))):
            if saved.operation != route.operation or saved.params != params:
                raise StripeError(
                    400,
                    "Keys for idempotent requests can only be used with the same parameters they were "
                    f"first used with. Try using a key other than '{idem}' if you meant to execute a "
                    "different request.",
                    type="idempotency_error",
                )
            headers.update({"Idempotent-Replayed": "true", "Original-Request": saved.request_id})
            return saved.status, saved.body
        if route.method == "POST":
            unknown = sorted(set(params) - route.allowed)
            if unknown:
                raise StripeError(400, f"Received unknown parameter: {unknown[0]}", param=unknown[0])
        body = route.handler(params, key, path_params)
        if idem:
            self._save(key, idem, route, params, 200, body, headers)
        if fault:  # committed, then the answer was lost
            return fault.status, fault.body
        return 200, body

    def _authenticate(self, api_key: str | None) -> StripeKey:
        if not api_key:
            raise StripeError(401, "You did not provide an API key.")
        info = self.keys.get(api_key)
        if info is None:
            raise StripeError(401, f"Invalid API Key provided: {_masked(api_key)}")
        return info

    def _save(
        self,
        key: StripeKey,
        idem: str,
        route: _Route,
        params: JSON,
        status: int,
        body: JSON,
        headers: dict[str, str],
    ) -> None:
        self._saved[(key.account, idem)] = _Saved(
            route.operation, params, status, body, headers["Request-Id"]
        )

    # --- API operations (called with the lock held) ----------------------------

    def _balance(self, params: JSON, key: StripeKey, path: dict[str, str]) -> JSON:
        funds = [{"amount": 0, "currency": "usd", "source_types": {"card": 0}}]
        return {"object": "balance", "available": funds, "pending": funds, "livemode": key.livemode}

    def _create_customer(self, params: JSON, key: StripeKey, path: dict[str, str]) -> JSON:
        email = params.get("email")
        if email is not None and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", email):
            raise StripeError(400, f"Invalid email address: {email}", code="email_invalid", param="email")
        return self._new_customer(params, livemode=key.livemode)

    def _new_customer(self, params: JSON, *, livemode: bool) -> JSON:
        customer_id = self._id("cus_")
        customer: JSON = {
            "id": customer_id,
            "object": "customer",
            "balance": 0,
            "created": next(self._clock),
            "currency": None,
            "delinquent": False,
            "description": params.get("description"),
            "email": params.get("email"),
            "invoice_prefix": customer_id[4:12].upper(),
            "livemode": livemode,
            "metadata": dict(params.get("metadata") or {}),
            "name": params.get("name"),
            "phone": params.get("phone"),
            "preferred_locales": [],
            "tax_exempt": "none",
            "test_clock": None,
        }
        self.customers[customer_id] = customer
        return customer

    def _create_webhook_endpoint(self, params: JSON, key: StripeKey, path: dict[str, str]) -> JSON:
        url, events = params.get("url"), params.get("enabled_events")
        if not isinstance(url, str) or not url:
            raise StripeError(400, "Missing required param: url.", code="parameter_missing", param="url")
        if not url.startswith("https://"):
            raise StripeError(400, "Invalid URL: URL must be publicly accessible.", param="url")
        if not isinstance(events, list) or not events:
            raise StripeError(
                400,
                "Missing required param: enabled_events.",
                code="parameter_missing",
                param="enabled_events",
            )
        endpoint: JSON = {
            "id": self._id("we_"),
            "object": "webhook_endpoint",
            "api_version": params.get("api_version"),
            "created": next(self._clock),
            "description": params.get("description"),
            "enabled_events": events,
            "livemode": key.livemode,
            "metadata": dict(params.get("metadata") or {}),
            "secret": "whsec_" + self._token(32),
            "status": "enabled",
            "url": url,
        }
        self.webhook_endpoints[endpoint["id"]] = endpoint
        return endpoint

    def _delete_webhook_endpoint(self, params: JSON, key: StripeKey, path: dict[str, str]) -> JSON:
        if self.webhook_endpoints.pop(path["id"], None) is None:
            raise StripeError(
                404, f"No such webhook endpoint: '{path['id']}'", code="resource_missing", param="id"
            )
        return {"id": path["id"], "object": "webhook_endpoint", "deleted": True}

    def _retrieve_customer(self, params: JSON, key: StripeKey, path: dict[str, str]) -> JSON:
        customer = self.customers.get(path["id"])
        if customer is None:
            raise StripeError(404, f"No such customer: '{path['id']}'", code="resource_missing", param="id")
        return customer

    def _create_invoice_item(self, params: JSON, key: StripeKey, path: dict[str, str]) -> JSON:
        customer = self._customer_param(params)
        amount = _integer(params, "amount")
        currency = _currency(params)
        invoice = None
        if params.get("invoice"):
            invoice = self.invoices.get(params["invoice"])
            if invoice is None:
                raise StripeError(
                    400, f"No such invoice: '{params['invoice']}'", code="resource_missing", param="invoice"
                )
            if invoice["customer"] != customer["id"] or invoice["status"] != "draft":
                raise StripeError(
                    400, "Invoice items can only be added to the customer's draft invoices.", param="invoice"
                )
            if invoice["lines"]["data"] and invoice["currency"] != currency:
                raise StripeError(
                    400, f"The invoice is in {invoice['currency']}, not {currency}.", param="currency"
                )
        now = next(self._clock)
        item: JSON = {
            "id": self._id("ii_"),
            "object": "invoiceitem",
            "amount": amount,
            "currency": currency,
            "customer": customer["id"],
            "date": now,
            "description": params.get("description"),
            "discountable": True,
            "invoice": None,
            "livemode": key.livemode,
            "metadata": dict(params.get("metadata") or {}),
            "period": {"start": now, "end": now},
            "proration": False,
            "quantity": 1,
        }
        self.invoice_items[item["id"]] = item
        if invoice is not None:
            _attach(invoice, item)
        return item

    def _create_invoice(self, params: JSON, key: StripeKey, path: dict[str, str]) -> JSON:
        customer = self._customer_param(params)
        method = params.get("collection_method", "charge_automatically")
        if method not in ("charge_automatically", "send_invoice"):
            raise StripeError(400, f"Invalid collection_method: {method}", param="collection_method")
        days = _integer(params, "days_until_due") if "days_until_due" in params else None
        if method == "send_invoice" and days is None:
            raise StripeError(
                400,
                "Missing required param: days_until_due.",
                code="parameter_missing",
                param="days_until_due",
            )
        if method == "charge_automatically" and days is not None:
            raise StripeError(
                400,
                "days_until_due can only be set when collection_method is send_invoice.",
                param="days_until_due",
            )
        behavior = params.get("pending_invoice_items_behavior", "exclude")
        if behavior not in ("include", "exclude"):
            raise StripeError(
                400,
                f"Invalid pending_invoice_items_behavior: {behavior}",
                param="pending_invoice_items_behavior",
            )
        now = next(self._clock)
        invoice: JSON = {
            "id": self._id("in_"),
            "object": "invoice",
            "amount_due": 0,
            "amount_paid": 0,
            "amount_remaining": 0,
            "auto_advance": _boolean(params, "auto_advance", default=False),
            "collection_method": method,
            "created": now,
            "currency": customer.get("currency") or "usd",
            "customer": customer["id"],
            "description": params.get("description"),
            "due_date": now + days * 86_400 if days is not None else None,
            "hosted_invoice_url": None,
            "lines": {"object": "list", "data": [], "has_more": False},
            "livemode": key.livemode,
            "metadata": dict(params.get("metadata") or {}),
            "number": None,
            "status": "draft",
        }
        self.invoices[invoice["id"]] = invoice
        if behavior == "include":
            for item in self.invoice_items.values():
                if item["customer"] == customer["id"] and item["invoice"] is None:
                    _attach(invoice, item)
        return invoice

    def _create_payment_intent(self, params: JSON, key: StripeKey, path: dict[str, str]) -> JSON:
        amount = _integer(params, "amount")
        currency = _currency(params)
        if amount < MIN_CHARGE:
            raise StripeError(
                400,
                f"Amount must be at least {MIN_CHARGE} {currency} (smallest unit).",
                code="amount_too_small",
                param="amount",
            )
        customer = self._customer_param(params)["id"] if "customer" in params else None
        types = params.get("payment_method_types") or ["card"]
        for kind in types:
            if kind not in PAYMENT_METHOD_TYPES:
                raise StripeError(
                    400, f'The payment method type "{kind}" is invalid.', param="payment_method_types"
                )
        intent_id = self._id("pi_")
        intent: JSON = {
            "id": intent_id,
            "object": "payment_intent",
            "amount": amount,
            "amount_received": 0,
            "capture_method": "automatic",
            "client_secret": f"{intent_id}_secret_{self._token(25)}",
            "confirmation_method": "automatic",
            "created": next(self._clock),
            "currency": currency,
            "customer": customer,
            "description": params.get("description"),
            "livemode": key.livemode,
            "metadata": dict(params.get("metadata") or {}),
            "payment_method_types": list(types),
            "status": "requires_payment_method",
        }
        self.payment_intents[intent_id] = intent
        return intent

    def _customer_param(self, params: JSON) -> JSON:
        customer_id = params.get("customer")
        if not customer_id:
            raise StripeError(
                400, "Missing required param: customer.", code="parameter_missing", param="customer"
            )
        customer = self.customers.get(customer_id)
        if customer is None or customer.get("deleted"):
            raise StripeError(
                400, f"No such customer: '{customer_id}'", code="resource_missing", param="customer"
            )
        return customer

    def _id(self, prefix: str) -> str:
        return prefix + self._token(14)

    def _token(self, length: int) -> str:
        return "".join(self._random.choices(string.ascii_letters + string.digits, k=length))


def parse_form(items: Iterable[tuple[str, str]]) -> JSON:
    """Stripe's bracket notation back to nested data.

    a[b]=1 -> {"a": {"b": "1"}}; a[0]=x or a[]=x -> {"a": ["x"]}; metadata keys stay a mapping.
    """
    result: JSON = {}
    for name, value in items:
        head, _, tail = name.partition("[")
        keys = [head, *re.findall(r"\[([^\]]*)\]", "[" + tail)] if tail else [head]
        node: Any = result
        for key in keys[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise StripeError(400, f"Invalid hash: {name} mixes a value and nested fields", param=head)
        last = keys[-1] or str(len(node))  # a[]=x appends
        node[last] = value
    return {k: _listify(k, v) for k, v in result.items()}


def _listify(name: str, value: Any) -> Any:
    """{"0": a, "1": b} -> [a, b] (indexed arrays), except inside metadata, whose keys are free-form."""
    if not isinstance(value, dict) or name == "metadata":
        return value
    children = {k: _listify(k, v) for k, v in value.items()}
    if children and all(k.isdigit() for k in children):
        return [children[k] for k in sorted(children, key=int)]
    return children


def _attach(invoice: JSON, item: JSON) -> None:
    item["invoice"] = invoice["id"]
    invoice["lines"]["data"].append(
        {"id": f"il_{item['id'][3:]}", "invoice_item": item["id"], "amount": item["amount"]}
    )
    invoice["currency"] = item["currency"]
    invoice["amount_due"] += item["amount"]
    invoice["amount_remaining"] = invoice["amount_due"]


def _integer(params: JSON, name: str) -> int:
    if name not in params:
        raise StripeError(400, f"Missing required param: {name}.", code="parameter_missing", param=name)
    try:
        return int(params[name])
    except (TypeError, ValueError):
        raise StripeError(400, f"Invalid integer: {params[name]}", param=name) from None


def _boolean(params: JSON, name: str, *, default: bool) -> bool:
    value = params.get(name)
    if value is None:
        return default
    if value not in ("true", "false"):
        raise StripeError(400, f"Invalid boolean: {value}", param=name)
    return value == "true"


def _currency(params: JSON) -> str:
    currency = params.get("currency")
    if not currency:
        raise StripeError(
            400, "Missing required param: currency.", code="parameter_missing", param="currency"
        )
    if currency not in CURRENCIES:
        raise StripeError(400, f"Invalid currency: {currency}.", param="currency")
    return currency


def _api_key(header: str | None) -> str | None:
    """Bearer <key> (what the connector sends) or Basic <key>: (also accepted by Stripe)."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer":
        return value.strip() or None
    if scheme.lower() == "basic":
        return base64.b64decode(value).decode(errors="replace").partition(":")[0] or None
    return None


def _masked(api_key: str) -> str:
    """Stripe shows a key's prefix and last four characters, the rest as asterisks."""
    prefix, _, rest = api_key.rpartition("_")
    return f"{prefix}_{'*' * max(0, len(rest) - 4)}{rest[-4:]}"
