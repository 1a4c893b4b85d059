"""Linear through its GraphQL API over httpx (no SDK: two operations and a viewer query)."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import httpx
from pydantic import BaseModel, Field

from connectors import ActionContext, ClientOptions, Connector, Hints
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

# GraphQL argument names as Linear echoes them in errors -> our parameter names.
_PARAMS = {
    "teamId": "team_id",
    "assigneeId": "assignee_id",
    "labelIds": "label_ids",
    "priority": "priority",
    "title": "title",
    "description": "description",
    "term": "query",
    "first": "first",
    "after": "after",
}
_PARAM_IN_TEXT = re.compile(r"\b(" + "|".join(_PARAMS) + r")\b")
_QUOTED_SCOPE = re.compile(r"`([a-z][a-z:_]*)`")


class LinearApiError(Exception):
    """GraphQL `errors` (or a bare HTTP failure); the first error decides what it means."""

    def __init__(self, status: int, errors: list[Any], headers: httpx.Headers) -> None:
        first: dict[str, Any] = errors[0] if errors and isinstance(errors[0], dict) else {}
        extensions: dict[str, Any] = first.get("extensions") or {}
        self.status = status
        # Linear sends `code` (RATELIMITED) and/or `type` ("authentication error"); the SDK reads `type`.
        kind = extensions.get("code") or extensions.get("type") or ""
        self.code = str(kind).upper().replace(" ", "_")
        self.raw_message = str(first.get("message") or "")
        self.message = str(extensions.get("userPresentableMessage") or self.raw_message or f"HTTP {status}")
        self.headers = headers
        super().__init__(f"Linear {self.code or status}: {self.message}")


class LinearApi:
    """POST one GraphQL document; return `data` or raise LinearApiError."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self._http = http

    async def execute(self, query: str, variables: Mapping[str, Any] | None = None) -> dict[str, Any]:
        response = await self._http.post("graphql", json={"query": query, "variables": dict(variables or {})})
        try:
            payload = response.json()
        except ValueError:
            payload = None
        body: dict[str, Any] = payload if isinstance(payload, dict) else {}
        errors = body.get("errors")
        if errors or response.status_code >= 400:
            raise LinearApiError(
                response.status_code, errors if isinstance(errors, list) else [], response.headers
            )
        data = body.get("data")
        if not isinstance(data, dict):
            raise UpstreamError("Linear answered without GraphQL data", status=response.status_code)
        return data


@connector.client
@asynccontextmanager
async def open_client(credentials: Mapping[str, str], options: ClientOptions) -> AsyncIterator[LinearApi]:
    # Linear wants OAuth tokens as `Bearer <token>` but personal API keys bare (a Bearer-prefixed
    # key is refused), so the OAuth token is stored under its own key.
    if credentials.get("access_token"):
        authorization = f"Bearer {credentials['access_token']}"
    elif credentials.get("api_key"):
        authorization = credentials["api_key"]
    else:
        raise InvalidCredentials("no Linear API key or OAuth token is stored for this connection")
    headers = {"Authorization": authorization}
    async with new_http_client(options.api_base, headers=headers, transport=options.http_transport) as http:
        yield LinearApi(http)


@connector.verifier
async def verify(client: LinearApi) -> dict[str, Any]:
    """viewer: proves the credential works and names the user it acts as."""
    data = await client.execute("query Viewer { viewer { id name email } }")
    viewer = data.get("viewer") or {}
    return {"userId": viewer.get("id"), "name": viewer.get("name")}


@connector.error_mapper
def map_linear_error(exc: BaseException) -> ConnectorError | None:
    if not isinstance(exc, LinearApiError):
        return None
    code, text = exc.code, exc.message
    if code == "RATELIMITED" or exc.status == 429:
        wait = _rate_limit_wait(exc.headers)
        return RateLimited(f"Linear rate limit reached; retry after {wait:g}s", retry_after=wait)
    if code == "AUTHENTICATION_ERROR" or exc.status == 401:
        return InvalidCredentials(f"Linear rejected the credential ({text})")
    if "Entity not found" in exc.raw_message or code == "NOT_FOUND":
        return NotFound(f"Linear: {text}")
    if code == "FORBIDDEN" or exc.status == 403:
        scopes = _QUOTED_SCOPE.findall(text) if "scope" in text.lower() else []
        return MissingScopes(scopes, provider="Linear") if scopes else Forbidden(f"Linear refused: {text}")
    if code in ("INVALID_INPUT", "BAD_USER_INPUT"):
        found = _PARAM_IN_TEXT.search(f"{text} {exc.raw_message}")
        return InvalidInput(f"Linear: {text}", field=_PARAMS[found.group(1)] if found else None)
    transient = exc.status >= 500 or code in ("INTERNAL_ERROR", "LOCK_TIMEOUT")
    return UpstreamError(f"Linear error: {text}", status=exc.status, retryable=transient)


def _rate_limit_wait(headers: httpx.Headers) -> float:
    """Retry-After if sent, else the reset time of the exhausted bucket (requests or complexity)."""
    if headers.get("retry-after"):
        return retry_after_seconds(headers["retry-after"])
    buckets = ("requests", "complexity")
    exhausted = [b for b in buckets if headers.get(f"x-ratelimit-{b}-remaining") == "0"]
    waits = [_until(headers.get(f"x-ratelimit-{b}-reset")) for b in exhausted or buckets]
    known = [w for w in waits if w is not None]
    return max(known) if known else 1.0


