"""GitHub issues through the REST API over httpx (PAT or OAuth token, both sent as Bearer)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

import httpx
from pydantic import BaseModel, Field, field_validator

from connectors import ActionContext, ClientOptions, Connector, Hints, HookRef, HookRequest, RegisteredHook
from connectors._http import new_http_client, retry_after_seconds
from connectors.errors import (
    ConnectorError,
    Forbidden,
    InvalidCredentials,
    InvalidInput,
    MissingScopes,
    NotFound,
    RateLimited,
    UpstreamError,
)

connector = Connector.load(__file__)

API_VERSION = "2022-11-28"
# GitHub's advice for a secondary limit that names no wait: "wait for at least one minute".
SECONDARY_LIMIT_WAIT = 60.0


class GitHubApiError(Exception):
    """A non-2xx answer: GitHub's `message`, its validation `errors` and the headers that matter."""

    def __init__(self, response: httpx.Response) -> None:
        try:
            payload = response.json()
        except ValueError:
            payload = None
        body: dict[str, Any] = payload if isinstance(payload, dict) else {}
        self.status = response.status_code
        self.message = str(body.get("message") or response.reason_phrase or "error")
        errors = body.get("errors")
        self.errors: list[Any] = errors if isinstance(errors, list) else []
        self.headers = response.headers
        super().__init__(f"GitHub {self.status}: {self.message}")


class GitHubApi:
    """The plumbing every action shares: one request, a GitHubApiError for any failure."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self._http = http

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = await self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise GitHubApiError(response)
        return response


@connector.client
@asynccontextmanager
async def open_client(credentials: Mapping[str, str], options: ClientOptions) -> AsyncIterator[GitHubApi]:
    # `token` is the pasted PAT and where OAuth puts its access token; older OAuth rows kept
    # only `access_token`.
    token = credentials.get("token") or credentials.get("access_token")
    if not token:
        raise InvalidCredentials("no GitHub token is stored for this connection")
    headers = {
        "Authorization": f"Bearer {token}",
        "Accept": "application/vnd.github+json",
        "X-GitHub-Api-Version": API_VERSION,
    }
    async with new_http_client(options.api_base, headers=headers, transport=options.http_transport) as http:
        yield GitHubApi(http)


@connector.verifier
async def verify(client: GitHubApi) -> dict[str, Any]:
    """GET /user: proves the token works and names the account."""
    user = (await client.request("GET", "/user")).json()
    return {"login": user.get("login"), "id": user.get("id")}


@connector.error_mapper
def map_github_error(exc: BaseException) -> ConnectorError | None:
    if not isinstance(exc, GitHubApiError):
        return None
    status, text = exc.status, exc.message
    if status == 401:
        return InvalidCredentials(f"GitHub rejected the token ({text})")
    if status in (403, 429):
        wait = _rate_limit_wait(exc)
        if wait is not None:
            return RateLimited(f"GitHub rate limit reached; retry after {wait:g}s", retry_after=wait)
    if status == 403:
        missing = _missing_scopes(exc.headers)
        if missing:
            return MissingScopes(missing, provider="GitHub")
        return Forbidden(f"GitHub refused: {text}")
    if status in (404, 410):  # 410: issues are disabled on the repository
        return NotFound(f"GitHub: {text} (check owner, repo and number, and that the token can see it)")
    if status == 422:
        return _validation_error(exc)
    return UpstreamError(f"GitHub error {status}: {text}", status=status, retryable=status >= 500)


def _rate_limit_wait(exc: GitHubApiError) -> float | None:
    """Seconds to wait when a 403/429 is a rate limit, the way GitHub's docs order the signals."""
    headers = exc.headers
    if headers.get("retry-after"):
        return retry_after_seconds(headers["retry-after"])
    if headers.get("x-ratelimit-remaining") == "0" and headers.get("x-ratelimit-reset"):
        try:
            return max(0.0, float(headers["x-ratelimit-reset"]) - time.time())
        except ValueError:
            return SECONDARY_LIMIT_WAIT
    if exc.status == 429 or "rate limit" in exc.message.lower():
        return SECONDARY_LIMIT_WAIT
    return None


