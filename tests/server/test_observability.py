"""What an operator watches: the access log (text and JSON lines, never a secret), the Prometheus
metrics at /metrics (behind their token), and /readyz against the database's migrations."""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import anyio
import httpx
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.script import ScriptDirectory
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from auth.redaction import secrets_to_redact
from server.core.readiness import Readiness
from server.logs import CONTENT_LOGGERS, LogFormat, formatter_for, install_redaction, quiet_noisy_loggers
from server.settings import Settings
from storage import db
from storage.db import MigrationState
from tests.conftest import (
    SLACK_TOKEN,
    TELEGRAM_TOKEN,
    Fakes,
    LiveTendril,
    OAuthFakes,
    Tendril,
    running_tendril,
    serving,
)
from tests.server.test_oauth_flow import connected_via_oauth, expire_the_access_token
from tests.support.hooks import hook_up
from tests.support.mcp import mcp_client
from tests.support.webhooks import GitHubSigner

pytestmark = pytest.mark.anyio

METRICS_TOKEN = "metrics-Canary-Token-6c1f0e"
RECEIVER_ROUTE = "/api/v1/connectors/webhooks/{provider}/{endpointId}"
# Never registered anywhere: only keeping URLs and headers out of the log keeps these out.
QUERY_CANARY = "Canary-Query-Token-2b7d41a9"
HEADER_CANARY = "Canary-Header-Token-90e3c7d5"


# -- capturing what Tendril logs, as `tendril serve` sets logging up --------------------------------
@dataclass
class Logs:
    stream: io.StringIO
    handler: logging.Handler

    def use(self, log_format: LogFormat) -> None:
        self.handler.setFormatter(formatter_for(log_format))

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def json_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text.splitlines() if line.strip()]

    def access(self) -> list[dict[str, Any]]:
        return [line for line in self.json_lines() if line["logger"] == "tendril.access"]

    def clear(self) -> None:
        self.stream.seek(0)
        self.stream.truncate()


