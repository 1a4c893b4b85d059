"""In-memory fake of Linear's GraphQL API, served over loopback.

GraphQL-ish, not GraphQL: the operation is picked by the first field of the document (`viewer`,
`issueCreate`, `searchIssues`) and only `variables` are read, so connectors must pass every
argument as a variable. Results carry every field the connector selects, whatever it selects.
What is faithful: `POST /graphql`, personal API keys sent bare and OAuth tokens as Bearer (and
each refused the other way), errors as `{"errors": [{"message", "extensions": {"code", "type",
"userPresentableMessage"}}]}` with HTTP 400, and rate limits as `RATELIMITED` with
`X-RateLimit-Requests-*` headers whose reset is epoch milliseconds.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

logger = logging.getLogger(__name__)

JSON = dict[str, Any]
WEB = "https://linear.app/acme"
TEAM_ID = "9cfb482a-81e3-4154-b5b9-2c805e70a02d"
VIEWER_ID = "2e4f5a1b-6c7d-4e8f-9a0b-1c2d3e4f5a6b"
_FIRST_FIELD = re.compile(r"^\s*(?:(?:query|mutation)\b[^{]*)?\{\s*(\w+)")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_TYPES = {
    "AUTHENTICATION_ERROR": "authentication error",
    "FORBIDDEN": "forbidden",
    "INVALID_INPUT": "invalid input",
    "RATELIMITED": "ratelimited",
    "GRAPHQL_VALIDATION_FAILED": "graphql error",
}


@dataclass
class LinearToken:
    kind: str = "api_key"  # or "oauth"
    user_id: str = VIEWER_ID
    scopes: list[str] | None = None  # OAuth scopes; None: everything


@dataclass
class _Fault:
    status: int
    body: JSON
    headers: dict[str, str] = field(default_factory=dict[str, str])


class LinearError(Exception):
    def __init__(self, code: str, message: str, presentable: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.status = status
        extensions: JSON = {"code": code, "type": _TYPES.get(code, "unknown"), "userError": True}
        if presentable:
            extensions["userPresentableMessage"] = presentable
        self.body: JSON = {"errors": [{"message": message, "extensions": extensions}], "data": None}


class FakeLinear:
    """A workspace with one team (ENG), its users, labels and issues, behind `POST /graphql`."""

    def __init__(self) -> None:
        self.tokens: dict[str, LinearToken] = {}
        self.teams: dict[str, JSON] = {}
        self.users: dict[str, JSON] = {}
        self.labels: dict[str, JSON] = {}
        self.issues: list[JSON] = []
        self.calls: list[tuple[str, JSON]] = []
        self.authorizations: list[str | None] = []
        self._faults: dict[str, deque[_Fault]] = {}
        self._lock = threading.Lock()
        self._clock = itertools.count()
        self.add_team(TEAM_ID, "ENG", "Engineering")
        self.add_user(VIEWER_ID, "Ada Lovelace", "ada@acme.test")
        self.add_label("c0ffee00-0000-4000-8000-000000000001", "bug")

    # --- test controls -------------------------------------------------------

    def add_token(self, token: str, kind: str = "api_key", scopes: list[str] | None = None) -> LinearToken:
        info = LinearToken(kind=kind, scopes=scopes)
        with self._lock:
            self.tokens[token] = info
        return info

    def add_team(self, team_id: str, key: str, name: str) -> None:
        self.teams[team_id] = {"id": team_id, "key": key, "name": name, "next": 1}

    def add_user(self, user_id: str, name: str, email: str) -> None:
        self.users[user_id] = {"id": user_id, "name": name, "email": email}

    def add_label(self, label_id: str, name: str) -> None:
        self.labels[label_id] = {"id": label_id, "name": name}

    def add_issue(self, title: str, *, description: str = "", archived: bool = False) -> JSON:
        with self._lock:
            issue = self._new_issue(self.teams[TEAM_ID], {"title": title, "description": description})
            issue["archivedAt"] = "2026-01-01T00:00:00.000Z" if archived else None
        return issue

    def rate_limit_next(
        self,
        operation: str,
        *,
        reset_in: float = 30.0,
        retry_after: int | None = None,
        status: int = 400,
        times: int = 1,
    ) -> None:
        """RATELIMITED with the requests bucket empty until `reset_in` seconds from now (epoch ms)."""
        error = LinearError("RATELIMITED", "Rate limit exceeded", "Too many API requests, slow down.")
        headers = {
            "X-RateLimit-Requests-Limit": "5000",
            "X-RateLimit-Requests-Remaining": "0",
            "X-RateLimit-Requests-Reset": str(int((time.time() + reset_in) * 1000)),
        }
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        self._queue(operation, _Fault(status, error.body, headers), times)

    def fail_next(self, operation: str, status: int = 500, times: int = 1) -> None:
        self._queue(operation, _Fault(status, {"errors": [{"message": "Internal server error"}]}), times)

    def break_next(
        self, operation: str, body: JSON, status: int = 200, headers: dict[str, str] | None = None
    ) -> None:
        self._queue(operation, _Fault(status, body, headers or {}), 1)

    def _queue(self, operation: str, fault: _Fault, times: int) -> None:
        with self._lock:
            self._faults.setdefault(operation, deque()).extend([fault] * times)

    # --- HTTP ----------------------------------------------------------------

    @cached_property
    def app(self) -> Starlette:
        """The ASGI app; serve it with `run_asgi_on_loopback`."""
        endpoint: Callable[[Request], Awaitable[JSONResponse]] = self._endpoint
        return Starlette(routes=[Route("/graphql", endpoint, methods=["POST"])])

    async def _endpoint(self, request: Request) -> JSONResponse:
        try:
            payload = json.loads(await request.body())
            query, variables = str(payload["query"]), dict(payload.get("variables") or {})
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"errors": [{"message": "Must provide query string."}]}, status_code=400)
        match = _FIRST_FIELD.match(query)
        operation = match.group(1) if match else ""
        with self._lock:
            self.calls.append((operation, variables))
            self.authorizations.append(request.headers.get("authorization"))
            queued = self._faults.get(operation)
            fault = queued.popleft() if queued else None
            if fault is not None:
                return JSONResponse(fault.body, status_code=fault.status, headers=fault.headers)
            try:
                token = self._authenticate(request.headers.get("authorization"))
                data = self._run(operation, token, variables)
            except LinearError as exc:
                logger.debug("linear %s -> %s", operation, exc)
                return JSONResponse(exc.body, status_code=exc.status, headers=_rate_headers())
        return JSONResponse({"data": {operation: data}}, headers=_rate_headers())

    def _authenticate(self, header: str | None) -> LinearToken:
        value = header or ""
        bearer = value.lower().startswith("bearer ")
        token = self.tokens.get(value[7:].strip() if bearer else value.strip())
        if token is None:
            raise LinearError("AUTHENTICATION_ERROR", "Authentication required, not authenticated")
        if token.kind == "api_key" and bearer:
            raise LinearError(
                "AUTHENTICATION_ERROR",
                "It looks like you're trying to use an API key as a Bearer token. "
                "Remove the Bearer prefix from the Authorization header.",
            )
        if token.kind == "oauth" and not bearer:
            raise LinearError("AUTHENTICATION_ERROR", "Authentication required, not authenticated")
        return token

    def _run(self, operation: str, token: LinearToken, variables: JSON) -> Any:
        if operation == "viewer":
            return dict(self.users[token.user_id])
        if operation == "issueCreate":
            _require_scope(token, "write", "issues:create")
            return self._issue_create(dict(variables.get("input") or {}))
        if operation == "searchIssues":
            _require_scope(token, "read", "write")
            return self._search_issues(variables)
        if operation == "teams":
            _require_scope(token, "read", "write")
            teams = [{"id": t["id"], "key": t["key"], "name": t["name"]} for t in self.teams.values()]
            return {"nodes": teams[: int(variables.get("first") or 50)]}
        raise LinearError("GRAPHQL_VALIDATION_FAILED", f'Cannot query field "{operation}" on type "Query".')

    # --- operations (called with the lock held) ------------------------------

    def _issue_create(self, data: JSON) -> JSON:
        team_id = str(data.get("teamId") or "")
        if not _UUID.match(team_id):
            raise LinearError("INVALID_INPUT", "Argument Validation Error", "teamId must be a UUID.")
        team = self.teams.get(team_id)
        if team is None:
            raise LinearError("INVALID_INPUT", "Entity not found: Team", "Could not find referenced Team.")
        if not str(data.get("title") or "").strip():
            raise LinearError("INVALID_INPUT", "Argument Validation Error", "title should not be empty.")
        priority = data.get("priority")
        if priority is not None and priority not in range(5):
            raise LinearError(
                "INVALID_INPUT", "Argument Validation Error", "priority must not be greater than 4."
            )
        assignee = data.get("assigneeId")
        if assignee is not None and assignee not in self.users:
            raise LinearError("INVALID_INPUT", "Entity not found: User", "Could not find referenced User.")
        for label_id in data.get("labelIds") or []:
            if label_id not in self.labels:
                raise LinearError(
                    "INVALID_INPUT", "Entity not found: IssueLabel", "Could not find referenced label."
                )
        issue = self._new_issue(team, data)
        return {"success": True, "lastSyncId": float(len(self.issues)), "issue": _node(issue)}

    def _new_issue(self, team: JSON, data: JSON) -> JSON:
        number = team["next"]
        team["next"] += 1
        identifier = f"{team['key']}-{number}"
        issue: JSON = {
            "id": str(uuid.uuid4()),
            "identifier": identifier,
            "number": number,
            "title": data["title"],
            "description": data.get("description"),
            "priority": data.get("priority") or 0,
            "assigneeId": data.get("assigneeId"),
            "labelIds": list(data.get("labelIds") or []),
            "teamId": team["id"],
            "url": f"{WEB}/issue/{identifier.lower()}/{_slug(data['title'])}",
            "state": {"name": "Todo", "type": "unstarted"},
            "archivedAt": None,
            "order": next(self._clock),
        }
        self.issues.append(issue)
        return issue

    def _search_issues(self, variables: JSON) -> JSON:
        term = str(variables.get("term") or "").lower()
        first = int(variables.get("first") or 50)
        if not 1 <= first <= 250:
            raise LinearError(
                "INVALID_INPUT", "Argument Validation Error", "first must be between 1 and 250."
            )
        matches = [
            issue
            for issue in sorted(self.issues, key=lambda i: i["order"], reverse=True)
            if (variables.get("includeArchived") or issue["archivedAt"] is None)
            and any(term in str(issue[k] or "").lower() for k in ("title", "description", "identifier"))
        ]
        start = 0
        after = variables.get("after")
        if after:
            ids = [issue["id"] for issue in matches]
            if after not in ids:
                raise LinearError(
                    "INVALID_INPUT", "Argument Validation Error", "after is not a valid cursor."
                )
            start = ids.index(after) + 1
        page = matches[start : start + first]
        return {
            "nodes": [_node(issue) for issue in page],
            "pageInfo": {
                "hasNextPage": start + first < len(matches),
                "endCursor": page[-1]["id"] if page else None,
            },
            "totalCount": len(matches),
        }


def _node(issue: JSON) -> JSON:
    keys = ("id", "identifier", "title", "url", "state", "priority", "archivedAt")
    return {k: issue[k] for k in keys}


def _require_scope(token: LinearToken, *accepted: str) -> None:
    if token.scopes is not None and not set(accepted) & set(token.scopes) and "admin" not in token.scopes:
        raise LinearError("FORBIDDEN", f"Invalid scope: `{accepted[0]}` required")


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:60] or "issue"


def _rate_headers() -> dict[str, str]:
    return {
        "X-RateLimit-Requests-Limit": "5000",
        "X-RateLimit-Requests-Remaining": "4999",
        "X-RateLimit-Requests-Reset": str(int((time.time() + 3600) * 1000)),
    }
