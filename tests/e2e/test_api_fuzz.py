"""The REST API fuzzed against its own OpenAPI document: schemathesis drives a real `tendril serve`,
on SQLite and on PostgreSQL, over every operation of GET /api/v1/openapi.

Each answer must not be a server error, and its status, content type and body must be what the
document says for that operation. A stateful pass of its own follows the document's links from
creating a connection to reading, changing and deleting it. Every provider's API base is a dead
loopback port, so a route that reaches a provider answers its documented 502 at once and nothing
leaves the machine.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from connectors import load_catalog
from server.app import build_core
from server.core.identity import RATE_LIMIT_MAX
from server.settings import ConnectorSettings, Settings
from tests.conftest import _create_database
from tests.e2e.tendril_process import TendrilProcess, tendril_serve
from tests.support.postgres import PostgresCluster

CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
SEED = 20260401  # fixed, so a failure in CI replays locally with the same data
# Per operation, for the fuzzing phase (and the main pass's stateful scenarios); the coverage phase
# adds its boundary and negative cases on top. Sized so both engines take about two minutes.
MAX_EXAMPLES = 10
LIFECYCLE_SCENARIOS = 60
# The discard port: nothing listens, so a provider call is refused at once (then retried, and 502).
DEAD_API_BASE = "http://127.0.0.1:9/"
RUN_TIMEOUT = 300.0
# The connection lifecycle the document links: create -> get, change, delete (by the new id).
LIFECYCLE = ("createConnection", "getConnection", "updateConnection", "deleteConnection")


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Both engines again (tests/e2e/conftest.py narrows e2e tests to SQLite)."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'tendril.db'}"
    cluster: PostgresCluster = request.getfixturevalue("postgres")
    return cluster.url().rsplit("/", 1)[0] + f"/{_create_database(cluster)}"


@pytest.fixture
def fuzz_settings(settings: Settings) -> Settings:
    """Every connector with a provider API points at the dead port (GCS files use the emulator)."""
    dead = {
        slug: ConnectorSettings(api_base=DEAD_API_BASE)
        for slug, connector in load_catalog().items()
        if connector.spec.api_base
    }
    return settings.model_copy(update={"connectors": dead})


def _admin_key(settings: Settings) -> str:
    """An admin key whose own rate limit is the highest there is: the fuzzer makes thousands of calls.
    The owner is `admin`, whom the settings grant a GCS bucket on the emulator."""

    async def work() -> str:
        core = build_core(settings)
        try:
            await core.prepare()
            owner = await core.identity.create_owner("admin")
            key = await core.identity.create_api_key(
                owner.id, name="fuzz", permissions=["admin"], rate_limit=RATE_LIMIT_MAX
            )
            return key.plaintext
        finally:
            await core.aclose()

    return asyncio.run(work())


def _server_env(settings: Settings) -> dict[str, str]:
    """What the child needs beyond tendril_serve's defaults."""
    return {
        # Requests without a valid key (the document itself, the API's own 404s) count by address.
        "TENDRIL_API_RATE_LIMIT": str(RATE_LIMIT_MAX),
        # The coverage phase's unexpected methods (TRACE, QUERY) reach the MCP mount, which counts
        # the owner key as a failed agent key; throttling is tests/security/'s subject, not this one.
        "TENDRIL_AUTH_FAILURES_PER_CLIENT": str(RATE_LIMIT_MAX),
        "TENDRIL_AUTH_FAILURES_PER_KEY_PREFIX": str(RATE_LIMIT_MAX),
        "TENDRIL_GCS_TOKEN": settings.gcs_token or "",
        "TENDRIL_GCS_ENDPOINT_URL": settings.gcs_endpoint_url or "",
        "TENDRIL_GCS_GRANTS": settings.gcs_grants or "",
    }


def _config(slugs: list[str]) -> str:
    """schemathesis.toml for both passes."""
    return "\n".join(
        [
            # Every provider is unreachable on purpose, so 502 (UPSTREAM_ERROR) is the right answer
            # of a route that calls one; status_code_conformance still fails it on any operation
            # whose document does not list 502. Every other 5xx stays a failure.
            "[checks.not_a_server_error]",
            'expected-statuses = ["2xx", "3xx", "4xx", "502"]',
            "",
            # Real connector slugs half of the time, so creates get past "unknown connector" and the
            # links from them have ids to follow; the other half stays arbitrary text.
            "[dictionaries.connectors]",
            f"values = {json.dumps(slugs)}",
            "",
            "[parameters]",
            '"body.connectorSlug" = { dictionary = "connectors", probability = 0.5 }',
            '"path.connector" = { dictionary = "connectors", probability = 0.5 }',
            "",
        ]
    )


@dataclass
class Report:
    """What one schemathesis run did, read from its JSON and NDJSON reports."""

    summary: dict[str, Any]
    # Operation label ("GET /api/v1/agents") -> statuses it answered, before the stateful phase.
    answers: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    # Document links followed with the id they carry: (source operation, target label, status).
    links: list[tuple[str, str, int]] = field(default_factory=list)

    @property
    def cases(self) -> int:
        return int(self.summary["test_cases"]["generated"])

    @property
    def tested(self) -> int:
        return int(self.summary["operations"]["tested"])


def _read_report(report_dir: Path) -> Report:
    (summary_path,) = report_dir.glob("json-*.json")
    (events_path,) = report_dir.glob("ndjson-*.ndjson")
    report = Report(json.loads(summary_path.read_text()))
    for line in events_path.read_text().splitlines():
        event = json.loads(line)
        finished = event.get("ScenarioFinished")
        if finished is None:
            continue
        recorder = finished["recorder"]
        interactions = recorder.get("interactions", {})
        for case_id, case in recorder.get("cases", {}).items():
            response = (interactions.get(case_id) or {}).get("response")
            if response is None:
                continue
            value = case["value"]
            label = f"{value['method']} {value['path']}"
            if finished["phase"] != "stateful":
                report.answers[recorder["label"]].append(response["status_code"])
            transition = case.get("transition")
            if transition and not transition["is_inferred"] and case["is_transition_applied"]:
                source = transition["id"].split(" -> ", 1)[0]
                report.links.append((source, label, response["status_code"]))
    return report


