"""Stripe actions over the connector's own httpx client, against the fake Stripe API on loopback."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel

from connectors import ActionRunner, Hints, RetryPolicy, load_catalog
from connectors.errors import (
    InvalidCredentials,
    InvalidInput,
    MissingScopes,
    NotFound,
    RateLimited,
    UpstreamError,
)
from connectors.stripe.actions import STRIPE_VERSION, form_fields
from tests.connectors.cases import Sleeps
from tests.fakes.stripe import FakeStripe, parse_form
from tests.support.asgi import Swappable

pytestmark = pytest.mark.anyio
stripe = load_catalog()["stripe"]

# Canary: must never show up in a result, an error message or a log line.
SECRET_KEY = "sk_test_51CanaryStripeSecretQw7Zx9LmKp2"
RESTRICTED_KEY = "rk_test_51CanaryRestrictedKeyHv3Ty8Nb"
WRONG_KEY = "sk_test_51CanaryWrongKeyJd4Rs6Wq"


@pytest.fixture
def fake(provider_server: tuple[Swappable, str]) -> FakeStripe:
    fake = FakeStripe()
    fake.add_key(SECRET_KEY)
    provider_server[0].target = fake.app
    return fake


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def runner(provider_server: tuple[Swappable, str], sleeps: Sleeps) -> ActionRunner:
    return ActionRunner(api_bases={"stripe": provider_server[1]}, timeout=5, sleep=sleeps)


async def run(runner: ActionRunner, action: str, params: dict[str, Any], key: str = SECRET_KEY) -> Any:
    result: BaseModel = await runner.run(
        stripe, stripe.actions[action], params, credentials={"secret_key": key}
    )
    return result.model_dump()


# -- happy paths ---------------------------------------------------------------------------------
async def test_verify_reports_the_mode_and_sends_the_pinned_version(
    fake: FakeStripe, runner: ActionRunner
) -> None:
    assert await runner.verify(stripe, {"secret_key": SECRET_KEY}) == {"livemode": False}
    fake.add_key("rk_live_51LiveRestrictedKey")
    assert await runner.verify(stripe, {"secret_key": "rk_live_51LiveRestrictedKey"}) == {"livemode": True}
    assert [(c.operation, c.stripe_version) for c in fake.calls] == [("balance.retrieve", STRIPE_VERSION)] * 2


async def test_create_customer_sends_bracketed_metadata_and_an_idempotency_key(
    fake: FakeStripe, runner: ActionRunner
) -> None:
    result = await run(
        runner,
        "create_customer",
        {
            "email": "ada@example.com",
            "name": "Ada",
            "description": "VIP",
            "metadata": {"plan": "pro", "seats": "5"},
        },
    )
    customer = fake.customers[result["customer_id"]]
    assert result == {
        "customer_id": customer["id"],
        "email": "ada@example.com",
        "name": "Ada",
        "created": customer["created"],
        "livemode": False,
        "idempotency_key": result["idempotency_key"],
        "replayed": False,
    }
    assert customer["id"].startswith("cus_")
    assert (customer["description"], customer["metadata"]) == ("VIP", {"plan": "pro", "seats": "5"})
    assert fake.calls[-1].idempotency_key == result["idempotency_key"]
    assert len(result["idempotency_key"]) == 36  # a generated uuid4


async def test_retrieve_customer_reads_without_an_idempotency_key(
    fake: FakeStripe, runner: ActionRunner
) -> None:
    made = fake.add_customer(email="bob@example.com", name="Bob", metadata={"crm": "42"})
    result = await run(runner, "retrieve_customer", {"customer_id": made["id"]})
    assert result == {
        "customer_id": made["id"],
        "email": "bob@example.com",
        "name": "Bob",
        "description": None,
        "balance": 0,
        "currency": None,
        "metadata": {"crm": "42"},
        "created": made["created"],
        "livemode": False,
    }
    assert fake.calls[-1].idempotency_key is None


async def test_invoice_then_items_on_it(fake: FakeStripe, runner: ActionRunner) -> None:
    customer = fake.add_customer(email="c@example.com")
    invoice = await run(
        runner,
        "create_invoice",
        {
            "customer_id": customer["id"],
            "collection_method": "send_invoice",
            "days_until_due": 30,
            "description": "October",
        },
    )
    assert invoice["invoice_id"].startswith("in_")
    assert (invoice["status"], invoice["collection_method"], invoice["auto_advance"]) == (
        "draft",
        "send_invoice",
        False,
    )
    assert invoice["due_date"] == invoice["created"] + 30 * 86_400
    item = await run(
        runner,
        "create_invoice_item",
        {
            "customer_id": customer["id"],
            "amount": 2500,
            "currency": "USD",
            "description": "Consulting",
            "invoice_id": invoice["invoice_id"],
        },
    )
    assert item == {
        "invoice_item_id": item["invoice_item_id"],
        "customer_id": customer["id"],
        "amount": 2500,
        "currency": "usd",
        "description": "Consulting",
        "invoice_id": invoice["invoice_id"],
        "idempotency_key": item["idempotency_key"],
        "replayed": False,
    }
    assert item["invoice_item_id"].startswith("ii_")
    assert fake.invoices[invoice["invoice_id"]]["amount_due"] == 2500


async def test_a_pending_item_joins_an_invoice_only_when_asked(
    fake: FakeStripe, runner: ActionRunner
) -> None:
    customer = fake.add_customer()
    credit = await run(
        runner, "create_invoice_item", {"customer_id": customer["id"], "amount": -300, "currency": "eur"}
    )
    assert credit["invoice_id"] is None
    invoice = await run(
        runner,
        "create_invoice",
        {"customer_id": customer["id"], "auto_advance": True, "include_pending_items": True},
    )
    assert (invoice["amount_due"], invoice["currency"], invoice["auto_advance"]) == (-300, "eur", True)
    assert fake.invoice_items[credit["invoice_item_id"]]["invoice"] == invoice["invoice_id"]


async def test_create_payment_intent(fake: FakeStripe, runner: ActionRunner) -> None:
    customer = fake.add_customer()
    result = await run(
        runner,
        "create_payment_intent",
        {
            "amount": 1999,
            "currency": "usd",
            "customer_id": customer["id"],
            "description": "Order 7",
            "payment_method_types": ["card", "link"],
            "metadata": {"order": "7"},
        },
    )
    intent = fake.payment_intents[result["payment_intent_id"]]
    assert result == {
        "payment_intent_id": intent["id"],
        "amount": 1999,
        "currency": "usd",
        "status": "requires_payment_method",
        "customer_id": customer["id"],
        "payment_method_types": ["card", "link"],
        "created": intent["created"],
        "livemode": False,
        "idempotency_key": result["idempotency_key"],
        "replayed": False,
    }
    assert intent["id"].startswith("pi_") and intent["metadata"] == {"order": "7"}
    assert intent["client_secret"] not in json.dumps(result)  # only for the paying customer
    default = await run(runner, "create_payment_intent", {"amount": 500, "currency": "gbp"})
    assert default["payment_method_types"] == ["card"] and default["customer_id"] is None


def test_annotations_and_scopes() -> None:
    creates = ("create_customer", "create_invoice_item", "create_invoice", "create_payment_intent")
    assert all(stripe.actions[name].hints == Hints(idempotent=True) for name in creates)
    assert stripe.actions["retrieve_customer"].hints == Hints(read_only=True)
    assert stripe.actions["create_customer"].scopes == ("rak_customer_write",)
    assert stripe.actions["create_customer"].tool_name == "stripe_create_customer"


def test_form_encoding_round_trips_through_the_fakes_parser() -> None:
    params = {"a": 1, "b": None, "ok": True, "metadata": {"x": "1", "0": "zero"}, "types": ["card", "link"]}
    fields = form_fields(params)
    assert fields == [
        ("a", "1"),
        ("ok", "true"),
        ("metadata[x]", "1"),
        ("metadata[0]", "zero"),
        ("types[0]", "card"),
        ("types[1]", "link"),
    ]
    assert parse_form(fields) == {
        "a": "1",
        "ok": "true",
        "metadata": {"x": "1", "0": "zero"},
        "types": ["card", "link"],
    }
    assert parse_form([("types[]", "card"), ("types[]", "link")]) == {"types": ["card", "link"]}


# -- idempotency and retries -----------------------------------------------------------------------
async def test_the_same_key_replays_and_other_parameters_are_refused(
    fake: FakeStripe, runner: ActionRunner
) -> None:
    params = {"email": "ada@example.com", "idempotency_key": "order-7-customer"}
    first = await run(runner, "create_customer", params)
    again = await run(runner, "create_customer", params)
    assert again["customer_id"] == first["customer_id"]
    assert (first["replayed"], again["replayed"]) == (False, True)
    assert len(fake.customers) == 1
    with pytest.raises(InvalidInput) as caught:
        await run(runner, "create_customer", {**params, "email": "eve@example.com"})
    assert caught.value.field == "idempotency_key"
    assert "different parameters" in caught.value.message
    assert len(fake.customers) == 1


async def test_a_create_retried_after_a_retryable_500_makes_exactly_one_customer(
    fake: FakeStripe, runner: ActionRunner, sleeps: Sleeps
) -> None:
    # Stripe did the work but the answer was lost; only reusing the key avoids a second customer.
    fake.fail_next("customers.create", 500, should_retry=True, commit=True)
    result = await run(runner, "create_customer", {"email": "ada@example.com"})
    assert len(fake.customers) == 1
    assert result["customer_id"] in fake.customers and result["replayed"] is True
    keys = [c.idempotency_key for c in fake.calls]
    assert len(keys) == 2 and keys[0] == keys[1] == result["idempotency_key"]
    assert len(sleeps) == 1


async def test_stripe_should_retry_false_is_not_retried(fake: FakeStripe, runner: ActionRunner) -> None:
    fake.fail_next("customers.create", 500, should_retry=False)
    params = {"email": "ada@example.com", "idempotency_key": "k-500"}
    with pytest.raises(UpstreamError) as caught:
        await run(runner, "create_customer", params)
    assert (caught.value.status, caught.value.is_transient) == (500, False)
    assert len(fake.calls) == 1
    # Stripe saved that failure under the key: repeating with it gets the same 500, no customer.
    with pytest.raises(UpstreamError):
        await run(runner, "create_customer", params)
    assert fake.customers == {}


async def test_a_5xx_without_advice_is_retried(fake: FakeStripe, runner: ActionRunner) -> None:
    customer = fake.add_customer()
    fake.fail_next("customers.retrieve", 503)
    assert (await run(runner, "retrieve_customer", {"customer_id": customer["id"]}))[
        "customer_id"
    ] == customer["id"]
    assert len(fake.calls) == 2


async def test_a_long_rate_limit_goes_back_to_the_caller(fake: FakeStripe, runner: ActionRunner) -> None:
    fake.rate_limit_next("customers.create", retry_after=42)
    with pytest.raises(RateLimited) as caught:
        await run(runner, "create_customer", {"name": "Ada"})
    assert caught.value.retry_after == 42
    assert fake.customers == {} and len(fake.calls) == 1


async def test_a_rate_limit_without_retry_after_means_one_second(
    fake: FakeStripe, provider_server: tuple[Swappable, str], sleeps: Sleeps
) -> None:
    fake.rate_limit_next("balance.retrieve")
    once = ActionRunner(
        api_bases={"stripe": provider_server[1]}, retry=RetryPolicy(max_attempts=1), sleep=sleeps
    )
    with pytest.raises(RateLimited) as caught:
        await once.verify(stripe, {"secret_key": SECRET_KEY})
    assert caught.value.retry_after == 1.0


# -- errors ----------------------------------------------------------------------------------------
async def test_an_invalid_key(fake: FakeStripe, runner: ActionRunner) -> None:
    with pytest.raises(InvalidCredentials):
        await runner.verify(stripe, {"secret_key": WRONG_KEY})
    with pytest.raises(InvalidCredentials) as caught:
        await run(runner, "retrieve_customer", {"customer_id": "cus_123"}, key=WRONG_KEY)
    assert "_test_" not in caught.value.message


async def test_a_restricted_key_names_the_missing_permission(fake: FakeStripe, runner: ActionRunner) -> None:
    fake.add_key(RESTRICTED_KEY, permissions={"rak_customer_read", "rak_balance_read"})
    assert await runner.verify(stripe, {"secret_key": RESTRICTED_KEY}) == {"livemode": False}
    with pytest.raises(MissingScopes) as caught:
        await run(runner, "create_customer", {"name": "Ada"}, key=RESTRICTED_KEY)
    assert caught.value.scopes == ["rak_customer_write"] == list(stripe.actions["create_customer"].scopes)
    assert "rak_customer_write" in caught.value.message


async def test_missing_objects_are_not_found(fake: FakeStripe, runner: ActionRunner) -> None:
    with pytest.raises(NotFound, match="No such customer: 'cus_nope'"):
        await run(runner, "retrieve_customer", {"customer_id": "cus_nope"})
    gone = fake.add_customer()
    fake.delete_customer(gone["id"])
    with pytest.raises(NotFound, match="deleted"):
        await run(runner, "retrieve_customer", {"customer_id": gone["id"]})
    with pytest.raises(NotFound, match="No such customer"):
        await run(runner, "create_invoice", {"customer_id": "cus_nope"})


@pytest.mark.parametrize(
    ("action", "params", "field"),
    [
        ("create_payment_intent", {"amount": 0, "currency": "usd"}, "amount"),
        ("create_payment_intent", {"amount": 100, "currency": "dollars"}, "currency"),
        ("retrieve_customer", {"customer_id": "ada@example.com"}, "customer_id"),
        ("create_customer", {"metadata": {"a[b]": "x"}}, "metadata"),
        ("create_customer", {"idempotency_key": "has spaces"}, "idempotency_key"),
    ],
)
async def test_invalid_input_is_caught_before_calling_stripe(
    fake: FakeStripe, runner: ActionRunner, action: str, params: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        await run(runner, action, params)
    assert caught.value.field == field
    assert fake.calls == []


async def test_stripes_invalid_request_errors_name_the_field(fake: FakeStripe, runner: ActionRunner) -> None:
    with pytest.raises(InvalidInput, match="amount_too_small") as caught:
        await run(runner, "create_payment_intent", {"amount": 10, "currency": "usd"})
    assert caught.value.field == "amount"
    with pytest.raises(InvalidInput) as caught:
        await run(runner, "create_customer", {"email": "not-an-email"})
    assert caught.value.field == "email"
    customer = fake.add_customer()
    with pytest.raises(InvalidInput) as caught:
        await run(
            runner, "create_invoice", {"customer_id": customer["id"], "collection_method": "send_invoice"}
        )
    assert caught.value.field == "days_until_due"
    assert fake.invoices == {}


async def test_card_errors_and_idempotency_conflicts_are_invalid_input(
    fake: FakeStripe, runner: ActionRunner
) -> None:
    declined = {
        "type": "card_error",
        "code": "card_declined",
        "message": "Your card was declined.",
        "param": "",
    }
    fake.fail_next("payment_intents.create", 402, error=declined)
    with pytest.raises(InvalidInput, match=r"card_declined.*declined"):
        await run(runner, "create_payment_intent", {"amount": 100, "currency": "usd"})
    conflict = {"type": "idempotency_error", "message": "Keys for idempotent requests can only be used ..."}
    fake.fail_next("customers.create", 409, error=conflict)
    with pytest.raises(InvalidInput) as caught:
        await run(runner, "create_customer", {"name": "Ada", "idempotency_key": "k1"})
    assert caught.value.field == "idempotency_key"


async def test_non_json_answers_are_upstream_errors(fake: FakeStripe, runner: ActionRunner) -> None:
    fake.fail_next(
        "balance.retrieve", 502, error={"type": "api_error", "message": "Bad gateway"}, should_retry=False
    )
    with pytest.raises(UpstreamError, match="Bad gateway") as caught:
        await runner.verify(stripe, {"secret_key": SECRET_KEY})
    assert caught.value.status == 502 and not caught.value.is_transient


# -- secrets ---------------------------------------------------------------------------------------
