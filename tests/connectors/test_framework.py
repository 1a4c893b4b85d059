"""The connector framework: declarations are checked when loaded, the runtime owns retries."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import httpx
import pytest
from pydantic import BaseModel, Field, ValidationError

from connectors import (
    ActionContext,
    ActionRunner,
    ClientOptions,
    ClientPool,
    Connector,
    ConnectorSpec,
    Hints,
    RetryPolicy,
    load_catalog,
)
from connectors.errors import InvalidInput, RateLimited, UpstreamError, UpstreamTimeout
from tests.conftest import TELEGRAM_TOKEN

pytestmark = pytest.mark.anyio

TOOL_NAME = re.compile(r"^[A-Za-z0-9._-]{1,128}$")  # SEP-986


def telegram_answers(*responses: httpx.Response, delay: float = 0) -> tuple[ActionRunner, list[str]]:
    """A runner whose Telegram traffic goes to canned responses; returns it and the paths called."""
    queue, called = list(responses), []

    async def handler(request: httpx.Request) -> httpx.Response:
        called.append(request.url.path.rsplit("/", 1)[-1])
        if delay:
            await anyio.sleep(delay)
        return queue.pop(0)

    delays: list[float] = []

    async def no_sleep(seconds: float) -> None:
        delays.append(seconds)

    runner = ActionRunner(
        timeout=0.5,
        retry=RetryPolicy(max_wait=5),
        http_transport=httpx.MockTransport(handler),
        sleep=no_sleep,
    )
    runner.delays = delays  # type: ignore[attr-defined]
    return runner, called


def ok(result: object) -> httpx.Response:
    return httpx.Response(200, json={"ok": True, "result": result})


def flood(seconds: int) -> httpx.Response:
    body = {
        "ok": False,
        "error_code": 429,
        "description": "Too Many Requests",
        "parameters": {"retry_after": seconds},
    }
    return httpx.Response(429, json=body)


BOT = {"id": 1, "is_bot": True, "first_name": "T", "username": "t_bot"}
CREDENTIALS = {"bot_token": TELEGRAM_TOKEN}


def test_every_catalog_action_is_a_valid_described_tool() -> None:
    catalog = load_catalog()
    assert list(catalog) == sorted(catalog)  # stable order: tool lists depend on it
    assert {"slack", "telegram", "github", "notion", "gmail", "linear", "discord", "stripe"} <= set(catalog)
    for connector in catalog.values():
        for action in connector.actions.values():
            assert TOOL_NAME.match(action.tool_name)
            assert action.description and not action.description.endswith(" ")
            for model in (action.input_model, action.output_model):
                schema = model.model_json_schema()
                assert schema["type"] == "object"
                assert all(p.get("description") for p in schema.get("properties", {}).values()), model
            json.dumps(action.hints.as_mcp())


def test_one_registry_holds_actions_and_the_webhook_receivers_declared_beside_them() -> None:
    catalog = load_catalog()
    declared = {
        path.parent.name
        for path in Path("connectors").glob("*/connector.yaml")
        if ConnectorSpec.from_yaml(path).webhook is not None
    }
    assert set(catalog.receivers) == declared
    assert {"github", "slack", "stripe", "telegram", "twilio", "whatsapp", "gmail"} <= declared
    for slug, receiving in catalog.receivers.items():
        assert Path(f"connectors/{slug}/webhook.py").exists()
        assert hasattr(receiving.new_receiver({}), "receive")
    # Webhook-only providers are known (agents may allow them) but owners connect nothing of theirs.
    assert "twilio" not in catalog and "whatsapp" not in catalog
    assert catalog.knows("twilio") and catalog.knows("slack") and not catalog.knows("fax")
    assert catalog.receivers["whatsapp"].spec.name == "WhatsApp"


def test_a_webhook_block_without_a_receiver_and_a_receiver_without_a_block_are_refused() -> None:
    base = {"slug": "demo", "name": "Demo", "description": "d", "auth_type": "none"}
    with pytest.raises(ValidationError, match="webhook block"):
        ConnectorSpec.model_validate({**base, "webhook_only": True})
    plain = Connector(ConnectorSpec.model_validate(base))

    class Receiver:
        def receive(self, inbound: object, secrets: object) -> None: ...

    with pytest.raises(TypeError, match="declare `webhook:`"):
        plain.receiver(Receiver)  # type: ignore[arg-type]
    assert plain.webhook is None


def test_spec_rejects_unknown_keys_and_missing_credential_fields(tmp_path: Path) -> None:
    base = {"slug": "demo", "name": "Demo", "description": "d", "api_base": "https://x"}
    with pytest.raises(ValidationError, match="credential_fields"):
        ConnectorSpec.model_validate({**base, "auth_type": "api_key"})
    with pytest.raises(ValidationError, match="Extra inputs"):
        ConnectorSpec.model_validate({**base, "auth_type": "none", "colour": "red"})
    with pytest.raises(ValidationError, match="slug"):
        ConnectorSpec.model_validate({**base, "slug": "Bad Slug", "auth_type": "none"})


class In(BaseModel):
    value: int = Field(description="A number.")


class Out(BaseModel):
    doubled: int = Field(description="Twice the number.")


class Undescribed(BaseModel):
    value: int


def test_actions_must_have_docstrings_models_and_described_fields() -> None:
    connector = Connector(
        ConnectorSpec(slug="demo", name="Demo", description="d", auth_type="none", api_base="x")
    )

    async def no_doc(ctx: ActionContext[None], params: In) -> Out:
        return Out(doubled=params.value * 2)

    async def bad_field(ctx: ActionContext[None], params: Undescribed) -> Out:
        """Doc."""
        return Out(doubled=1)

    with pytest.raises(TypeError, match="docstring"):
        connector.action()(no_doc)
    with pytest.raises(TypeError, match="describe every field"):
        connector.action()(bad_field)


async def test_a_read_is_retried_after_the_providers_retry_after() -> None:
    runner, called = telegram_answers(flood(3), ok(BOT))
    action = load_catalog()["telegram"].actions["get_me"]
    result = await runner.run(load_catalog()["telegram"], action, {}, credentials=CREDENTIALS)
    assert result.model_dump()["username"] == "t_bot"
    assert called == ["getMe", "getMe"]
    assert runner.delays == [3.0]  # type: ignore[attr-defined]


async def test_a_send_is_never_retried_and_reports_when_to_retry() -> None:
    runner, called = telegram_answers(flood(3), ok({}))
    telegram = load_catalog()["telegram"]
    with pytest.raises(RateLimited) as caught:
        await runner.run(
            telegram, telegram.actions["send_message"], {"chat_id": 1, "text": "x"}, credentials=CREDENTIALS
        )
    assert caught.value.retry_after == 3.0
    assert called == ["sendMessage"]


async def test_a_wait_longer_than_allowed_goes_back_to_the_caller() -> None:
    runner, called = telegram_answers(flood(60))
    telegram = load_catalog()["telegram"]
    with pytest.raises(RateLimited):
        await runner.run(telegram, telegram.actions["get_me"], {}, credentials=CREDENTIALS)
    assert called == ["getMe"]


async def test_server_errors_are_retried_with_backoff_for_reads_only() -> None:
    runner, called = telegram_answers(
        httpx.Response(502, json={"ok": False, "error_code": 502, "description": "Bad Gateway"}),
        httpx.Response(502, json={"ok": False, "error_code": 502, "description": "Bad Gateway"}),
        httpx.Response(502, json={"ok": False, "error_code": 502, "description": "Bad Gateway"}),
    )
    telegram = load_catalog()["telegram"]
    with pytest.raises(UpstreamError):
        await runner.run(telegram, telegram.actions["get_me"], {}, credentials=CREDENTIALS)
    assert called == ["getMe"] * 3  # bounded: max_attempts
    assert all(0 <= d <= 4.0 for d in runner.delays)  # type: ignore[attr-defined]


async def test_a_slow_provider_becomes_a_timeout_error() -> None:
    runner, _ = telegram_answers(ok(BOT), delay=2)
    telegram = load_catalog()["telegram"]
    with pytest.raises(UpstreamTimeout, match="did not answer"):
        await runner.run(
            telegram, telegram.actions["send_message"], {"chat_id": 1, "text": "x"}, credentials=CREDENTIALS
        )


async def test_invalid_input_names_the_field() -> None:
    runner, called = telegram_answers()
    telegram = load_catalog()["telegram"]
    with pytest.raises(InvalidInput) as caught:
        await runner.run(
            telegram, telegram.actions["send_message"], {"chat_id": 1, "text": ""}, credentials=CREDENTIALS
        )
    assert caught.value.field == "text"
    assert called == []


def test_hints_describe_reads_and_sends() -> None:
    actions = {a.tool_name: a for c in load_catalog().values() for a in c.actions.values()}
    assert actions["slack_list_channels"].hints.as_mcp() == {
        "readOnlyHint": True,
        "destructiveHint": False,
        "idempotentHint": True,
        "openWorldHint": True,
    }
    assert actions["slack_post_message"].hints == Hints()
    assert actions["slack_post_message"].scopes == ("chat:write",)


def counting_connector(*, per_call: bool = False) -> tuple[Connector, dict[str, int]]:
    """A connector whose client factory counts how often a client is opened and closed."""
    counts = {"opened": 0, "closed": 0}
    connector = Connector(ConnectorSpec(slug="demo", name="Demo", description="d", auth_type="none"))

    @asynccontextmanager
    async def open_client(credentials: Mapping[str, str], options: ClientOptions) -> AsyncIterator[str]:
        counts["opened"] += 1
        try:
            yield credentials["token"]
        finally:
            counts["closed"] += 1

    (connector.client_per_call_only if per_call else connector.client)(open_client)

    @connector.action(Hints(read_only=True))
    async def echo(ctx: ActionContext[str], params: In) -> Out:
        """Double a number with the client's token."""
        return Out(doubled=params.value * 2 if ctx.client else 0)

    return connector, counts