@pytest.fixture
def logs() -> Iterator[Logs]:
    """JSON lines through the redaction filter on the root logger at INFO, like configure_logging."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    install_redaction(handler)
    root = logging.getLogger()
    levels = {name: logging.getLogger(name).level for name in ("", *CONTENT_LOGGERS)}
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    quiet_noisy_loggers()
    captured = Logs(stream, handler)
    captured.use("json")
    try:
        yield captured
    finally:
        root.removeHandler(handler)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


async def key_id_of(tendril: Tendril, owner_id: str) -> str:
    [key] = await tendril.core.identity.list_api_keys(uuid.UUID(owner_id))
    return str(key.id)


def samples(exposition: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a scrape, parsed by prometheus_client's own parser: (name, labels) -> value."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }


def value(scrape: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return scrape.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
async def watched(settings: Settings) -> AsyncIterator[Tendril]:
    """Tendril with a metrics token."""
    async with running_tendril(
        settings.model_copy(update={"metrics_token": SecretStr(METRICS_TOKEN)})
    ) as app:
        yield app


async def scrape_of(tendril: Tendril) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    async with tendril.raw() as http:
        answer = await http.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain; version=")
    return samples(answer.text)


# -- the access log ---------------------------------------------------------------------------------
async def test_an_access_line_names_the_route_template_status_and_key_never_the_path(
    tendril: Tendril, logs: Logs
) -> None:
    owner = await tendril.new_owner()
    missing = uuid.uuid4()
    async with tendril.raw() as http:
        http.headers["Authorization"] = f"Bearer {owner.api_key}"
        assert (
            await http.get(f"/api/v1/connections/{missing}?access_token={QUERY_CANARY}")
        ).status_code == 404
        assert (await http.get("/api/v1/agents")).status_code == 200
        del http.headers["Authorization"]
        assert (await http.get("/api/v1/agents")).status_code == 401

    lookup, listing, refused = logs.access()
    key_id = await key_id_of(tendril, owner.id)
    assert {k: lookup[k] for k in ("method", "route", "status", "key_id", "client")} == {
        "method": "GET",
        "route": "/api/v1/connections/{id}",
        "status": 404,
        "key_id": key_id,
        "client": "127.0.0.1",
    }
    assert lookup["message"] == (
        f"GET /api/v1/connections/{{id}} 404 {lookup['duration_ms']:.1f}ms client=127.0.0.1 key={key_id}"
    )
    assert isinstance(lookup["duration_ms"], float) and lookup["duration_ms"] >= 0
    assert {"timestamp", "level", "logger"} <= set(lookup) and lookup["level"] == "INFO"
    assert (listing["route"], listing["status"], listing["key_id"]) == ("/api/v1/agents", 200, key_id)
    assert refused["status"] == 401 and "key_id" not in refused and "agent_id" not in refused
    assert str(missing) not in logs.text and QUERY_CANARY not in logs.text
    assert owner.api_key not in logs.text


async def test_text_access_lines_say_the_same_in_one_line(tendril: Tendril, logs: Logs) -> None:
    logs.use("text")
    owner = await tendril.new_owner()
    async with tendril.raw() as http:
        await http.get("/api/v1/agents", headers={"X-Api-Key": owner.api_key})
        await http.get("/no/such/page")
    [line] = [line for line in logs.text.splitlines() if " tendril.access: " in line and "agents" in line]
    key_id = await key_id_of(tendril, owner.id)
    assert line.split(" tendril.access: ")[1].startswith("GET /api/v1/agents 200 ")
    assert line.endswith(f"client=127.0.0.1 key={key_id}") and " INFO " in line
    assert "/no/such/page" not in logs.text  # unmatched paths are logged by the catch-all's template
    assert " tendril.access: GET /{path} 404 " in logs.text


async def test_probes_stay_out_of_the_access_log_unless_asked_and_the_log_can_be_off(
    settings: Settings, logs: Logs
) -> None:
    for update, logged in (
        ({}, {"/api/v1/agents"}),
        ({"access_log_probes": True}, {"/healthz", "/readyz", "/metrics", "/api/v1/agents"}),
        ({"access_log": False}, set()),
    ):
        async with running_tendril(settings.model_copy(update=update)) as tendril, tendril.raw() as http:
            logs.clear()
            for path in ("/healthz", "/readyz", "/metrics", "/api/v1/agents"):
                await http.get(path)
            routes = {line["route"] for line in logs.access()}
            assert routes == logged, update
            assert "alembic" not in logs.text  # a readiness check logs nothing of its own
            scrape = tendril.core.metrics.registry
            # Counted whatever is logged.
            assert (
                scrape.get_sample_value(
                    "tendril_http_requests_total", {"method": "GET", "route": "/healthz", "status": "200"}
                )
                == 1
            )


async def test_neither_log_format_ever_prints_a_secret(watched: Tendril, fakes: Fakes, logs: Logs) -> None:
    owner = await watched.new_owner()
    for log_format in ("json", "text"):
        logs.use(log_format)
        async with watched.raw() as http:
            http.headers["Authorization"] = f"Bearer {owner.api_key}"
            started = await http.post("/api/v1/connections", json={"connectorSlug": "telegram"})
            connection_id = started.json()["connection"]["id"]
            submitted = await http.post(
                f"/api/v1/connections/{connection_id}/credentials", json={"bot_token": TELEGRAM_TOKEN}
            )
            assert submitted.status_code == 200, submitted.text
            await http.get(f"/api/v1/agents?token={QUERY_CANARY}&key={owner.api_key}")
            await http.get("/api/v1/agents", headers={"Authorization": f"Bearer {HEADER_CANARY}"})
            await http.get("/api/v1/agents", headers={"X-Api-Key": HEADER_CANARY})
            await http.get("/metrics", headers={"Authorization": f"Bearer {HEADER_CANARY}"})
            await http.post(
                f"/mcp?access_token={QUERY_CANARY}", headers={"Authorization": f"Bearer {SLACK_TOKEN}"}
            )
            await http.get(f"/connect/{connection_id}?token={QUERY_CANARY}")
        # What other code logs goes through the same masking, fields given with `extra=` included.
        secrets_to_redact.register(TELEGRAM_TOKEN)
        noisy = logging.getLogger("connectors.telegram")
        noisy.warning("calling https://api.telegram.org/bot%s/getMe", TELEGRAM_TOKEN)
        noisy.warning("upstream said no", extra={"detail": f"Authorization: Bearer {SLACK_TOKEN}"})
        try:
            raise RuntimeError(f"token {TELEGRAM_TOKEN} refused")
        except RuntimeError:
            noisy.exception("failed")

        captured = logs.text
        assert captured.count("tendril.access") >= 7
        for secret in (
            TELEGRAM_TOKEN,
            SLACK_TOKEN,
            QUERY_CANARY,
            HEADER_CANARY,
            owner.api_key,
            METRICS_TOKEN,
        ):
            assert secret not in captured, (log_format, secret)
        assert "****" in captured
        if log_format == "json":
            lines = logs.json_lines()  # every line is one JSON object
            assert any(line.get("detail") == "Authorization: Bearer ****" for line in lines)
            assert any("RuntimeError" in line.get("exception", "") for line in lines)
        logs.clear()


# -- metrics ----------------------------------------------------------------------------------------
async def test_metrics_answer_404_without_a_token_configured(tendril: Tendril) -> None:
    async with tendril.raw() as http:
        answer = await http.get("/metrics", headers={"Authorization": "Bearer anything"})
    assert answer.status_code == 404 and answer.json()["code"] == "NOT_FOUND"


async def test_metrics_need_their_token_and_show_requests_by_route_template(watched: Tendril) -> None:
    owner = await watched.new_owner()
    missing = uuid.uuid4()
    async with watched.raw() as http:
        assert (await http.get("/metrics")).status_code == 401
        wrong = await http.get("/metrics", headers={"Authorization": "Bearer not-the-token"})
        assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
        assert (
            await http.get("/metrics", headers={"Authorization": f"Bearer {owner.api_key}"})
        ).status_code == 401
        await http.get(f"/api/v1/connections/{missing}", headers={"X-Api-Key": owner.api_key})
        await http.request("BREW", "/api/v1/agents")  # an unknown method is "other", not a new label

    scrape = await scrape_of(watched)
    assert (
        value(
            scrape,
            "tendril_http_requests_total",
            method="GET",
            route="/api/v1/connections/{id}",
            status="404",
        )
        == 1
    )
    assert value(scrape, "tendril_http_requests_total", method="GET", route="/metrics", status="401") == 3
    assert (
        value(
            scrape,
            "tendril_http_request_duration_seconds_count",
            method="GET",
            route="/api/v1/connections/{id}",
        )
        == 1
    )
    assert (
        value(scrape, "tendril_http_requests_total", method="other", route="/api/{path:path}", status="405")
        == 1
    )
    labels = {v for _, pairs in scrape for _, v in pairs}
    assert str(missing) not in labels and "BREW" not in labels
    # Read at scrape time: jobs by state, the database pool, the process.
    assert {state: value(scrape, "tendril_jobs", state=state) for state in ("queued", "dead")} == {
        "queued": 0,
        "dead": 0,
    }
    assert ("tendril_oldest_queued_job_age_seconds", frozenset()) in scrape
    assert value(scrape, "tendril_db_pool_size") >= 1
    assert ("tendril_db_pool_connections_in_use", frozenset()) in scrape
    assert value(scrape, "process_cpu_seconds_total") > 0


async def test_each_app_counts_its_own_requests(watched: Tendril, settings: Settings) -> None:
    async with running_tendril(settings) as other, other.raw() as http:
        await http.get("/healthz")
        await http.get("/healthz")
    healthz = {"method": "GET", "route": "/healthz", "status": "200"}
    assert other.core.metrics.registry.get_sample_value("tendril_http_requests_total", healthz) == 2
    assert watched.core.metrics.registry.get_sample_value("tendril_http_requests_total", healthz) is None


async def test_webhook_deliveries_are_counted_by_provider_and_result_and_jobs_by_state(
    hub_app: Tendril, fakes: Fakes, logs: Logs
) -> None:
    signer = GitHubSigner()
    hooked = await hook_up(hub_app, signer, fakes)
    async with hooked:
        good = signer.deliver("2001")
        assert (await hooked.post(good.body, good.headers)).status_code == 200
        assert (await hooked.post(good.body, good.headers)).status_code == 200  # the provider retries
        forged = signer.deliver("2002", forged=True)
        assert (await hooked.post(forged.body, forged.headers)).status_code == 403
        stranger = f"/api/v1/connectors/webhooks/made-up-{uuid.uuid4().hex}/{uuid.uuid4()}"
        assert (await hooked.api.post(stranger, content=good.body)).status_code == 404

    registry = hub_app.core.metrics.registry
    counted = {
        (provider, result): registry.get_sample_value(
            "tendril_webhook_deliveries_total", {"provider": provider, "result": result}
        )
        for provider, result in (
            ("github", "accepted"),
            ("github", "duplicate"),
            ("github", "refused"),
            ("unknown", "refused"),
        )
    }
    assert counted == {
        ("github", "accepted"): 1,
        ("github", "duplicate"): 1,
        ("github", "refused"): 1,
        ("unknown", "refused"): 1,
    }
    assert [line["status"] for line in logs.access() if line["route"] == RECEIVER_ROUTE] == [
        200,
        200,
        403,
        404,
    ]
    assert "made-up" not in logs.text

    exposition = (await hub_app.core.metrics.exposition()).decode()
    scrape = samples(exposition)
    assert value(scrape, "tendril_jobs", state="queued") == 1
    hub_app.clock.advance(timedelta(minutes=5))
    waited = value(
        samples((await hub_app.core.metrics.exposition()).decode()), "tendril_oldest_queued_job_age_seconds"
    )
    assert 300 <= waited < 400


async def test_provider_errors_and_rate_limits_are_counted_by_connector(
    tendril: Tendril, fakes: Fakes
) -> None:
    owner = await tendril.new_owner()
    client = tendril.client(owner.api_key)
    started = await client.create_connection("slack")
    connection = await client.submit_credentials(started.connection.id, {"bot_token": SLACK_TOKEN})
    fakes.slack.rate_limit_next("conversations.list", retry_after=60)  # longer than Tendril waits itself
    fakes.slack.fail_next("chat.postMessage", status=500)
    for action, params in (("list_channels", {}), ("post_message", {"channel": "#general", "text": "hi"})):
        with pytest.raises(Exception):  # noqa: B017 - the REST client's error, whichever it is
            await client.run_action(connection.id, action, params)

    registry = tendril.core.metrics.registry
    assert registry.get_sample_value("tendril_provider_rate_limits_total", {"connector": "slack"}) == 1
    assert (
        registry.get_sample_value(
            "tendril_provider_errors_total", {"connector": "slack", "code": "upstream_error"}
        )
        == 1
    )


async def test_oauth_refreshes_are_counted_by_connector_and_outcome(
    oauth_tendril: Tendril, oauth_fakes: OAuthFakes
) -> None:
    oauth_fakes.slack.slack_token_rotation = True  # expiring tokens with refresh tokens
    owner = await oauth_tendril.new_owner()
    connection_id = await connected_via_oauth(oauth_tendril, owner, "slack")
    client = oauth_tendril.client(owner.api_key)
    await expire_the_access_token(oauth_tendril, connection_id)
    await client.run_action(connection_id, "list_channels", {})
    for token in oauth_fakes.slack.issued:
        token.revoked = True  # the user removed the app
    await expire_the_access_token(oauth_tendril, connection_id)
    with pytest.raises(Exception):  # noqa: B017 - NOT_CONNECTED: asked to reconnect
        await client.run_action(connection_id, "list_channels", {})

    registry = oauth_tendril.core.metrics.registry
    refreshes = {
        outcome: registry.get_sample_value(
            "tendril_oauth_token_refreshes_total", {"connector": "slack", "outcome": outcome}
        )
        for outcome in ("ok", "refused", "failed")
    }
    assert refreshes == {"ok": 1, "refused": 1, "failed": None}


@pytest.fixture
def watched_live(settings: Settings) -> Iterator[LiveTendril]:
    with serving(settings.model_copy(update={"metrics_token": SecretStr(METRICS_TOKEN)})) as live:
        yield live


@pytest.mark.timeout(120)
async def test_a_live_scrape_parses_and_counts_a_tool_call_over_mcp(
    watched_live: LiveTendril, fakes: Fakes, logs: Logs
) -> None:
    live = watched_live
    before = await live_scrape(live)
    async with live.client() as owner:
        started = await owner.create_connection("slack")
        await owner.submit_credentials(started.connection.id, {"bot_token": SLACK_TOKEN})
        agent = await owner.create_agent("watched", ["slack"])
    async with mcp_client(live.url, agent.api_key) as mcp:
        result = await mcp.call_tool("slack_post_message", {"channel": "#general", "text": "counted"})
        assert result.is_error is False
        await mcp.call_tool("slack_post_message", {"channel": "#nowhere", "text": "refused"})
    after = await live_scrape(live)

    posted = {"connector": "slack", "action": "post_message"}
    assert value(before, "tendril_mcp_tool_calls_total", **posted, outcome="ok") == 0
    assert value(after, "tendril_mcp_tool_calls_total", **posted, outcome="ok") == 1
    assert value(after, "tendril_mcp_tool_calls_total", **posted, outcome="not_found") == 1
    assert value(after, "tendril_mcp_tool_call_duration_seconds_count", **posted) == 2
    assert value(after, "tendril_mcp_tool_call_duration_seconds_bucket", **posted, le="+Inf") == 2
    mcp_posts = value(after, "tendril_http_requests_total", method="POST", route="/mcp", status="200")
    assert mcp_posts >= 3  # initialize, the notification's 202 aside, and two calls
    [agent_line, *_] = [line for line in logs.access() if line["route"] == "/mcp" and "agent_id" in line]
    assert agent_line["agent_id"] == agent.agent.id and "key_id" not in agent_line
    assert agent.api_key not in logs.text


async def live_scrape(live: LiveTendril) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    async with httpx.AsyncClient(base_url=live.url) as http:
        answer = await http.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert answer.status_code == 200, answer.text
    return samples(answer.text)


# -- readiness --------------------------------------------------------------------------------------
def previous_revision() -> str:
    scripts = ScriptDirectory.from_config(db.alembic_config())
    [head] = scripts.get_heads()
    down = scripts.get_revision(head).down_revision
    assert isinstance(down, str)
    return down


async def stamp(tendril: Tendril, revision: str) -> None:
    """Record `revision` as the schema's version, as a database one migration behind would."""

    def run(connection: Any) -> None:
        config = db.alembic_config()
        config.attributes["connection"] = connection
        command.stamp(config, revision, purge=True)

    async with tendril.core._engine.begin() as conn:
        await conn.run_sync(run)