def _missing_scopes(headers: httpx.Headers) -> list[str]:
    """Classic tokens: accepted OAuth scopes none of which were granted. Fine-grained: the permission."""
    granted = headers.get("x-oauth-scopes")
    if granted is None:  # only classic and OAuth tokens report scopes
        return _scope_list(headers.get("x-accepted-github-permissions"))
    accepted = _scope_list(headers.get("x-accepted-oauth-scopes"))
    return accepted if accepted and not set(accepted) & set(_scope_list(granted)) else []


def _scope_list(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def _validation_error(exc: GitHubApiError) -> InvalidInput:
    first = exc.errors[0] if exc.errors and isinstance(exc.errors[0], dict) else {}
    field = first.get("field")
    code = first.get("code") or ""
    detail = first.get("message") or (f"{field} is {code.replace('_', ' ')}" if field else exc.message)
    return InvalidInput(f"GitHub: {detail}", field=str(field) if field else None)


# -- models ------------------------------------------------------------------------------------
class _Repo(BaseModel):
    owner: str = Field(
        min_length=1,
        max_length=39,
        pattern=r"^[A-Za-z0-9-]+$",
        description="Account or organization that owns the repository, e.g. `octocat`.",
    )
    repo: str = Field(
        min_length=1,
        max_length=100,
        pattern=r"^[A-Za-z0-9._-]+$",
        description="Repository name without the owner, e.g. `hello-world`.",
    )

    @field_validator("repo")
    @classmethod
    def _not_a_dot_path(cls, value: str) -> str:
        # "." and ".." would walk the URL path instead of naming a repository.
        if value in (".", ".."):
            raise ValueError("is not a repository name")
        return value


class CreateIssueInput(_Repo):
    title: str = Field(min_length=1, max_length=256, description="Issue title.")
    body: str | None = Field(None, max_length=65_536, description="Issue text (GitHub Markdown).")
    labels: list[str] = Field(default_factory=list, max_length=100, description="Label names to apply.")
    assignees: list[str] = Field(
        default_factory=list, max_length=10, description="Logins of users to assign (must have repo access)."
    )


class CreateIssueOutput(BaseModel):
    issue_number: int = Field(description="The issue number within the repository (#123).")
    issue_id: int = Field(description="GitHub's global numeric id of the issue.")
    url: str = Field(description="Web URL of the issue.")
    state: str = Field(description="`open` for a new issue.")


@connector.action(Hints(read_only=False, idempotent=False), scopes=("repo",))
async def create_issue(ctx: ActionContext[GitHubApi], params: CreateIssueInput) -> CreateIssueOutput:
    """Open a new issue in a GitHub repository.

    Labels and assignees are optional; GitHub drops them silently when the token cannot triage.
    """
    body: dict[str, Any] = {"title": params.title}
    if params.body is not None:
        body["body"] = params.body
    if params.labels:
        body["labels"] = params.labels
    if params.assignees:
        body["assignees"] = params.assignees
    path = f"/repos/{params.owner}/{params.repo}/issues"
    issue = (await ctx.client.request("POST", path, json=body)).json()
    return CreateIssueOutput(
        issue_number=issue["number"], issue_id=issue["id"], url=issue["html_url"], state=issue["state"]
    )


class ListIssuesInput(_Repo):
    state: Literal["open", "closed", "all"] = Field("open", description="Which issues to list by state.")
    labels: list[str] = Field(
        default_factory=list, description="Only issues carrying all of these label names."
    )
    per_page: int = Field(30, ge=1, le=100, description="Page size, 1-100.")
    page: int = Field(1, ge=1, description="Page number, from 1; pass `next_page` to continue.")


class IssueSummary(BaseModel):
    number: int = Field(description="The issue number within the repository.")
    title: str = Field(description="Issue title.")
    state: str = Field(description="`open` or `closed`.")
    url: str = Field(description="Web URL of the issue.")
    user: str | None = Field(None, description="Login of the author.")


class ListIssuesOutput(BaseModel):
    issues: list[IssueSummary] = Field(description="Issues on this page, newest first.")
    next_page: int | None = Field(None, description="Pass as `page` for more; null on the last page.")


@connector.action(Hints(read_only=True), scopes=("repo",))
async def list_issues(ctx: ActionContext[GitHubApi], params: ListIssuesInput) -> ListIssuesOutput:
    """List issues in a GitHub repository, newest first, one page at a time.

    Pull requests are left out, so a page may hold fewer than `per_page` issues.
    """
    query: dict[str, str | int] = {"state": params.state, "per_page": params.per_page, "page": params.page}
    if params.labels:
        query["labels"] = ",".join(params.labels)
    response = await ctx.client.request("GET", f"/repos/{params.owner}/{params.repo}/issues", params=query)
    issues = [
        IssueSummary(
            number=item["number"],
            title=item["title"],
            state=item["state"],
            url=item["html_url"],
            user=(item.get("user") or {}).get("login"),
        )
        for item in response.json()
        if "pull_request" not in item  # the issues endpoint also returns pull requests
    ]
    return ListIssuesOutput(issues=issues, next_page=_next_page(response))


def _next_page(response: httpx.Response) -> int | None:
    """The page number in the Link header's rel="next" URL, if there is one."""
    url = response.links.get("next", {}).get("url")
    if not url:
        return None
    page = parse_qs(urlsplit(url).query).get("page", [""])[0]
    return int(page) if page.isdigit() else None


class CommentOnIssueInput(_Repo):
    issue_number: int = Field(ge=1, description="Number of the issue (or pull request) to comment on.")
    body: str = Field(min_length=1, max_length=65_536, description="Comment text (GitHub Markdown).")


class CommentOnIssueOutput(BaseModel):
    comment_id: int = Field(description="GitHub's numeric id of the new comment.")
    url: str = Field(description="Web URL of the comment.")


@connector.action(Hints(read_only=False, idempotent=False), scopes=("repo",))
async def comment_on_issue(
    ctx: ActionContext[GitHubApi], params: CommentOnIssueInput
) -> CommentOnIssueOutput:
    """Add a comment to a GitHub issue or pull request."""
    path = f"/repos/{params.owner}/{params.repo}/issues/{params.issue_number}/comments"
    comment = (await ctx.client.request("POST", path, json={"body": params.body})).json()
    return CommentOnIssueOutput(comment_id=comment["id"], url=comment["html_url"])


# -- webhook registration (for Tendril's own receiver; not an agent tool) -------------------------
# Without a choice GitHub sends only `push`; these are the events the catalog's actions deal with.
DEFAULT_HOOK_EVENTS = ("issues", "issue_comment", "pull_request")


@connector.hook_registrar
async def create_repository_hook(client: GitHubApi, request: HookRequest) -> RegisteredHook:
    """POST /repos/{owner}/{repo}/hooks, signed with the secret Tendril chose. Needs the token to
    administer the repository's hooks (classic: admin:repo_hook; fine-grained: Webhooks write)."""
    repository = (request.target or "").strip()
    if repository.count("/") != 1 or not all(repository.split("/")):
        raise InvalidInput("GitHub hooks need the repository as owner/name", field="repository")
    body = {
        "name": "web",
        "active": True,
        "events": list(request.events or DEFAULT_HOOK_EVENTS),
        "config": {"url": request.url, "content_type": "json", "secret": request.secret, "insecure_ssl": "0"},
    }
    hook = (await client.request("POST", f"/repos/{repository}/hooks", json=body)).json()
    return RegisteredHook(
        hook_id=str(hook["id"]),
        secrets={"secret": request.secret},
        description=f"GitHub hook {hook['id']} on {repository} for {', '.join(body['events'])}",
    )


@connector.hook_remover
async def delete_repository_hook(client: GitHubApi, hook: HookRef) -> bool:
    """DELETE /repos/{owner}/{repo}/hooks/{id}. GitHub answers 404 for a hook that is gone (and for
    a token that may not see hooks): either way there is nothing left for Tendril to remove."""
    if not hook.hook_id or not hook.target:
        return False
    try:
        await client.request("DELETE", f"/repos/{hook.target}/hooks/{hook.hook_id}")
    except GitHubApiError as error:
        if error.status == 404:
            return False
        raise
    return True