def _until(epoch: str | None) -> float | None:
    try:
        value = float(epoch or "")
    except ValueError:
        return None
    if value > 1e11:  # Linear documents its resets as epoch milliseconds
        value /= 1000
    return max(0.0, value - time.time())


# -- actions -----------------------------------------------------------------------------------
_CREATE_ISSUE = """
mutation IssueCreate($input: IssueCreateInput!) {
  issueCreate(input: $input) { success issue { id identifier url } }
}
"""


class CreateIssueInput(BaseModel):
    team_id: str = Field(
        min_length=1, max_length=64, description="Id (UUID) of the team that owns the issue."
    )
    title: str = Field(min_length=1, max_length=1024, description="Issue title.")
    description: str | None = Field(None, max_length=200_000, description="Issue description in Markdown.")
    priority: int | None = Field(
        None, ge=0, le=4, description="0 no priority, 1 urgent, 2 high, 3 medium, 4 low."
    )
    assignee_id: str | None = Field(None, description="Id of the user to assign.")
    label_ids: list[str] = Field(default_factory=list, description="Ids of labels to apply.")


class CreateIssueOutput(BaseModel):
    issue_id: str = Field(description="Linear's id (UUID) of the new issue.")
    identifier: str = Field(description="Human-readable key, e.g. ENG-123.")
    url: str = Field(description="Web URL of the issue.")


@connector.action(Hints(read_only=False, idempotent=False), scopes=("write",))
async def create_issue(ctx: ActionContext[LinearApi], params: CreateIssueInput) -> CreateIssueOutput:
    """Create an issue in a Linear team."""
    fields = {
        "teamId": params.team_id,
        "title": params.title,
        "description": params.description,
        "priority": params.priority,
        "assigneeId": params.assignee_id,
        "labelIds": params.label_ids or None,
    }
    data = await ctx.client.execute(
        _CREATE_ISSUE, {"input": {k: v for k, v in fields.items() if v is not None}}
    )
    payload = data.get("issueCreate") or {}
    issue = payload.get("issue")
    if not payload.get("success") or not issue:
        raise UpstreamError("Linear did not confirm the new issue (issueCreate.success was false)")
    return CreateIssueOutput(issue_id=issue["id"], identifier=issue["identifier"], url=issue["url"])


_SEARCH_ISSUES = """
query SearchIssues($term: String!, $first: Int, $after: String, $includeArchived: Boolean) {
  searchIssues(term: $term, first: $first, after: $after, includeArchived: $includeArchived) {
    nodes { id identifier title url state { name } }
    pageInfo { hasNextPage endCursor }
  }
}
"""


class SearchIssuesInput(BaseModel):
    query: str = Field(
        min_length=1, max_length=1000, description="Words to search issue titles and text for."
    )
    first: int = Field(25, ge=1, le=100, description="Most issues to return in this page, 1-100.")
    after: str | None = Field(None, description="`next_cursor` from a previous page, to continue.")
    include_archived: bool = Field(False, description="Also search archived issues.")


class FoundIssue(BaseModel):
    id: str = Field(description="Linear's id (UUID) of the issue.")
    identifier: str = Field(description="Human-readable key, e.g. ENG-123.")
    title: str = Field(description="Issue title.")
    state: str | None = Field(None, description="Name of the workflow state, e.g. `In Progress`.")
    url: str = Field(description="Web URL of the issue.")


class SearchIssuesOutput(BaseModel):
    issues: list[FoundIssue] = Field(description="Matching issues in this page.")
    has_more: bool = Field(description="True when more matches follow.")
    next_cursor: str | None = Field(None, description="Pass as `after` for the next page; null at the end.")


@connector.action(Hints(read_only=True), scopes=("read",))
async def search_issues(ctx: ActionContext[LinearApi], params: SearchIssuesInput) -> SearchIssuesOutput:
    """Search Linear issues by text, one page at a time."""
    variables = {
        "term": params.query,
        "first": params.first,
        "after": params.after,
        "includeArchived": params.include_archived,
    }
    found = (await ctx.client.execute(_SEARCH_ISSUES, variables)).get("searchIssues") or {}
    page = found.get("pageInfo") or {}
    issues = [
        FoundIssue(
            id=node["id"],
            identifier=node["identifier"],
            title=node["title"],
            state=(node.get("state") or {}).get("name"),
            url=node["url"],
        )
        for node in found.get("nodes") or []
    ]
    has_more = bool(page.get("hasNextPage"))
    return SearchIssuesOutput(
        issues=issues, has_more=has_more, next_cursor=page.get("endCursor") if has_more else None
    )


_TEAMS = """
query Teams($first: Int) {
  teams(first: $first) { nodes { id key name } }
}
"""


class ListTeamsInput(BaseModel):
    first: int = Field(50, ge=1, le=250, description="Most teams to return.")


class Team(BaseModel):
    id: str = Field(description="Team id (UUID): pass it as `team_id` to create_issue.")
    key: str = Field(description="Short key prefixing the team's issue identifiers, e.g. ENG.")
    name: str = Field(description="Team name.")


class ListTeamsOutput(BaseModel):
    teams: list[Team] = Field(description="Teams the connection can see.")


@connector.action(Hints(read_only=True), scopes=("read",))
async def list_teams(ctx: ActionContext[LinearApi], params: ListTeamsInput) -> ListTeamsOutput:
    """List the Linear teams this connection can see, to find the team_id create_issue needs."""
    found = (await ctx.client.execute(_TEAMS, {"first": params.first})).get("teams") or {}
    return ListTeamsOutput(teams=[Team.model_validate(node) for node in found.get("nodes") or []])