async def test_readyz_is_ready_at_head_and_503_behind_on_migrations(tendril: Tendril) -> None:
    engine = tendril.core._engine
    tendril.core.readiness = Readiness(lambda: db.migration_state(engine), cache_seconds=0)
    async with tendril.raw() as http:
        ready = await http.get("/readyz")
        assert (ready.status_code, ready.json()) == (200, {"status": "ready"})

        await stamp(tendril, previous_revision())
        behind = await http.get("/readyz")
        assert behind.status_code == 503
        assert behind.json()["status"] == "unavailable"
        assert f"at revision {previous_revision()}; this code needs" in behind.json()["reason"]
        assert (await http.get("/healthz")).status_code == 200  # still alive: nothing to restart

        await stamp(tendril, "head")  # as if the missing migration had run
        assert (await http.get("/readyz")).status_code == 200

        # A newer release migrated the database past what this code knows: not ready either.
        async with engine.begin() as conn:
            await conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999_from_the_future'"))
        ahead = await http.get("/readyz")
        assert ahead.status_code == 503 and "at revision 9999_from_the_future" in ahead.json()["reason"]


async def test_readyz_answers_from_its_cache_between_checks(tendril: Tendril) -> None:
    async with tendril.raw() as http:
        assert (await http.get("/readyz")).status_code == 200
        await stamp(tendril, previous_revision())
        assert (await http.get("/readyz")).status_code == 200  # the answer of a moment ago


