"""The official MCP conformance suite against a real `tendril serve`, through an auth-adding proxy.

Only the scenarios that apply to any server are run; the others call tools with fixed names that
exist only on the suite's reference server. The suite sends no Authorization header, hence the proxy.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from tests.e2e.auth_proxy import run_auth_proxy
from tests.e2e.conftest import LiveProcess, NodeRunner, NodeTools, describe, strip_ansi

SCENARIOS = [
    "server-initialize",
    "ping",
    "tools-list",
    "resources-list",
    "logging-set-level",
    "completion-complete",
    "dns-rebinding-protection",
    "server-sse-multiple-streams",
]
_SUMMARY = re.compile(r"Passed: (\d+)/(\d+), (\d+) failed")


@pytest.fixture(scope="module")
def proxy_url(live_process: LiveProcess) -> Iterator[str]:
    with run_auth_proxy(live_process.tendril.url, live_process.agent_key) as url:
        yield url


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenario_passes(
    scenario: str,
    run_node: NodeRunner,
    node_clis: NodeTools,
    live_process: LiveProcess,
    proxy_url: str,
) -> None:
    # The suite takes one --scenario per run (no list), so each scenario is its own invocation.
    result = run_node([*node_clis.conformance, "server", "--url", f"{proxy_url}/mcp", "--scenario", scenario])
    report = describe(result) + live_process.tendril.output()
    assert result.returncode == 0, report
    summary = _SUMMARY.search(strip_ansi(result.stdout + result.stderr))
    assert summary is not None, report
    passed, total, failed = map(int, summary.groups())
    assert total > 0 and passed == total and failed == 0, report
