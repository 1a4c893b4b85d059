"""GitHub actions over httpx against the fake REST API on loopback."""

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
)
from tests.connectors.cases import Sleeps
from tests.fakes.github import FakeGitHub
from tests.support.asgi import Swappable

pytestmark = pytest.mark.anyio
github = load_catalog()["github"]
TOKEN = "ghp_CanaryGitHubSecret0123456789abcdefAB"
CREDENTIALS = {"token": TOKEN}
REPO = {"owner": "octo-org", "repo": "hello-world"}


@pytest.fixture
def fake(provider_server: tuple[Swappable, str]) -> FakeGitHub:
    fake = FakeGitHub()
    fake.add_token(TOKEN)
    provider_server[0].target = fake.app
    return fake


@pytest.fixture
def url(provider_server: tuple[Swappable, str], fake: FakeGitHub) -> str:
    return provider_server[1]


def runner(url: str, sleeps: Sleeps | None = None) -> ActionRunner:
    return ActionRunner(
        api_bases={"github": url}, timeout=5, sleep=sleeps if sleeps is not None else Sleeps()
    )


async def run(url: str, action: str, params: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    credentials = kwargs.pop("credentials", CREDENTIALS)
    result = await runner(url, kwargs.pop("sleeps", None)).run(
        github, github.actions[action], params, credentials=credentials
    )
    return result.model_dump()


async def test_verify_names_the_account(url: str) -> None:
    assert await runner(url).verify(github, CREDENTIALS) == {"login": "octocat", "id": 583231}


async def test_create_issue_returns_its_number_id_and_url(fake: FakeGitHub, url: str) -> None:
    params = {
        **REPO,
        "title": "Crash on start",
        "body": "Steps...",
        "labels": ["bug"],
        "assignees": ["hubot"],
    }
    result = await run(url, "create_issue", params)
    [issue] = fake.issues()
    assert result == {
        "issue_number": 1,
        "issue_id": issue["id"],
        "url": "https://github.com/octo-org/hello-world/issues/1",
        "state": "open",
    }
    assert issue["labels"] == [{"name": "bug"}] and issue["assignees"] == [{"login": "hubot"}]
    sent = fake.headers_seen[-1]
    assert sent["authorization"] == f"Bearer {TOKEN}"
    assert sent["accept"] == "application/vnd.github+json"
    assert sent["x-github-api-version"] == "2022-11-28"


async def test_list_issues_pages_through_the_link_header_and_skips_pull_requests(
    fake: FakeGitHub, url: str
) -> None:
    for title in ("one", "two", "three"):
        fake.add_issue("octo-org", "hello-world", title)
    fake.add_issue("octo-org", "hello-world", "a pull request", pull_request=True)
    fake.add_issue("octo-org", "hello-world", "done", state="closed")
    first = await run(url, "list_issues", {**REPO, "per_page": 2})
    assert [i["title"] for i in first["issues"]] == ["three"]  # the newest open item is the PR
    assert first["issues"][0] == {
        "number": 3,
        "title": "three",
        "state": "open",
        "url": "https://github.com/octo-org/hello-world/issues/3",
        "user": "octocat",
    }
    assert first["next_page"] == 2
    second = await run(url, "list_issues", {**REPO, "per_page": 2, "page": first["next_page"]})
    assert ([i["title"] for i in second["issues"]], second["next_page"]) == (["two", "one"], None)
    everything = await run(url, "list_issues", {**REPO, "state": "all"})
    assert [i["number"] for i in everything["issues"]] == [5, 3, 2, 1]


async def test_list_issues_filters_by_labels(fake: FakeGitHub, url: str) -> None:
    await run(url, "create_issue", {**REPO, "title": "tagged", "labels": ["bug", "ui"]})
    await run(url, "create_issue", {**REPO, "title": "plain"})
    result = await run(url, "list_issues", {**REPO, "labels": ["bug", "ui"]})
    assert [i["title"] for i in result["issues"]] == ["tagged"]
    assert fake.calls[-1][1]["labels"] == "bug,ui"


async def test_comment_on_issue_returns_the_comment_id_and_url(fake: FakeGitHub, url: str) -> None:
    fake.add_issue("octo-org", "hello-world", "discuss")
    result = await run(url, "comment_on_issue", {**REPO, "issue_number": 1, "body": "Looking into it."})
    [comment] = fake.comments
    assert result == {
        "comment_id": comment["id"],
        "url": f"https://github.com/octo-org/hello-world/issues/1#issuecomment-{comment['id']}",
    }
    assert comment["body"] == "Looking into it."


async def test_an_oauth_connection_uses_its_access_token(fake: FakeGitHub, url: str) -> None:
    assert github.spec.oauth is not None and github.spec.oauth.credential_keys == {"access_token": "token"}
    fake.add_token("gho_oauthIssuedToken123456")
    account = await runner(url).verify(github, {"access_token": "gho_oauthIssuedToken123456"})
    assert account["login"] == "octocat"


async def test_a_bad_token_is_invalid_credentials(url: str) -> None:
    unknown = {"token": "ghp_notAKnownToken00000000000000000000000"}
    with pytest.raises(InvalidCredentials, match="Bad credentials"):
        await runner(url).verify(github, unknown)
    with pytest.raises(InvalidCredentials):
        await run(url, "list_issues", REPO, credentials=unknown)


async def test_unknown_repository_and_issue_are_not_found(fake: FakeGitHub, url: str) -> None:
    with pytest.raises(NotFound):
        await run(url, "list_issues", {"owner": "octo-org", "repo": "nope"})
    with pytest.raises(NotFound):
        await run(url, "comment_on_issue", {**REPO, "issue_number": 99, "body": "x"})


async def test_a_validation_failure_names_the_field(fake: FakeGitHub, url: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        await run(url, "create_issue", {**REPO, "title": "x", "assignees": ["stranger"]})
    assert caught.value.field == "assignees"
    assert fake.issues() == []


async def test_bad_parameters_are_refused_before_any_request(fake: FakeGitHub, url: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        await run(url, "create_issue", {**REPO, "title": ""})
    assert caught.value.field == "title"
    with pytest.raises(InvalidInput) as caught:
        await run(url, "list_issues", {"owner": "octo-org", "repo": ".."})
    assert caught.value.field == "repo"
    with pytest.raises(InvalidInput) as caught:
        await run(url, "list_issues", {**REPO, "per_page": 101})
    assert caught.value.field == "per_page"
    assert fake.calls == []


async def test_a_classic_token_without_repo_scope_is_told_which_scope(fake: FakeGitHub, url: str) -> None:
    fake.add_token("ghp_readUserOnly000000000000000000000000", scopes=["read:user"])
    with pytest.raises(MissingScopes) as caught:
        await run(
            url,
            "create_issue",
            {**REPO, "title": "x"},
            credentials={"token": "ghp_readUserOnly000000000000000000000000"},
        )
    assert caught.value.scopes == ["repo"] and "repo" in caught.value.message


async def test_a_fine_grained_token_without_issue_write_is_told_which_permission(
    fake: FakeGitHub, url: str
) -> None:
    token = "github_pat_11AAAAAAA0readOnlyIssues_xyz"
    fake.add_token(token, scopes=None, permissions={"issues": "read"})
    assert (await run(url, "list_issues", REPO, credentials={"token": token}))["issues"] == []
    with pytest.raises(MissingScopes) as caught:
        await run(
            url, "comment_on_issue", {**REPO, "issue_number": 1, "body": "x"}, credentials={"token": token}
        )
    assert caught.value.scopes == ["issues=write"]


async def test_other_refusals_are_forbidden(fake: FakeGitHub, url: str) -> None:
    fake.break_next("create_issue", {"message": "Issue creation is blocked for this user"}, status=403)
    with pytest.raises(Forbidden, match="blocked"):
        await run(url, "create_issue", {**REPO, "title": "x"})


async def test_a_secondary_rate_limit_honours_retry_after(fake: FakeGitHub, url: str) -> None:
    fake.rate_limit_next("create_comment", kind="secondary", wait=42, status=429)
    fake.add_issue("octo-org", "hello-world", "busy")
    with pytest.raises(RateLimited) as caught:
        await run(url, "comment_on_issue", {**REPO, "issue_number": 1, "body": "x"})
    assert caught.value.retry_after == 42
    assert fake.comments == []


async def test_a_server_error_on_a_read_is_retried(fake: FakeGitHub, url: str) -> None:
    fake.fail_next("list_issues", status=502)
    sleeps = Sleeps()
    assert (await run(url, "list_issues", REPO, sleeps=sleeps))["issues"] == []
    assert len(sleeps) == 1