async def test_readiness_reports_a_database_that_fails_or_does_not_answer() -> None:
    async def broken() -> MigrationState:
        raise OSError("connection refused")

    async def hanging() -> MigrationState:
        await anyio.sleep_forever()
        raise AssertionError

    assert await Readiness(broken).problem() == "the database did not answer"
    assert await Readiness(hanging, timeout=0.05).problem() == "the database did not answer within 0.05s"


def test_the_redaction_fast_path_still_masks_every_pattern_in_any_case() -> None:
    """Log lines skip the pattern scan when none of its literals is there; spellings that must not."""
    for line, kept in (
        ("AuThOrIzAtIoN: Bearer abcdef123456", "AuThOrIzAtIoN: Bearer ****"),
        ("authorİzation: bot abcdef123456", "authorİzation: bot ****"),  # (?i) folds İ to i
        ("GET https://api.telegram.org/bot123456:AAbbCC/getMe", "GET https://api.telegram.org/bot****/getMe"),
        ("key tdl_0123456789abcdef used", "key tdl_**** used"),
        ("token xoxp-1-2-3 sent", "token xoxp-**** sent"),
        ("GET /api/v1/agents 200 1.0ms client=127.0.0.1", "GET /api/v1/agents 200 1.0ms client=127.0.0.1"),
    ):
        assert secrets_to_redact.redact(line) == kept
