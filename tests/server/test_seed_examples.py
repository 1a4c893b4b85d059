"""The seeds' requests as written: Alloy's Notion calls and the Integration Layer's connector list."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from server.settings import ConnectorSettings, Settings
from tests.conftest import Tendril, running_tendril
from tests.fakes.gmail import FakeGmail
from tests.fakes.loopback import run_asgi_on_loopback
from tests.fakes.notion import FakeNotion
from tests.support.core import stored_rows

pytestmark = pytest.mark.anyio
NOTION_TOKEN = "ntn_CanaryNotionIntegrationToken4242424242"
GMAIL_TOKEN = "ya29.CanaryGmailAccessToken0123456789"


@pytest.fixture
def notion() -> Iterator[tuple[FakeNotion, str]]:
    fake = FakeNotion()
    fake.add_token(NOTION_TOKEN, workspace_name="Acme")
    with run_asgi_on_loopback(fake.app) as url:
        yield fake, url


@pytest.fixture
async def with_notion(settings: Settings, notion: tuple[FakeNotion, str]) -> AsyncIterator[Tendril]:
    connectors = {**settings.connectors, "notion": ConnectorSettings(api_base=notion[1])}
    async with running_tendril(settings.model_copy(update={"connectors": connectors})) as tendril:
        yield tendril


async def test_alloys_notion_examples_work_with_only_an_api_key_added(
    with_notion: Tendril, notion: tuple[FakeNotion, str]
) -> None:
    fake, _ = notion
    database_id = fake.add_database("Tasks", {"Name": "title", "Status": "select"})
    fake.add_row(fake.source_of(database_id), {"Name": "Write docs", "Status": "Todo"})
    page_id = fake.add_page("Meeting Notes")
    owner = await with_notion.new_owner()
    client = with_notion.client(owner.api_key)
    started = await client.create_connection("notion")
    await client.submit_credentials(started.connection.id, {"token": NOTION_TOKEN})
    headers = {"Authorization": f"Bearer {owner.api_key}", "Content-Type": "application/json"}

    async def execute(action_id: str, parameters: dict[str, object]) -> dict[str, object]:
        async with with_notion.raw() as http:
            response = await http.post(
                f"/api/v1/connectors/notion/actions/{action_id}",
                json={"credentialId": started.connection.id, "parameters": parameters},
                headers=headers,
            )
        assert response.status_code == 200, response.text
        return response.json()

    # The seed's searchPages(): query plus its filter shape.
    found = await execute(
        "post-search", {"query": "Meeting", "filter": {"value": "page", "property": "object"}}
    )
    assert set(found) == {"data", "has_more", "next_cursor"} and found["has_more"] is False
    assert [p["id"].replace("-", "") for p in found["data"]] == [page_id.replace("-", "")]  # type: ignore[union-attr]
    page = await execute("get-page", {"page_id": page_id})
    assert page["data"]["id"].replace("-", "") == page_id.replace("-", "")  # type: ignore[index]
    rows = await execute("query-database", {"database_id": database_id})
    assert len(rows["data"]) == 1  # type: ignore[arg-type]
    created = await execute(
        "post-page",
        {
            "parent": {"type": "database_id", "database_id": database_id},
            "properties": {"Name": {"title": [{"text": {"content": "New"}}]}},
        },
    )
    assert created["data"]["page_id"]  # type: ignore[index]
    assert NOTION_TOKEN not in str([found, page, rows, created])


async def test_the_integration_layers_connector_list_reads_as_written(tendril: Tendril) -> None:
    owner = await tendril.new_owner()
    async with tendril.raw() as http:
        response = await http.get("/api/v1/connectors?available=true", headers={"X-Api-Key": owner.api_key})
    items = {item["type"]: item for item in response.json()}
    slack = items["slack"]
    assert slack["name"] == "Slack" and slack["description"].startswith("Post messages")
    send = {action["name"]: action for action in slack["actions"]}["post_message"]
    assert {"name", "description", "inputSchema", "outputSchema"} <= set(send)
    assert send["inputSchema"]["properties"]["text"]["type"] == "string"


@pytest.fixture
def gmail() -> Iterator[tuple[FakeGmail, str]]:
    fake = FakeGmail()
    fake.add_token(GMAIL_TOKEN)
    with run_asgi_on_loopback(fake.app) as url:
        yield fake, url


async def test_levqors_gmail_example_with_a_credentials_object(
    settings: Settings, gmail: tuple[FakeGmail, str]
) -> None:
    connectors = {**settings.connectors, "gmail": ConnectorSettings(api_base=gmail[1])}
    async with running_tendril(settings.model_copy(update={"connectors": connectors})) as tendril:
        owner = await tendril.new_owner()
        body = {
            "action": "list_labels",
            "credentials": {
                "token": GMAIL_TOKEN,
                "refresh_token": "1//not-used-here",
                "client_id": "xxx.apps.googleusercontent.com",
                "client_secret": "not-used-here",
            },
            "params": {},
        }
        async with tendril.raw() as http:
            response = await http.post(
                "/api/v1/connect/gmail", json=body, headers={"X-Api-Key": owner.api_key}
            )
            missing = await http.post(
                "/api/v1/connect/gmail", json={"action": "list_labels"}, headers={"X-Api-Key": owner.api_key}
            )
    assert response.status_code == 200, response.text
    result = response.json()
    assert (result["status"], result["connector"]) == ("ok", "gmail")
    assert "INBOX" in result["result"]["labels"]
    assert GMAIL_TOKEN not in response.text
    assert (missing.status_code, missing.json()["error"]) == (400, "token required")
    async with stored_rows(tendril.core.settings) as store:
        assert await store.all_sealed_credentials() == []  # used once, never stored
