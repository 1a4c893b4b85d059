"""Workflow definitions checked on create and update: every refusal names the step and points at
the field, and what a definition uses is known for agent gating."""

from __future__ import annotations

from typing import Any

import pytest

from connectors import Catalog, load_catalog
from server.core.errors import Invalid
from server.core.workflows.definition import (
    ActionConfig,
    ConditionConfig,
    HttpRequestConfig,
    check_url,
    config_of,
    connection_ids,
    connectors_used,
    parse_definition,
)

CONNECTION = "0191d5d0-0000-7000-8000-000000000001"


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


def steps(*items: dict[str, Any]) -> dict[str, Any]:
    return {"steps": list(items)}


def http(name: str, url: str = "https://api.example.com/data", **more: Any) -> dict[str, Any]:
    return {"name": name, "type": "http_request", "config": {"method": "GET", "url": url, **more}}


def refusal(raw: object, catalog: Catalog, **kwargs: Any) -> Invalid:
    with pytest.raises(Invalid) as caught:
        parse_definition(raw, catalog, **kwargs)
    return caught.value


def test_the_seed_definition_parses(catalog: Catalog) -> None:
    definition = parse_definition(steps(http("step1")), catalog)
    assert definition.model_dump() == {
        "steps": [
            {
                "name": "step1",
                "type": "http_request",
                "config": {"method": "GET", "url": "https://api.example.com/data"},
            }
        ]
    }
    config = config_of(definition.steps[0])
    assert isinstance(config, HttpRequestConfig)
    assert (config.method, config.headers, config.body) == ("GET", {}, None)


def test_every_step_type_with_templates_parses(catalog: Catalog) -> None:
    definition = parse_definition(
        steps(
            http(
                "fetch",
                "https://api.example.com/users/{{ input.id }}",
                headers={"Accept": "application/json"},
            ),
            {"name": "big", "type": "condition", "config": {"if": "steps.fetch.output.json.total > 100"}},
            {"name": "pause", "type": "delay", "config": {"seconds": 1.5}},
            {
                "name": "notify",
                "type": "action",
                "config": {
                    "connector": "slack",
                    "label": "Production Slack",
                    "action": "post_message",
                    "parameters": {"channel": "#general", "text": "{{ steps.fetch.output.json.name }}"},
                },
            },
            {
                "name": "maybe",
                "type": "condition",
                "config": {"if": "{{ input.loud }}", "else": "skip", "skip": ["post"]},
            },
            {
                "name": "post",
                "type": "http_request",
                "config": {
                    "method": "post",
                    "url": "{{ input.callback }}",
                    "body": {"id": "{{ steps.notify.output }}"},
                },
            },
        ),
        catalog,
    )
    assert [s.type for s in definition.steps] == [
        "http_request",
        "condition",
        "delay",
        "action",
        "condition",
        "http_request",
    ]
    condition = config_of(definition.steps[4])
    assert isinstance(condition, ConditionConfig)
    assert (condition.else_, condition.skip) == ("skip", ["post"])
    assert connectors_used(definition) == {"slack", "http"}


def test_the_issue_example_message_for_a_mistyped_action(catalog: Catalog) -> None:
    error = refusal(
        steps(
            http("step1"),
            {"name": "notify", "type": "action", "config": {"connector": "slack", "action": "post_mesage"}},
        ),
        catalog,
    )
    assert error.message.startswith(
        "step 'notify' (2): unknown action 'slack.post_mesage' (did you mean 'post_message'?)"
    )
    assert error.field == "definition.steps[1].config.action"


