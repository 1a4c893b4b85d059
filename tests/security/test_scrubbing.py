"""Secrets never come back in another form: a provider's echo of the credential is masked on the
decoded values of every answer field and error text, in its raw, percent-encoded, JSON-escaped and
base64 forms, and logs (at any level) carry neither secrets nor tool results nor job payloads."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import httpx
import pytest

from auth.redaction import secret_forms
from connectors import ActionRunner, load_catalog
from server.logs import install_redaction
from server.settings import Settings
from tests.conftest import TELEGRAM_TOKEN, Fakes, LiveTendril
from tests.e2e.tendril_process import tendril_serve
from tests.fakes.http_upstream import FakeUpstream
from tests.fakes.loopback import run_asgi_on_loopback
from tests.support.mcp import mcp_client
from tests.support.webhooks import GitHubSigner

pytestmark = pytest.mark.anyio

TOKEN = "Canary/Scrub+Token=9d2e"  # slashes and symbols: it reads differently in every encoding
USER, PASSWORD = "ann", "Canary-Scrub-Password-41"


def every_form(secret: str) -> set[str]:
    return secret_forms(secret) | {quote(secret, safe=""), quote_plus(secret), json.dumps(secret)[1:-1]}


def assert_absent(text: str, *secrets: str) -> None:
    for secret in secrets:
        for form in every_form(secret):
            assert form not in text, f"{form!r} leaked"


@pytest.fixture
def upstream() -> Iterator[str]:
    fake = FakeUpstream()
    fake.accepted_authorization.add(f"Bearer {TOKEN}")
    fake.accepted_authorization.add("Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode())
    with run_asgi_on_loopback(fake.app) as url:
        yield url


async def http_call(url: str, params: dict[str, Any], **credentials: str) -> str:
    http = load_catalog()["http"]
    host = url.split("//", 1)[1]
    fields = {
        "base_url": f"{url}/api",
        "auth": "bearer",
        "token": TOKEN,
        "allowed_hosts": host,
        **credentials,
    }
    async with ActionRunner(timeout=5, allowed_hosts={"http": ["127.0.0.1"]}) as runner:
        result = await runner.run(http, http.actions["request"], params, credentials=fields)
    return result.model_dump_json()


async def test_a_redirect_url_carrying_the_token_percent_encoded_comes_back_masked(upstream: str) -> None:
    target = f"{upstream}/api/echo?auth=Bearer%20{quote(TOKEN, safe='')}"
    answer = await http_call(upstream, {"path": "redirect", "query": {"to": target}})
    assert '"status":200' in answer and "/api/echo" in answer
    assert_absent(answer, TOKEN)


async def test_a_json_escaped_echo_of_the_credential_comes_back_masked(upstream: str) -> None:
    bearer = await http_call(upstream, {"path": "escaped"})
    basic = await http_call(upstream, {"path": "escaped"}, auth="basic", username=USER, password=PASSWORD)
    assert "****" in bearer and "****" in basic
    assert_absent(bearer, TOKEN)
    assert_absent(basic, PASSWORD, base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode())


async def test_a_telegram_error_quoting_the_bot_path_is_masked_over_rest_and_mcp(
    live_tendril: LiveTendril, fakes: Fakes
) -> None:
    fault = {
        "ok": False,
        "error_code": 500,
        "description": f"Internal error at /bot{TELEGRAM_TOKEN}/sendMessage",
    }
    async with httpx.AsyncClient(base_url=live_tendril.url, timeout=30) as http:
        http.headers["X-Api-Key"] = live_tendril.admin.api_key
        started = (await http.post("/api/v1/connections", json={"connectorSlug": "telegram"})).json()
        connection = started["connection"]["id"]
        await http.post(f"/api/v1/connections/{connection}/credentials", json={"bot_token": TELEGRAM_TOKEN})
        agent = (
            await http.post("/api/v1/agents", json={"name": "t", "allowedConnectors": ["telegram"]})
        ).json()
        fakes.telegram.break_next("sendMessage", fault, status=500)
        rest = await http.post(
            f"/api/v1/connections/{connection}/actions/send_message",
            json={"parameters": {"chat_id": 1, "text": "hi"}},
        )
    fakes.telegram.break_next("sendMessage", fault, status=500)
    async with mcp_client(live_tendril.url, agent["apiKey"]) as mcp:
        result = await mcp.call_tool("telegram_send_message", {"chat_id": 1, "text": "hi"})
    assert rest.status_code == 502 and "Internal error at /bot" in rest.text
    assert result.is_error and "Internal error at /bot" in result.model_dump_json()
    assert_absent(rest.text, TELEGRAM_TOKEN)
    assert_absent(result.model_dump_json(), TELEGRAM_TOKEN)


def test_logs_mask_a_secret_in_each_of_its_forms(caplog: pytest.LogCaptureFixture) -> None:
    from auth.redaction import secrets_to_redact

    secret = "Canary/Logged Secret+5"
    secrets_to_redact.register(secret)
    install_redaction(caplog.handler)
    caplog.set_level(logging.DEBUG)
    log = logging.getLogger("tests.security")
    for form in every_form(secret):
        log.warning("upstream said: %s", form)
    assert len(caplog.records) == len(every_form(secret))
    assert_absent(caplog.text, secret)


def test_a_process_that_opened_thousands_of_secrets_masks_each_and_the_longest_whole() -> None:
    from auth.redaction import MASK, SecretRegistry

    registry = SecretRegistry()
    opened = [f"tok-{n:05d}-{'x' * (n % 7)}" for n in range(3000)]
    for secret in opened:
        registry.register(secret)
    registry.register("shared-prefix-0123")
    registry.register("shared-prefix-0123-and-more")  # contains the one before: masked whole
    line = " ".join(opened[::250]) + " shared-prefix-0123-and-more shared-prefix-0123 tok-0"
    masked = registry.redact(line)
    assert masked == " ".join([MASK] * (len(opened[::250]) + 2)) + " tok-0"


async def test_at_debug_neither_tool_results_nor_job_payloads_reach_the_log(
    settings: Settings, empty_database_url: str, fakes: Fakes, tmp_path: Path
) -> None:
    """`tendril serve` at TENDRIL_LOG_LEVEL=DEBUG on a new database (its migrations logged too): a
    tool call and a claimed job, then its log."""
    settings = settings.model_copy(update={"database_url": empty_database_url})
    marker_text, marker_payload = "Canary-Result-Text-7f1", "Canary-Job-Payload-2c9"
    env = {"TENDRIL_LOG_LEVEL": "DEBUG", "TENDRIL_WEBHOOK_ALLOW_INSECURE_URLS": "true"}
    with tendril_serve(settings, tmp_path, **env) as served:
        admin_key = served.stdout.split("keep it:")[1].split()[0]
        async with httpx.AsyncClient(base_url=served.url, timeout=30) as http:
            http.headers["X-Api-Key"] = admin_key
            started = (await http.post("/api/v1/connections", json={"connectorSlug": "telegram"})).json()
            telegram = started["connection"]["id"]
            await http.post(f"/api/v1/connections/{telegram}/credentials", json={"bot_token": TELEGRAM_TOKEN})
            github = (await http.post("/api/v1/connections", json={"connectorSlug": "github"})).json()
            signer = GitHubSigner()
            made = await http.post(
                f"/api/v1/connections/{github['connection']['id']}/webhooks",
                json={"provider": "github", "secrets": signer.secrets},
            )
            agent = (
                await http.post(
                    "/api/v1/agents", json={"name": "d", "allowedConnectors": ["telegram", "github"]}
                )
            ).json()
            delivery = signer.sign_body(
                json.dumps({"action": "opened", "issue": {"title": marker_payload}}).encode()
            )
            path = f"/api/v1/connectors/webhooks/github/{made.json()['endpoint']['id']}"
            assert (await http.post(path, content=delivery.body, headers=delivery.headers)).status_code == 200
        fakes.telegram.push_message(123456789, marker_text)
        async with mcp_client(served.url, agent["apiKey"]) as mcp:
            sent = await mcp.call_tool("telegram_get_updates", {})
            claimed = await mcp.call_tool("tendril_claim_jobs", {"limit": 1})
        assert marker_text in sent.model_dump_json() and marker_payload in claimed.model_dump_json()
        log = served.stderr
    assert " DEBUG " in log, "the server was not logging at DEBUG"
    for leaked in (marker_text, marker_payload, TELEGRAM_TOKEN, signer.secrets["secret"], agent["apiKey"]):
        assert leaked not in log, f"{leaked} reached the log"
