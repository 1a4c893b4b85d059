"""Every connector against its fake: the behaviour an agent relies on, checked the same way for all.

Each test runs once per connector in the catalog, driven by that connector's case in `cases.py`;
after every test, no canary secret may appear in what came back or in any log line.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from connectors.errors import (
    ConnectorError,
    InvalidCredentials,
    InvalidInput,
    MissingScopes,
    RateLimited,
    UpstreamError,
    UpstreamTimeout,
)
from server.logs import install_redaction
from tests.connectors.cases import CASES, CATALOG, Call, Case, Loopback
from tests.fakes.loopback import run_asgi_on_loopback
from tests.fakes.smtp import SmtpSink, make_throwaway_ca, refusing_port, run_smtp_on_loopback
from tests.support.asgi import Swappable

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def loopback(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loopback]:
    ca = make_throwaway_ca()
    sink = SmtpSink()
    context = ca.server_context(tmp_path_factory.mktemp("smtp-tls"))
    holder = Swappable()
    with run_asgi_on_loopback(holder) as url, run_smtp_on_loopback(sink, "starttls", context) as port:
        yield Loopback(holder, url, sink, ca, port)


class Probe:
    """Runs calls for one case and keeps every text the connector handed back, for the canary check."""

    def __init__(self, case: Case) -> None:
        self.case = case
        self.texts: list[str] = []

    async def run(self, call: Call, credentials: dict[str, str] | None = None) -> dict[str, Any]:
        action = self.case.connector.actions[call.action]
        result = await self.case.runner().run(
            self.case.connector, action, call.params, credentials=credentials or self.case.credentials
        )
        dumped = result.model_dump(mode="json")
        self.texts.append(repr(dumped))
        return dumped

    async def fails(
        self, kind: type[ConnectorError], call: Call, credentials: dict[str, str] | None = None
    ) -> ConnectorError:
        with pytest.raises(kind) as caught:
            await self.run(call, credentials)
        self.saw(caught.value)
        return caught.value

    def saw(self, error: ConnectorError) -> None:
        self.texts += [str(error), error.message, repr(error.facts()), repr(error.detail)]


# Files connectors (uploaded files, buckets) have no actions; tests/server/test_files_api.py covers them.
@pytest.fixture(params=sorted(slug for slug, connector in CATALOG.items() if connector.actions))
def probe(
    request: pytest.FixtureRequest, loopback: Loopback, caplog: pytest.LogCaptureFixture
) -> Iterator[Probe]:
    slug: str = request.param
    if slug not in CASES:
        pytest.fail(f"connector {slug!r} has no conformance case: add one to tests/connectors/cases.py")
    install_redaction(caplog.handler)
    for logger in (None, "httpx", "httpcore", "slack_sdk", "googleapiclient", "notion_client", "aiosmtplib"):
        caplog.set_level(logging.DEBUG, logger=logger)  # the chattiest level these clients have
    probe = Probe(CASES[slug](loopback))
    yield probe
    seen = [*probe.texts, caplog.text]
    leaked = [secret for secret in probe.case.secrets() if any(secret in text for text in seen)]
    assert leaked == [], f"{slug}: canary secrets leaked into results, errors or logs"


async def test_the_happy_path_returns_the_providers_ids(probe: Probe) -> None:
    case = probe.case
    account = await case.runner().verify(case.connector, case.credentials)
    probe.texts.append(repr(account))
    assert account, "verify names the account"
    result = await probe.run(case.happy)
    missing = [key for key in case.ids if result.get(key) in (None, "", [])]
    assert missing == [], f"{case.happy.action} result lacks {missing}"


async def test_the_providers_refusal_is_actionable(probe: Probe) -> None:
    refusal = probe.case.provider_error
    error = await probe.fails(refusal.kind, refusal.call)
    assert refusal.mentions in error.message
    assert error.facts()["code"] == refusal.kind.code
    if isinstance(error, InvalidInput):
        assert error.field, "invalid input names the field"


async def test_invalid_input_names_the_field_before_calling_the_provider(probe: Probe) -> None:
    served = probe.case.served()
    for name, action in probe.case.connector.actions.items():
        fields = action.input_model.model_fields
        if not fields:
            continue  # nothing to get wrong
        if any(info.is_required() for info in fields.values()):
            params: dict[str, Any] = {}  # a required field (or one a connection default fills) is missing
        else:
            params = {key: [[[]]] for key in fields}  # nested lists fit no scalar field
        error = await probe.fails(InvalidInput, Call(name, params))
        assert error.field in fields, f"{name}: {error.facts()}"
    assert probe.case.served() == served


async def test_invalid_credentials_ask_for_a_new_connection(probe: Probe) -> None:
    case = probe.case
    with pytest.raises(InvalidCredentials) as refused:
        await case.runner().verify(case.connector, case.bad_credentials)
    probe.saw(refused.value)
    await probe.fails(InvalidCredentials, case.happy, case.bad_credentials)


async def test_a_missing_scope_is_named(probe: Probe) -> None:
    check = probe.case.missing_scope
    declared = {scope for action in probe.case.connector.actions.values() for scope in action.scopes}
    if check is None:
        assert not declared, "actions declare scopes: give the case a ScopeCheck"
        return
    error = await probe.fails(MissingScopes, check.call, check.credentials)
    assert isinstance(error, MissingScopes)
    assert check.scope in error.scopes and check.scope in error.message


async def test_a_short_rate_limit_on_a_repeatable_call_is_waited_out(probe: Probe) -> None:
    case = probe.case
    if case.repeatable is None:
        repeatable = [a.name for a in case.connector.actions.values() if a.hints.safe_to_repeat]
        assert repeatable == [], "an action is safe to repeat: give the case a repeatable call"
        return
    case.rate_limit(case.repeatable, 2)
    served = case.served()
    await probe.run(case.repeatable)
    [waited] = case.sleeps
    assert 0.5 <= waited <= 3, f"waited {waited}s for a 2s limit"
    assert case.served() == served + 2


async def test_a_long_rate_limit_goes_back_with_retry_after(probe: Probe) -> None:
    case = probe.case
    call = case.repeatable or case.send
    case.rate_limit(call, 3600)
    served = case.served()
    error = await probe.fails(RateLimited, call)
    assert isinstance(error, RateLimited)
    assert error.facts()["retryAfter"] == round(error.retry_after, 3) > 0
    if case.states_wait:
        assert 3500 <= error.retry_after <= 3601
    assert case.sleeps == [] and case.served() == served + 1


async def test_a_rate_limited_send_is_repeated_only_with_an_idempotency_key(probe: Probe) -> None:
    case = probe.case
    case.rate_limit(case.send, 1)
    served = case.served()
    if case.connector.actions[case.send.action].hints.safe_to_repeat:
        await probe.run(case.send)  # keyed: the provider turns a repeat into a replay
        assert len(case.sleeps) == 1 and case.served() == served + 2
    else:
        await probe.fails(RateLimited, case.send)
        assert case.sleeps == [] and case.served() == served + 1


async def test_an_unreachable_provider_is_a_transient_error(probe: Probe) -> None:
    case = probe.case
    with refusing_port() as port:
        runner, credentials = case.unreachable(port)
        action = case.connector.actions[case.happy.action]
        with pytest.raises((UpstreamError, UpstreamTimeout)) as caught:
            await runner.run(case.connector, action, case.happy.params, credentials=credentials)
    error = caught.value
    probe.saw(error)
    assert isinstance(error, UpstreamTimeout) or (isinstance(error, UpstreamError) and error.is_transient)