@pytest.mark.parametrize(
    ("step", "message", "field"),
    [
        (
            {"name": "s", "type": "htp_request", "config": {}},
            "step 's' (2): unknown step type 'htp_request' (did you mean 'http_request'?)",
            "definition.steps[1].type",
        ),
        (
            {"name": "s", "type": "action", "config": {"connector": "slak", "action": "post_message"}},
            "step 's' (2): unknown connector 'slak' (did you mean 'slack'?)",
            "definition.steps[1].config.connector",
        ),
        (
            {"name": "s", "type": "action", "config": {"action": "post_message"}},
            "step 's' (2): an action step names either connectionId, or connector",
            "definition.steps[1].config",
        ),
        (
            {
                "name": "s",
                "type": "action",
                "config": {"connector": "slack", "action": "post_message", "parameters": {"chanel": "#x"}},
            },
            "step 's' (2): slack action takes no parameter 'chanel' (did you mean 'channel'?)",
            "definition.steps[1].config.parameters.chanel",
        ),
        (
            {"name": "s", "type": "http_request", "config": {"method": "FETCH", "url": "https://x.example"}},
            "step 's' (2): method must be one of",
            "definition.steps[1].config.method",
        ),
        (
            {"name": "s", "type": "http_request", "config": {"url": "ftp://x.example/file"}},
            "step 's' (2): url must be an absolute http:// or https:// URL",
            "definition.steps[1].config.url",
        ),
        (
            {"name": "s", "type": "http_request", "config": {"url": "https://me:pw@x.example/"}},
            "step 's' (2): url must not hold credentials",
            "definition.steps[1].config.url",
        ),
        (
            {
                "name": "s",
                "type": "http_request",
                "config": {"url": "https://x.example", "headers": {"Host": "y"}},
            },
            "step 's' (2): the Host header is set by Tendril",
            "definition.steps[1].config.headers.Host",
        ),
        (
            {"name": "s", "type": "http_request", "config": {"url": "https://x.example", "methd": "GET"}},
            "step 's' (2): unknown setting 'methd' (did you mean 'method'?)",
            "definition.steps[1].config.methd",
        ),
        (
            {"name": "s", "type": "http_request", "config": {}},
            "step 's' (2): config.url is required for a http_request step",
            "definition.steps[1].config.url",
        ),
        (
            {"name": "s", "type": "delay", "config": {"seconds": 10**9}},
            "step 's' (2): config.seconds:",
            "definition.steps[1].config.seconds",
        ),
        (
            {"name": "s", "type": "condition", "config": {"if": "input.x", "else": "skip"}},
            'step \'s\' (2): "else": "skip" needs skip',
            "definition.steps[1].config.skip",
        ),
        (
            {
                "name": "s",
                "type": "condition",
                "config": {"if": "input.x", "else": "skip", "skip": ["step1"]},
            },
            "step 's' (2): skip names 'step1', which is not a later step",
            "definition.steps[1].config.skip",
        ),
        (
            {"name": "s", "type": "condition", "config": {"if": "{{ inptu.x }}"}},
            "step 's' (2): config.if: unknown name 'inptu' (did you mean 'input'?)",
            "definition.steps[1].config.if",
        ),
        (
            {
                "name": "s",
                "type": "http_request",
                "config": {"url": "https://x.example/{{ steps.later.output }}"},
            },
            "step 's' (2): refers to steps.later, which runs later (3)",
            "definition.steps[1].config",
        ),
        (
            {
                "name": "s",
                "type": "http_request",
                "config": {"url": "https://x.example/{{ steps.s.output }}"},
            },
            "step 's' (2): refers to its own output (steps.s)",
            "definition.steps[1].config",
        ),
        (
            {
                "name": "s",
                "type": "http_request",
                "config": {"url": "https://x.example/{{ steps.stepp1.output }}"},
            },
            "step 's' (2): refers to steps.stepp1, which is not a step (did you mean 'step1'?)",
            "definition.steps[1].config",
        ),
        (
            {
                "name": "s",
                "type": "http_request",
                "config": {"url": "https://x", "body": {"t": "{% if 1 %}{% endif %}"}},
            },
            "step 's' (2): config.body.t: only {{ expression }} parts are allowed",
            "definition.steps[1].config.body.t",
        ),
        (
            {"name": "step1", "type": "delay", "config": {"seconds": 1}},
            "step 'step1' (2): the name is already used by step 1",
            "definition.steps[1].name",
        ),
        (
            {"name": "has-dash", "type": "delay", "config": {"seconds": 1}},
            "step 2: name must be letters, digits and _",
            "definition.steps[1].name",
        ),
        (
            {"name": "s", "type": "delay", "config": {"seconds": 1}, "when": "x"},
            "step 's' (2): a step takes name, type and config, not when",
            "definition.steps[1]",
        ),
    ],
)
def test_bad_steps_are_refused_naming_the_step(
    catalog: Catalog, step: dict[str, Any], message: str, field: str
) -> None:
    error = refusal(steps(http("step1"), step, http("later")), catalog)
    assert error.message.startswith(message), error.message
    assert error.field == field


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ([], "definition must be an object"),
        ({"steps": []}, "definition.steps must be a non-empty list"),
        ({"steps": [http("a")], "extra": 1}, "definition takes only steps, not extra"),
        ({"steps": [http(f"s{i}") for i in range(51)]}, "at most 50 steps"),
        ({"steps": [http("a", body="x" * 70_000)]}, "step 'a' (1): config is larger than"),
        ({"steps": ["nope"]}, "step 1: a step is an object"),
    ],
)
def test_bad_definitions_are_refused(catalog: Catalog, raw: object, message: str) -> None:
    assert message in refusal(raw, catalog).message


def test_connection_steps_are_checked_against_the_owners_connections(catalog: Catalog) -> None:
    step = {"name": "n", "type": "action", "config": {"connectionId": CONNECTION, "action": "send_message"}}
    # Without the owner's connections only the shape is checked.
    definition = parse_definition(steps(step), catalog)
    assert connection_ids(definition) == {CONNECTION}
    assert connectors_used(definition) == {f"connection:{CONNECTION}"}
    assert connectors_used(definition, {CONNECTION: "telegram"}) == {"telegram"}
    # With them, the connection must be one of them and the action its connector's.
    parse_definition(steps(step), catalog, connections={CONNECTION: "telegram"})
    assert "no connection" in refusal(steps(step), catalog, connections={}).message
    error = refusal(steps(step), catalog, connections={CONNECTION: "github"})
    assert error.message.startswith("step 'n' (1): unknown action 'github.send_message'")
    bad_id = {"name": "n", "type": "action", "config": {"connectionId": "conn_1", "action": "x"}}
    assert "connectionId is not a connection id" in refusal(steps(bad_id), catalog).message


def test_action_steps_accept_tool_names_and_aliases(catalog: Catalog) -> None:
    step = {"name": "n", "type": "action", "config": {"connector": "slack", "action": "slack_post_message"}}
    config = config_of(parse_definition(steps(step), catalog).steps[0])
    assert isinstance(config, ActionConfig)
    assert config.connector == "slack"


def test_urls(catalog: Catalog) -> None:
    assert check_url("https://api.example.com/x?y=1") == "https://api.example.com/x?y=1"
    assert check_url("{{ input.url }}", templated=True)
    assert check_url("https://{{ input.host }}/x", templated=True)
    for bad in ("https://", "https://x.example:99999/", "https://x .example/", "//x.example/"):
        with pytest.raises(Invalid):
            check_url(bad)
    with pytest.raises(Invalid):
        check_url("file:///{{ input.path }}", templated=True)
