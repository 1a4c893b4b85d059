"""Linear actions over httpx GraphQL against the fake API on loopback."""

from __future__ import annotations

from typing import Any

import pytest

from connectors import ActionRunner, load_catalog
from connectors.errors import (
    Forbidden,
    InvalidCredentials,
    InvalidInput,
    MissingScopes,
    NotFound,
    RateLimited,
    UpstreamError,
)
from tests.connectors.cases import Sleeps
from tests.fakes.linear import TEAM_ID, VIEWER_ID, FakeLinear
from tests.support.asgi import Swappable

pytestmark = pytest.mark.anyio
linear = load_catalog()["linear"]
API_KEY = "lin_api_CanaryLinearSecret0123456789abcdefGHIJ"
CREDENTIALS = {"api_key": API_KEY}
OAUTH_TOKEN = "lin_oauth_issuedByTheFakeServer0123456789"
BUG_LABEL = "c0ffee00-0000-4000-8000-000000000001"


@pytest.fixture
def fake(provider_server: tuple[Swappable, str]) -> FakeLinear:
    fake = FakeLinear()
    fake.add_token(API_KEY)
    provider_server[0].target = fake.app
    return fake


@pytest.fixture
def url(provider_server: tuple[Swappable, str], fake: FakeLinear) -> str:
    return provider_server[1]


def runner(url: str, sleeps: Sleeps | None = None) -> ActionRunner:
    return ActionRunner(
        api_bases={"linear": url}, timeout=5, sleep=sleeps if sleeps is not None else Sleeps()
    )