async def test_a_credentials_client_is_opened_once_and_reused_until_shutdown() -> None:
    connector, counts = counting_connector()
    async with ActionRunner() as runner:
        for token in ("a", "a", "a", "b"):
            await runner.run(connector, connector.actions["echo"], {"value": 1}, credentials={"token": token})
        assert counts == {"opened": 2, "closed": 0}  # one client per credential, kept open
    assert counts == {"opened": 2, "closed": 2}  # the runtime closes them at shutdown


async def test_a_per_call_client_is_opened_and_closed_around_each_call() -> None:
    connector, counts = counting_connector(per_call=True)
    async with ActionRunner() as runner:
        for _ in range(3):
            await runner.run(connector, connector.actions["echo"], {"value": 1}, credentials={"token": "a"})
        assert counts == {"opened": 3, "closed": 3}


async def test_idle_pooled_clients_are_closed_and_a_crowded_pool_drops_the_oldest() -> None:
    now = [0.0]
    pool = ClientPool(idle_seconds=60, max_clients=2, clock=lambda: now[0])
    closed: list[str] = []

    @asynccontextmanager
    async def client(name: str) -> AsyncIterator[str]:
        try:
            yield name
        finally:
            closed.append(name)

    for name in ("one", "two", "three"):  # a third client crowds out the least recently used
        now[0] += 1
        async with pool.lease(name, lambda name=name: client(name)) as opened:
            assert opened == name
    assert closed == ["one"] and len(pool) == 2
    now[0] += 61
    async with pool.lease("four", lambda: client("four")):
        pass
    assert closed == ["one", "two", "three"] and len(pool) == 1  # idle ones went when a lease ended
    await pool.aclose()
    assert closed[-1] == "four" and len(pool) == 0
