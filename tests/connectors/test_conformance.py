"""Checks every connector passes by existing: declarations, names, schemas, hints, secrets.

Behaviour against each provider's fake (happy path, error shape, invalid token, missing scope,
429, unreachable provider, canary secrets) is checked the same way for every connector in
`test_conformance_live.py`; each connector's own module tests what is particular to it.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from connectors import Action, Connector, load_catalog

CATALOG = load_catalog()
ACTIONS = [(c.slug, a.name) for c in CATALOG.values() for a in c.actions.values()]
TOOL_NAME = re.compile(r"^[A-Za-z0-9._-]{1,128}$")  # SEP-986, what the MCP SDK warns on
SECRET_LOOKING = re.compile(r"(token|secret|password|api_key|private)", re.IGNORECASE)
READ_PREFIXES = ("get_", "list_", "search", "query_", "retrieve_")
WRITE_PREFIXES = ("send_", "create_", "post_", "upload_", "comment_", "add_")
# Reads with a side effect, so not readOnly: Telegram's offset confirms (drops) earlier updates.
SIDE_EFFECT_READS = {("telegram", "get_updates")}


def action(slug: str, name: str) -> Action:
    return CATALOG[slug].actions[name]


def properties(schema: dict[str, Any]) -> dict[str, Any]:
    return schema.get("properties", {})


@pytest.mark.parametrize(("slug", "name"), ACTIONS)
def test_tool_names_are_portable(slug: str, name: str) -> None:
    assert TOOL_NAME.match(action(slug, name).tool_name)


@pytest.mark.parametrize(("slug", "name"), ACTIONS)
def test_schemas_are_valid_2020_12_objects_with_every_field_described(slug: str, name: str) -> None:
    for model in (action(slug, name).input_model, action(slug, name).output_model):
        schema = model.model_json_schema()
        Draft202012Validator.check_schema(schema)
        assert schema["type"] == "object"
        undescribed = [key for key, value in properties(schema).items() if not value.get("description")]
        assert undescribed == [], f"{model.__name__}: describe {undescribed}"


@pytest.mark.parametrize(("slug", "name"), ACTIONS)
def test_hints_follow_what_the_action_does(slug: str, name: str) -> None:
    hints = action(slug, name).hints
    if name.startswith(READ_PREFIXES) and (slug, name) not in SIDE_EFFECT_READS:
        assert hints.read_only, f"{slug}.{name} reads, so it is readOnly"
    if name.startswith(WRITE_PREFIXES):
        assert not hints.read_only
        has_key = "idempotency_key" in action(slug, name).input_model.model_fields
        assert not hints.idempotent or has_key, f"{slug}.{name} creates: not idempotent without a key"
    assert not (hints.read_only and hints.destructive)
    assert action(slug, name).description and len(action(slug, name).description) < 1024


@pytest.mark.parametrize("connector", CATALOG.values(), ids=list(CATALOG))
def test_credentials_that_look_secret_are_marked_secret(connector: Connector) -> None:
    loose = [f.key for f in connector.spec.credential_fields if SECRET_LOOKING.search(f.key) and not f.secret]
    assert loose == []


@pytest.mark.parametrize("connector", CATALOG.values(), ids=list(CATALOG))
def test_oauth_endpoints_are_https_and_defaults_name_real_parameters(connector: Connector) -> None:
    oauth = connector.spec.oauth
    if oauth is not None:
        for url in (oauth.authorize_url, oauth.token_url, oauth.revoke_url):
            assert url is None or url.startswith("https://")
        for source in oauth.credential_keys:
            assert source in ("access_token", "refresh_token")
    for param in connector.spec.defaults:
        assert any(param in a.input_model.model_fields for a in connector.actions.values()), param
    for alias, target in connector.spec.action_aliases.items():
        assert target in connector.actions, f"alias {alias} names no action"


def test_every_available_connector_has_actions_or_holds_files() -> None:
    empty = [slug for slug, c in CATALOG.items() if c.spec.availability == "available" and not c.actions]
    assert empty == [slug for slug, c in CATALOG.items() if c.spec.files]
    assert all(not c.actions for c in CATALOG.values() if c.spec.files), "files connectors are resources"