async def run(url: str, action: str, params: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    credentials = kwargs.pop("credentials", CREDENTIALS)
    result = await runner(url, kwargs.pop("sleeps", None)).run(
        linear, linear.actions[action], params, credentials=credentials
    )
    return result.model_dump()


async def test_verify_sends_a_personal_key_bare_and_names_the_user(fake: FakeLinear, url: str) -> None:
    assert await runner(url).verify(linear, CREDENTIALS) == {"userId": VIEWER_ID, "name": "Ada Lovelace"}
    assert fake.authorizations == [API_KEY]


async def test_an_oauth_token_is_sent_as_bearer(fake: FakeLinear, url: str) -> None:
    assert linear.spec.oauth is not None
    assert linear.spec.oauth.credential_keys == {"access_token": "access_token"}
    fake.add_token(OAUTH_TOKEN, kind="oauth", scopes=["read", "write"])
    stored = {
        "access_token": OAUTH_TOKEN,
        "refresh_token": "r",
        "_credential_keys": "access_token=access_token",
    }
    account = await runner(url).verify(linear, stored)
    assert account["userId"] == VIEWER_ID
    assert fake.authorizations == [f"Bearer {OAUTH_TOKEN}"]


async def test_create_issue_returns_its_id_identifier_and_url(fake: FakeLinear, url: str) -> None:
    params = {
        "team_id": TEAM_ID,
        "title": "Login button misaligned",
        "description": "On **Safari** only.",
        "priority": 2,
        "assignee_id": VIEWER_ID,
        "label_ids": [BUG_LABEL],
    }
    result = await run(url, "create_issue", params)
    [issue] = fake.issues
    assert result == {
        "issue_id": issue["id"],
        "identifier": "ENG-1",
        "url": "https://linear.app/acme/issue/eng-1/login-button-misaligned",
    }
    operation, variables = fake.calls[-1]
    assert operation == "issueCreate"
    assert variables["input"] == {
        "teamId": TEAM_ID,
        "title": "Login button misaligned",
        "description": "On **Safari** only.",
        "priority": 2,
        "assigneeId": VIEWER_ID,
        "labelIds": [BUG_LABEL],
    }


async def test_search_issues_pages_with_the_cursor(fake: FakeLinear, url: str) -> None:
    for title in ("Crash on login", "Crash on logout", "Crash in settings"):
        fake.add_issue(title)
    fake.add_issue("Old crash", archived=True)
    fake.add_issue("Unrelated")
    first = await run(url, "search_issues", {"query": "crash", "first": 2})
    assert [i["identifier"] for i in first["issues"]] == ["ENG-3", "ENG-2"]
    assert first["issues"][0] == {
        "id": fake.issues[2]["id"],
        "identifier": "ENG-3",
        "title": "Crash in settings",
        "state": "Todo",
        "url": "https://linear.app/acme/issue/eng-3/crash-in-settings",
    }
    assert first["has_more"] is True and first["next_cursor"] == fake.issues[1]["id"]
    rest = await run(url, "search_issues", {"query": "crash", "first": 2, "after": first["next_cursor"]})
    assert ([i["identifier"] for i in rest["issues"]], rest["has_more"], rest["next_cursor"]) == (
        ["ENG-1"],
        False,
        None,
    )
    archived = await run(url, "search_issues", {"query": "crash", "include_archived": True})
    assert len(archived["issues"]) == 4
    assert fake.calls[-1] == (
        "searchIssues",
        {"term": "crash", "first": 25, "after": None, "includeArchived": True},
    )


async def test_a_bad_key_is_invalid_credentials(fake: FakeLinear, url: str) -> None:
    unknown = {"api_key": "lin_api_notAKnownKey000000000000000000"}
    with pytest.raises(InvalidCredentials, match="not authenticated"):
        await runner(url).verify(linear, unknown)
    with pytest.raises(InvalidCredentials):
        await run(url, "search_issues", {"query": "x"}, credentials=unknown)


async def test_a_bare_http_401_is_invalid_credentials(fake: FakeLinear, url: str) -> None:
    fake.break_next("viewer", {}, status=401)
    with pytest.raises(InvalidCredentials):
        await runner(url).verify(linear, CREDENTIALS)


async def test_invalid_input_names_the_field(fake: FakeLinear, url: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        await run(url, "create_issue", {"team_id": "ENG", "title": "x"})
    assert caught.value.field == "team_id" and "UUID" in caught.value.message
    with pytest.raises(InvalidInput) as caught:
        await run(url, "create_issue", {"team_id": TEAM_ID, "title": "x", "priority": 5})
    assert caught.value.field == "priority"  # refused before any request
    with pytest.raises(InvalidInput) as caught:
        await run(url, "search_issues", {"query": "x", "after": "not-a-cursor"})
    assert caught.value.field == "after"
    assert fake.issues == []


async def test_unknown_references_are_not_found(fake: FakeLinear, url: str) -> None:
    with pytest.raises(NotFound, match="Team"):
        await run(url, "create_issue", {"team_id": "00000000-0000-4000-8000-000000000000", "title": "x"})
    with pytest.raises(NotFound, match="label"):
        await run(url, "create_issue", {"team_id": TEAM_ID, "title": "x", "label_ids": ["nope"]})


async def test_an_oauth_token_without_write_is_told_which_scope(fake: FakeLinear, url: str) -> None:
    fake.add_token(OAUTH_TOKEN, kind="oauth", scopes=["read"])
    credentials = {"access_token": OAUTH_TOKEN}
    assert (await run(url, "search_issues", {"query": "x"}, credentials=credentials))["issues"] == []
    with pytest.raises(MissingScopes) as caught:
        await run(url, "create_issue", {"team_id": TEAM_ID, "title": "x"}, credentials=credentials)
    assert caught.value.scopes == ["write"]


async def test_other_refusals_are_forbidden(fake: FakeLinear, url: str) -> None:
    body = {"errors": [{"message": "You are not a member of this team", "extensions": {"code": "FORBIDDEN"}}]}
    fake.break_next("issueCreate", body, status=400)
    with pytest.raises(Forbidden, match="not a member"):
        await run(url, "create_issue", {"team_id": TEAM_ID, "title": "x"})


async def test_a_rate_limited_search_waits_for_the_reset_and_retries(fake: FakeLinear, url: str) -> None:
    fake.add_issue("Crash")
    fake.rate_limit_next("searchIssues", reset_in=5)
    sleeps = Sleeps()
    result = await run(url, "search_issues", {"query": "crash"}, sleeps=sleeps)
    assert [i["identifier"] for i in result["issues"]] == ["ENG-1"]
    [waited] = sleeps
    assert 4 <= waited <= 5  # X-RateLimit-Requests-Reset is epoch milliseconds


async def test_retry_after_wins_over_the_reset_header(fake: FakeLinear, url: str) -> None:
    fake.rate_limit_next("issueCreate", reset_in=300, retry_after=42, status=429)
    with pytest.raises(RateLimited) as caught:
        await run(url, "create_issue", {"team_id": TEAM_ID, "title": "x"})
    assert caught.value.retry_after == 42


async def test_a_server_error_on_a_search_is_retried(fake: FakeLinear, url: str) -> None:
    fake.fail_next("searchIssues", status=503)
    sleeps = Sleeps()
    assert (await run(url, "search_issues", {"query": "x"}, sleeps=sleeps))["issues"] == []
    assert len(sleeps) == 1


async def test_an_unconfirmed_create_is_an_upstream_error(fake: FakeLinear, url: str) -> None:
    fake.break_next("issueCreate", {"data": {"issueCreate": {"success": False, "issue": None}}})
    with pytest.raises(UpstreamError, match="success was false"):
        await run(url, "create_issue", {"team_id": TEAM_ID, "title": "x"})


async def test_list_teams_finds_the_team_id_create_issue_needs(fake: FakeLinear, url: str) -> None:
    fake.add_team("5b2f9c1e-8a3d-4e6f-9b1a-2c3d4e5f6a7b", "OPS", "Operations")
    teams = (await run(url, "list_teams", {}))["teams"]
    assert {(t["key"], t["name"]) for t in teams} == {("ENG", "Engineering"), ("OPS", "Operations")}
    eng = next(t["id"] for t in teams if t["key"] == "ENG")
    created = await run(url, "create_issue", {"team_id": eng, "title": "Found by team key"})
    assert created["identifier"].startswith("ENG-")
