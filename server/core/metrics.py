"""What Tendril counts for Prometheus: every metric is defined here, and nowhere else.

Each app has its own `Metrics` with its own registry (not prometheus_client's global one), so each
replica exposes its own figures and several apps in one process (tests) never share counters. The
use cases and the edges report what happened through the methods below; the job and database-pool
gauges are read when Prometheus scrapes (`exposition`), the job census at most every few seconds.

Label values come from closed sets only (route templates, catalog slugs and action names, error
codes, known HTTP methods), never from what a client sent, so nobody can grow the series count.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Final

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from connectors.errors import ConnectorError, RateLimited
from storage.jobs import JobCensus

# Seconds: from a cheap HTTP answer (a few ms) to a provider call at its deadline (30 s by default).
LATENCY_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# The job census is two aggregate queries; several Prometheus servers scraping often share one.
CENSUS_TTL_SECONDS: Final = 5.0
HTTP_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
WEBHOOK_RESULTS: Final = ("accepted", "duplicate", "refused", "error")
REFRESH_OUTCOMES: Final = ("ok", "refused", "failed")

Census = Callable[[], Awaitable[JobCensus]]
PoolUsage = Callable[[], "tuple[int, int] | None"]


class Metrics:
    CONTENT_TYPE: Final = CONTENT_TYPE_LATEST  # of what `exposition` returns

    def __init__(
        self,
        *,
        census: Census | None = None,
        pool_usage: PoolUsage | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self._http_requests = Counter(
            "tendril_http_requests",
            "HTTP requests answered, by method, route template and status.",
            ["method", "route", "status"],
            registry=registry,
        )
        self._http_seconds = Histogram(
            "tendril_http_request_duration_seconds",
            "Time from a request's arrival to the end of its answer, by method and route template.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self._tool_calls = Counter(
            "tendril_mcp_tool_calls",
            "MCP tools/call requests, by connector, action and outcome (ok or the error code).",
            ["connector", "action", "outcome"],
            registry=registry,
        )
        self._tool_seconds = Histogram(
            "tendril_mcp_tool_call_duration_seconds",
            "Time to answer an MCP tools/call, by connector and action.",
            ["connector", "action"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self._provider_errors = Counter(
            "tendril_provider_errors",
            "Failed provider calls (each attempt, retries included), by connector and error code.",
            ["connector", "code"],
            registry=registry,
        )
        self._provider_rate_limits = Counter(
            "tendril_provider_rate_limits",
            "Provider answers asking Tendril to slow down (HTTP 429 and the like), by connector.",
            ["connector"],
            registry=registry,
        )
        self._webhooks = Counter(
            "tendril_webhook_deliveries",
            "Provider webhook deliveries received, by provider and result "
            "(accepted, duplicate, refused, error).",
            ["provider", "result"],
            registry=registry,
        )
        self._refreshes = Counter(
            "tendril_oauth_token_refreshes",
            "OAuth access-token refreshes, by connector and outcome (ok, refused: reconnect needed, failed).",
            ["connector", "outcome"],
            registry=registry,
        )
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
        self._gauges = _ScrapeGauges(census, pool_usage, clock)
        # The hot paths' labelled children, by label values (closed sets, so these stay small).
        self._http_children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self._tool_children: dict[tuple[str, str, str], tuple[Counter, Histogram]] = {}
        self._webhook_children: dict[tuple[str, str], Counter] = {}
        registry.register(self._gauges)

    # -- what happened ------------------------------------------------------------------------------
    def http_request(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method if method in HTTP_METHODS else "other", route, status)
        children = self._http_children.get(key)
        if children is None:  # once per label set: labels() costs more than the counting itself
            method, route, _ = key
            children = self._http_children[key] = (
                self._http_requests.labels(method, route, str(status)),
                self._http_seconds.labels(method, route),
            )
        children[0].inc()
        children[1].observe(seconds)

    def tool_call(self, connector: str, action: str, outcome: str, seconds: float) -> None:
        key = (connector, action, outcome)
        children = self._tool_children.get(key)
        if children is None:
            children = self._tool_children[key] = (
                self._tool_calls.labels(connector, action, outcome),
                self._tool_seconds.labels(connector, action),
            )
        children[0].inc()
        children[1].observe(seconds)

    def provider_failed(self, connector: str, error: BaseException) -> None:
        """One provider exchange that failed: a rate limit, or an error by its code."""
        if isinstance(error, RateLimited):
            self._provider_rate_limits.labels(connector).inc()
        else:
            code = error.code if isinstance(error, ConnectorError) else "unexpected"
            self._provider_errors.labels(connector, code).inc()

    def webhook_delivery(self, provider: str, result: str) -> None:
        child = self._webhook_children.get((provider, result))
        if child is None:
            child = self._webhook_children[provider, result] = self._webhooks.labels(provider, result)
        child.inc()

    def token_refresh(self, connector: str, outcome: str) -> None:
        self._refreshes.labels(connector, outcome).inc()

    # -- scraping -----------------------------------------------------------------------------------
    async def exposition(self) -> bytes:
        """The text format Prometheus scrapes, with the job census brought up to date first."""
        await self._gauges.refresh()
        return generate_latest(self.registry)


class _ScrapeGauges(Collector):
    """Gauges read at scrape time: jobs per state, the oldest queued job's age, the DB pool."""

    def __init__(
        self, census: Census | None, pool_usage: PoolUsage | None, clock: Callable[[], float]
    ) -> None:
        self._census = census
        self._pool_usage = pool_usage
        self._clock = clock
        self._taken: JobCensus | None = None
        self._taken_at = float("-inf")

    async def refresh(self) -> None:
        if self._census is None or time.monotonic() - self._taken_at < CENSUS_TTL_SECONDS:
            return
        self._taken = await self._census()
        self._taken_at = time.monotonic()

    def collect(self) -> Iterable[Metric]:
        if self._taken is not None:
            jobs = GaugeMetricFamily(
                "tendril_jobs", "Webhook jobs in the database, by state.", labels=["state"]
            )
            for state, count in self._taken.by_status.items():
                jobs.add_metric([state], count)
            yield jobs
            oldest = self._taken.oldest_queued_at
            yield GaugeMetricFamily(
                "tendril_oldest_queued_job_age_seconds",
                "How long the oldest queued job has waited (0 when none is queued).",
                value=max(self._clock() - oldest.timestamp(), 0.0) if oldest is not None else 0.0,
            )
        usage = self._pool_usage() if self._pool_usage is not None else None
        if usage is not None:
            in_use, size = usage
            yield GaugeMetricFamily(
                "tendril_db_pool_connections_in_use", "Database connections checked out now.", value=in_use
            )
            yield GaugeMetricFamily(
                "tendril_db_pool_size", "Connections the database pool keeps (overflow aside).", value=size
            )