def _schemathesis(
    tendril: TendrilProcess, key: str, workdir: Path, config: Path, *options: str
) -> tuple[Report, str]:
    """One schemathesis run; fails the test with its own report when it finds anything."""
    report_dir = workdir / "report"
    argv = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(config),
        "run",
        f"{tendril.url}/api/v1/openapi",
        "--url",
        tendril.url,
        "--header",
        f"Authorization: Bearer {key}",
        "--checks",
        CHECKS,
        "--seed",
        str(SEED),
        # One worker: concurrent Hypothesis draws in threads trip a CPython 3.11 bug (gh-106905,
        # "AST constructor recursion depth mismatch") inside the generator, failing runs at random.
        "--workers",
        "1",
        "--request-timeout",
        "30",
        # CI machines vary in speed; how fast data is generated is not what this test checks.
        "--suppress-health-check",
        "too_slow",
        "--generation-database",
        "none",
        "--report",
        "json,ndjson",
        "--report-dir",
        str(report_dir),
        "--no-color",
        *options,
    ]
    env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
    workdir.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        argv, cwd=workdir, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False
    )
    output = f"{result.stdout}\n{result.stderr}"
    if result.returncode != 0:
        pytest.fail(f"schemathesis found problems (exit {result.returncode}):\n{output}\n{tendril.output()}")
    return _read_report(report_dir), output


def _operations(document: dict[str, Any]) -> tuple[set[str], set[str]]:
    """The document's operations to fuzz (as labels), and the browser pages' operation ids."""
    fuzzed, pages = set(), set()
    for path, item in document["paths"].items():
        for method, operation in item.items():
            # The OAuth start and callback pages live under /api/v1 but are browser pages: they need
            # a signed-in session cookie (not an API key) and answer HTML or redirects to a person.
            # tests/server/test_oauth_flow.py drives them as a browser would.
            if operation.get("security") == [{"sessionCookie": []}]:
                pages.add(operation["operationId"])
            else:
                fuzzed.add(f"{method.upper()} {path}")
    return fuzzed, pages


@pytest.mark.timeout(400)
def test_every_operation_answers_as_its_openapi_document_says_under_fuzzing(
    fuzz_settings: Settings, tmp_path: Path
) -> None:
    started = time.monotonic()
    engine = fuzz_settings.resolved_database_url.split(":", 1)[0].split("+", 1)[0]
    key = _admin_key(fuzz_settings)
    config = tmp_path / "schemathesis.toml"
    config.write_text(_config(sorted(load_catalog())))
    with tendril_serve(fuzz_settings, tmp_path / "proc", **_server_env(fuzz_settings)) as tendril:
        document = httpx.get(f"{tendril.url}/api/v1/openapi").json()
        fuzzed, pages = _operations(document)

        # First the connection's life alone, while the key is sure to work: the main pass may
        # revoke or limit its own key, as /api/v1/keys/{id} is fuzzed with ids the list answered.
        lifecycle, lifecycle_output = _schemathesis(
            tendril,
            key,
            tmp_path / "lifecycle",
            config,
            *[option for operation in LIFECYCLE for option in ("--include-operation-id", operation)],
            "--phases",
            "stateful",
            "--max-examples",
            str(LIFECYCLE_SCENARIOS),
        )
        # Then every phase over every operation. Selecting them all with a filter is what brings
        # in GET /api/v1/openapi: schemathesis leaves out the document's own route unless selected.
        main, main_output = _schemathesis(
            tendril,
            key,
            tmp_path / "main",
            config,
            "--include-operation-id-regex",
            ".*",
            *[option for page in sorted(pages) for option in ("--exclude-operation-id", page)],
            "--phases",
            "examples,coverage,fuzzing,stateful",
            "--max-examples",
            str(MAX_EXAMPLES),
        )

    targets = {f"{method} /api/v1/connections/{{id}}" for method in ("GET", "PATCH", "DELETE")}
    followed: dict[str, list[int]] = defaultdict(list)
    for source, label, status in lifecycle.links:
        if source == "POST /api/v1/connections" and label in targets:
            followed[label].append(status)
    succeeded = {label for label, statuses in followed.items() if any(200 <= s < 300 for s in statuses)}
    assert succeeded == targets, (
        f"links from a new connection not followed to success: {dict(followed)}\n{lifecycle_output}"
    )

    unanswered = sorted(fuzzed - {label for label, statuses in main.answers.items() if statuses})
    assert fuzzed and not unanswered, f"operations never exercised: {unanswered}\n{main_output}"
    assert main.tested == len(fuzzed), main_output
    assert set(main.answers) <= fuzzed, f"tested beyond the document: {set(main.answers) - fuzzed}"
    # Before the stateful phase nothing may have lost the key: a run refused throughout says nothing.
    refused = {label for label, statuses in main.answers.items() if {401, 429} & set(statuses)}
    assert not refused, (
        f"the fuzzer's key was refused (revoked or limited through /api/v1/keys/{{id}}?) on {refused}; "
        "its later answers checked only the refusal"
    )

    elapsed = time.monotonic() - started
    print(
        f"\n{engine}: {main.tested} operations, {main.cases} cases; lifecycle pass {lifecycle.cases} "
        f"cases, {sum(map(len, followed.values()))} via create-connection links; {elapsed:.0f}s"
    )
