"""Notion actions through the real notion-client AsyncClient, against the fake on loopback."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from connectors import ActionRunner, load_catalog
from connectors.errors import (
    InvalidCredentials,
    InvalidInput,
    MissingScopes,
    NotFound,
    UpstreamError,
    UpstreamTimeout,
)
from server.web.api.actions import alloy_page
from tests.fakes.notion import FakeNotion
from tests.support.asgi import Swappable

pytestmark = pytest.mark.anyio
notion = load_catalog()["notion"]

# Canaries: recognisable secrets that must never show up in a result, an error or a log line.
TOKEN = "ntn_CanaryNotionSecret7Qz4WmX9pLk2Rv8Ty6Ub3"
WRONG_TOKEN = "ntn_CanaryWrongNotionToken5Hd8Jf2Kg6Ls9Pq1"
CREDENTIALS = {"token": TOKEN}


@dataclass
class World:
    fake: FakeNotion
    url: str
    database_id: str
    source_id: str
    todo_id: str
    done_id: str
    home_id: str
    sleeps: list[float] = field(default_factory=list[float])

    def runner(self, **kwargs: Any) -> ActionRunner:
        async def record(seconds: float) -> None:
            self.sleeps.append(seconds)

        return ActionRunner(api_bases={"notion": self.url}, timeout=5, sleep=record, **kwargs)

    async def run(
        self, action: str, params: dict[str, Any], credentials: dict[str, str] = CREDENTIALS, **kwargs: Any
    ) -> dict[str, Any]:
        result = await self.runner(**kwargs).run(
            notion, notion.actions[action], params, credentials=credentials
        )
        return result.model_dump()


@pytest.fixture
def world(provider_server: tuple[Swappable, str]) -> World:
    fake = FakeNotion()
    fake.add_token(TOKEN, workspace_name="Acme")
    database_id = fake.add_database("Tasks", {"Name": "title", "Status": "select", "Done": "checkbox"})
    source_id = fake.source_of(database_id)
    todo_id = fake.add_row(source_id, {"Name": "Write docs", "Status": "Todo", "Done": False})
    done_id = fake.add_row(source_id, {"Name": "Ship it", "Status": "Done", "Done": True})
    home_id = fake.add_page("Home")
    provider_server[0].target = fake.app
    return World(fake, provider_server[1], database_id, source_id, todo_id, done_id, home_id)


def title(text: str) -> dict[str, Any]:
    return {"title": [{"text": {"content": text}}]}


# -- the happy path of every action ------------------------------------------------------------
async def test_verify_names_the_bot_and_workspace_without_leaking_sdk_handlers(world: World) -> None:
    handlers = list(logging.getLogger("notion_client").handlers)
    account = await world.runner().verify(notion, CREDENTIALS)
    assert account == {"botId": world.fake.tokens[TOKEN].bot_id, "workspaceName": "Acme"}
    assert logging.getLogger("notion_client").handlers == handlers


async def test_every_request_sends_the_token_and_the_pinned_notion_version(world: World) -> None:
    await world.run("search", {})
    await world.run("get_page", {"page_id": world.home_id})
    assert world.fake.calls
    assert {(token, version) for _, token, version in world.fake.calls} == {(TOKEN, "2025-09-03")}


async def test_search_returns_the_levqor_shape_one_page_at_a_time(world: World) -> None:
    first = await world.run("search", {"query": "", "page_size": 2})
    assert (first["count"], first["has_more"]) == (2, True)
    assert set(first) == {"count", "pages", "has_more", "next_cursor"}
    rest = await world.run("search", {"page_size": 100, "start_cursor": first["next_cursor"]})
    assert rest["has_more"] is False and rest["next_cursor"] is None
    seen = [item["id"] for item in first["pages"] + rest["pages"]]
    assert sorted(seen) == sorted([world.todo_id, world.done_id, world.home_id, world.source_id])

    pages = await world.run("search", {"query": "ship", "filter": {"value": "page", "property": "object"}})
    [ship] = pages["pages"]
    assert ship["id"] == world.done_id and ship["title"] == "Ship it" and ship["object"] == "page"
    assert ship["properties"]["Status"]["select"]["name"] == "Done"
    assert ship["parent"] == {
        "type": "data_source_id",
        "id": world.source_id,
        "database_id": world.database_id,
    }


async def test_searching_databases_finds_their_data_sources_ready_to_query(world: World) -> None:
    found = await world.run("search", {"filter": {"value": "database"}})
    [tasks] = found["pages"]
    assert tasks["object"] == "data_source" and tasks["title"] == "Tasks"
    assert tasks["parent"]["id"] == world.database_id
    rows = await world.run("query_database", {"database_id": tasks["parent"]["id"]})
    assert {row["id"] for row in rows["results"]} == {world.todo_id, world.done_id}


async def test_query_database_filters_sorts_and_paginates(world: World) -> None:
    done = await world.run(
        "query_database",
        {"database_id": world.database_id, "filter": {"property": "Status", "select": {"equals": "Done"}}},
    )
    assert [row["title"] for row in done["results"]] == ["Ship it"]
    assert done["data_source_id"] == world.source_id and done["has_more"] is False

    params: dict[str, Any] = {
        "data_source_id": world.source_id,
        "sorts": [{"property": "Name", "direction": "ascending"}],
        "page_size": 1,
    }
    first = await world.run("query_database", params)
    assert [row["title"] for row in first["results"]] == ["Ship it"] and first["has_more"] is True
    second = await world.run("query_database", {**params, "start_cursor": first["next_cursor"]})
    assert [row["title"] for row in second["results"]] == ["Write docs"] and second["has_more"] is False


async def test_a_database_with_several_data_sources_asks_which_one(world: World) -> None:
    archive = world.fake.add_data_source(world.database_id, "Archive", {"Name": "title"})
    with pytest.raises(InvalidInput, match="several data sources") as caught:
        await world.run("query_database", {"database_id": world.database_id})
    assert caught.value.field == "data_source_id"
    assert archive in caught.value.message and world.source_id in caught.value.message
    chosen = await world.run("query_database", {"data_source_id": archive})
    assert chosen["results"] == [] and chosen["data_source_id"] == archive


async def test_get_database_describes_its_columns(world: World) -> None:
    database = await world.run("get_database", {"database_id": world.database_id.replace("-", "")})
    assert (database["id"], database["title"]) == (world.database_id, "Tasks")
    [source] = database["data_sources"]
    assert (source["id"], source["name"]) == (world.source_id, "Tasks")
    assert {name: prop["type"] for name, prop in source["properties"].items()} == {
        "Name": "title",
        "Status": "select",
        "Done": "checkbox",
    }


async def test_get_page_accepts_a_notion_link(world: World) -> None:
    link = f"https://www.notion.so/acme/Ship-it-{world.done_id.replace('-', '')}?pvs=4"
    page = await world.run("get_page", {"page_id": link})
    assert (page["id"], page["title"], page["in_trash"]) == (world.done_id, "Ship it", False)
    assert page["url"] and page["last_edited_time"]
    assert page["properties"]["Done"] == {"id": "p2", "type": "checkbox", "checkbox": True}


async def test_create_page_in_a_database_with_the_levqor_shortcut(world: World) -> None:
    block = {
        "object": "block",
        "type": "paragraph",
        "paragraph": {"rich_text": [{"text": {"content": "Hi"}}]},
    }
    created = await world.run(
        "create_page",
        {
            "database_id": world.database_id,
            "properties": {"Name": title("Plan Q3"), "Status": {"select": {"name": "Todo"}}},
            "children": [block],
        },
    )
    assert set(created) == {"page_id", "url"} and created["url"].endswith(created["page_id"].replace("-", ""))
    page = world.fake.pages[created["page_id"]]
    assert page["parent"]["data_source_id"] == world.source_id
    assert page["properties"]["Status"]["select"]["name"] == "Todo"
    assert world.fake.children[created["page_id"]] == [block]


async def test_create_page_under_a_page_or_a_data_source(world: World) -> None:
    sub = await world.run(
        "create_page",
        {"parent": {"type": "page_id", "page_id": world.home_id}, "properties": {"title": title("Notes")}},
    )
    assert world.fake.pages[sub["page_id"]]["parent"] == {"type": "page_id", "page_id": world.home_id}
    row = await world.run(
        "create_page", {"parent": {"data_source_id": world.source_id}, "properties": {"Name": title("Row")}}
    )
    assert world.fake.pages[row["page_id"]]["parent"]["data_source_id"] == world.source_id


async def test_only_an_oauth_connection_may_create_a_workspace_page(world: World) -> None:
    oauth_token = "ntn_PublicIntegrationToken0000000000"
    world.fake.add_token(oauth_token, public=True)
    params = {"parent": {"type": "workspace", "workspace": True}, "properties": {"title": title("Inbox")}}
    created = await world.run("create_page", params, credentials={"access_token": oauth_token})
    assert world.fake.pages[created["page_id"]]["parent"] == {"type": "workspace", "workspace": True}
    with pytest.raises(InvalidInput, match="workspace-level"):
        await world.run("create_page", params)


@pytest.mark.parametrize(
    "params",
    [
        {"properties": {}},
        {"parent": {}, "properties": {}},
        {"parent": {"page_id": "a" * 32, "database_id": "b" * 32}},
        {"parent": {"page_id": "a" * 32}, "database_id": "b" * 32},
    ],
)
async def test_create_page_needs_exactly_one_parent(world: World, params: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput) as caught:
        await world.run("create_page", params)
    assert caught.value.field == "parent"
    assert world.fake.endpoint_calls("pages.create") == 0


async def test_update_page_sets_properties_then_trashes_and_restores(world: World) -> None:
    updated = await world.run(
        "update_page", {"page_id": world.todo_id, "properties": {"Status": {"select": {"name": "Done"}}}}
    )
    assert updated == {"page_id": world.todo_id, "url": updated["url"], "archived": False}
    page = world.fake.pages[world.todo_id]
    assert page["properties"]["Status"]["select"]["name"] == "Done"
    assert page["properties"]["Name"]["title"][0]["plain_text"] == "Write docs"  # untouched

    assert (await world.run("update_page", {"page_id": world.todo_id, "archived": True}))["archived"] is True
    assert world.fake.pages[world.todo_id]["in_trash"] is True
    assert (await world.run("update_page", {"page_id": world.todo_id, "archived": False}))[
        "archived"
    ] is False


async def test_update_page_needs_something_to_change(world: World) -> None:
    with pytest.raises(InvalidInput) as caught:
        await world.run("update_page", {"page_id": world.todo_id})
    assert caught.value.field == "properties"


def test_annotations_and_credentials_are_declared() -> None:
    hints = {name: action.hints for name, action in notion.actions.items()}
    assert {name for name, h in hints.items() if h.read_only} == {
        "search",
        "query_database",
        "get_database",
        "get_page",
    }
    assert not hints["create_page"].idempotent and not hints["create_page"].destructive
    assert hints["update_page"].idempotent and hints["update_page"].destructive
    spec = notion.spec
    assert spec.availability == "available" and spec.auth_type == "oauth"
    assert spec.secret_keys == ("token",)
    assert spec.oauth is not None and spec.oauth.credential_keys == {"access_token": "token"}


def test_alloy_action_ids_resolve_and_lists_page_as_alloy_expects() -> None:
    aliases = {"post-search": "search", "get-page": "get_page", "post-page": "create_page"}
    aliases |= {
        "patch-page": "update_page",
        "get-database": "get_database",
        "query-database": "query_database",
    }
    for alloy_id, name in aliases.items():
        found = notion.find_action(alloy_id)
        assert found is not None and found.name == name
    item = {"object": "page", "id": "x", "title": "T"}
    search = {"count": 1, "pages": [item], "has_more": True, "next_cursor": "c"}
    assert alloy_page(search).model_dump() == {"data": [item], "has_more": True, "next_cursor": "c"}
    rows = {"results": [item], "has_more": False, "next_cursor": None, "data_source_id": "d"}
    assert alloy_page(rows).model_dump() == {"data": [item], "has_more": False, "next_cursor": None}


async def test_an_oauth_connection_made_before_credential_keys_still_works(world: World) -> None:
    account = await world.runner().verify(notion, {"access_token": TOKEN})
    assert account["workspaceName"] == "Acme"


# -- errors ---------------------------------------------------------------------------------------
async def test_notion_errors_map_to_actionable_kinds(world: World) -> None:
    with pytest.raises(InvalidCredentials, match="unauthorized"):
        await world.runner().verify(notion, {"token": WRONG_TOKEN})
    with pytest.raises(InvalidCredentials):
        await world.run("search", {}, credentials={"token": WRONG_TOKEN})

    world.fake.hide(world.done_id)
    with pytest.raises(NotFound, match="shared with your integration") as missing:
        await world.run("get_page", {"page_id": world.done_id})
    assert missing.value.detail and missing.value.detail.startswith("Notion request_id ")

    world.fake.add_token("ntn_ReadOnlyIntegrationToken000000000", capabilities=frozenset({"read"}))
    with pytest.raises(MissingScopes, match="Connections") as lacking:
        await world.run(
            "create_page",
            {"parent": {"page_id": world.home_id}, "properties": {"title": title("x")}},
            credentials={"token": "ntn_ReadOnlyIntegrationToken000000000"},
        )
    assert lacking.value.scopes == ["insert_content"] and "insert_content" in lacking.value.message


@pytest.mark.parametrize(
    ("action", "params", "field"),
    [
        ("update_page", {"properties": {"Priority": {"select": {"name": "High"}}}}, "properties.Priority"),
        ("update_page", {"properties": {"Status": {"rich_text": []}}}, "properties.Status"),
        ("update_page", {"properties": {"Name": {"title": "not a list"}}}, "properties.Name"),
        (
            "query_database",
            {"filter": {"property": "Owner", "people": {"contains": "x"}}},
            "properties.Owner",
        ),
    ],
)
async def test_notion_validation_errors_name_the_property(
    world: World, action: str, params: dict[str, Any], field: str
) -> None:
    target = {"page_id": world.todo_id} if action == "update_page" else {"database_id": world.database_id}
    with pytest.raises(InvalidInput, match="Notion rejected the input") as caught:
        await world.run(action, {**target, **params})
    assert caught.value.field == field


async def test_malformed_ids_are_refused_before_calling_notion(world: World) -> None:
    with pytest.raises(InvalidInput, match="Notion id") as caught:
        await world.run("get_page", {"page_id": "../users/me"})
    assert caught.value.field == "page_id"
    assert world.fake.calls == []


async def test_server_errors_retry_reads_and_report_writes(world: World) -> None:
    world.fake.fail_next("pages.retrieve", status=500)
    page = await world.run("get_page", {"page_id": world.home_id})
    assert page["title"] == "Home" and len(world.sleeps) == 1

    world.fake.fail_next("pages.create", status=503, code="service_unavailable")
    with pytest.raises(UpstreamError) as caught:
        await world.run("create_page", {"parent": {"page_id": world.home_id}, "properties": {}})
    assert caught.value.is_transient and caught.value.status == 503
    assert world.fake.endpoint_calls("pages.create") == 1


async def test_a_timeout_is_an_upstream_timeout(world: World) -> None:
    async def stall(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    with pytest.raises(UpstreamTimeout):
        await world.run("get_page", {"page_id": world.home_id}, http_transport=httpx.MockTransport(stall))


async def test_the_fake_insists_on_the_notion_version_header(world: World) -> None:
    async with httpx.AsyncClient(base_url=world.url) as http:
        response = await http.get("/v1/users/me", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 400
    assert response.json()["code"] == "missing_version"
