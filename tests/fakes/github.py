"""In-memory fake of the GitHub REST API (issues and comments), served over loopback.

It answers like api.github.com: `{"message", "documentation_url"}` error bodies, 401 for bad
credentials, 404 for repositories the token cannot see, 422 `Validation Failed` with an
`errors` list, X-OAuth-Scopes / X-Accepted-OAuth-Scopes on classic tokens, and rate limits as
403 with `x-ratelimit-remaining: 0` (primary) or 403 + `retry-after` (secondary).
Not emulated: search, reactions, markdown rendering, conditional requests.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.loopback import request_params

logger = logging.getLogger(__name__)

JSON = dict[str, Any]
DOCS = "https://docs.github.com/rest"
WEB = "https://github.com"
Operation = Literal["get_user", "create_issue", "list_issues", "create_comment", "create_hook", "delete_hook"]


@dataclass
class GitHubToken:
    """A token as GitHub knows it: classic tokens have `scopes`, fine-grained ones `permissions`."""

    login: str = "octocat"
    user_id: int = 583231
    scopes: list[str] | None = field(default_factory=lambda: ["repo"])
    permissions: dict[str, str] | None = None  # fine-grained, e.g. {"issues": "write"}


@dataclass
class _Fault:
    status: int
    body: JSON
    headers: dict[str, str] = field(default_factory=dict[str, str])


class GitHubError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None, **extra: Any):
        super().__init__(message)
        self.status = status
        self.body: JSON = {"message": message, "documentation_url": DOCS, "status": str(status), **extra}
        self.headers = headers or {}


class FakeGitHub:
    """Repositories with issues and comments, plus a Starlette app serving the REST paths."""

    def __init__(self) -> None:
        self.tokens: dict[str, GitHubToken] = {}
        self.repos: dict[tuple[str, str], JSON] = {}
        self.comments: list[JSON] = []
        self.calls: list[tuple[Operation, JSON]] = []
        self.headers_seen: list[dict[str, str]] = []
        self._faults: dict[Operation, deque[_Fault]] = {}
        self._ids = itertools.count(1_000_001)
        self._lock = threading.Lock()
        self.add_repo("octo-org", "hello-world", collaborators=["octocat", "hubot"])

    # --- test controls -------------------------------------------------------

    def add_token(self, token: str, **kwargs: Any) -> GitHubToken:
        info = GitHubToken(**kwargs)
        with self._lock:
            self.tokens[token] = info
        return info

    def add_repo(self, owner: str, name: str, *, collaborators: list[str] | None = None) -> JSON:
        repo: JSON = {"issues": [], "collaborators": set(collaborators or []), "next_number": 1, "hooks": []}
        with self._lock:
            self.repos[(owner.lower(), name.lower())] = repo
        return repo

    def hooks(self, owner: str = "octo-org", name: str = "hello-world") -> list[JSON]:
        """Webhooks created on a repository, secrets included (GitHub itself never shows them)."""
        return list(self.repos[(owner.lower(), name.lower())]["hooks"])

    def add_issue(
        self, owner: str, name: str, title: str, *, state: str = "open", pull_request: bool = False
    ) -> JSON:
        """Seed an issue (or, with `pull_request=True`, a PR the issues endpoint also lists)."""
        with self._lock:
            issue = self._new_issue(owner, name, {"title": title}, "octocat")
            issue["state"] = state
            if pull_request:
                issue["pull_request"] = {"url": issue["url"].replace("/issues/", "/pulls/")}
        return issue

    def issues(self, owner: str = "octo-org", name: str = "hello-world") -> list[JSON]:
        return list(self.repos[(owner.lower(), name.lower())]["issues"])

    def rate_limit_next(
        self,
        operation: Operation,
        *,
        kind: Literal["primary", "secondary"] = "primary",
        wait: int = 30,
        status: int = 403,
        times: int = 1,
    ) -> None:
        """Primary: remaining 0 and a reset `wait` seconds ahead. Secondary: `retry-after: wait`."""
        if kind == "primary":
            headers = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(time.time()) + wait)}
            message = "API rate limit exceeded for user ID 583231."
        else:
            headers = {"retry-after": str(wait)}
            message = (
                "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."
            )
        body = {"message": message, "documentation_url": DOCS}
        self._queue(operation, _Fault(status, body, headers), times)

    def fail_next(self, operation: Operation, status: int = 502, times: int = 1) -> None:
        self._queue(operation, _Fault(status, {"message": "Server Error"}), times)

    def break_next(self, operation: Operation, body: JSON, status: int = 200, times: int = 1) -> None:
        self._queue(operation, _Fault(status, body), times)

    def _queue(self, operation: Operation, fault: _Fault, times: int) -> None:
        with self._lock:
            self._faults.setdefault(operation, deque()).extend([fault] * times)

    # --- HTTP ----------------------------------------------------------------

    @cached_property
    def app(self) -> Starlette:
        """The ASGI app; serve it with `run_asgi_on_loopback`."""

        def route(path: str, operation: Operation, method: str) -> Route:
            async def endpoint(request: Request) -> Response:
                return await self._dispatch(request, operation)

            handler: Callable[[Request], Awaitable[Response]] = endpoint
            return Route(path, handler, methods=[method])

        return Starlette(
            routes=[
                route("/user", "get_user", "GET"),
                route("/repos/{owner}/{repo}/issues", "list_issues", "GET"),
                route("/repos/{owner}/{repo}/issues", "create_issue", "POST"),
                route("/repos/{owner}/{repo}/issues/{number:int}/comments", "create_comment", "POST"),
                route("/repos/{owner}/{repo}/hooks", "create_hook", "POST"),
                route("/repos/{owner}/{repo}/hooks/{hook_id:int}", "delete_hook", "DELETE"),
            ]
        )

    async def _dispatch(self, request: Request, operation: Operation) -> Response:
        params = await request_params(request)
        path = dict(request.path_params)
        with self._lock:
            self.calls.append((operation, params))
            self.headers_seen.append(dict(request.headers))
            queued = self._faults.get(operation)
            fault = queued.popleft() if queued else None
            if fault is not None:
                return JSONResponse(fault.body, status_code=fault.status, headers=fault.headers)
            headers = _rate_headers()
            try:
                token = self._authenticate(request.headers.get("authorization"))
                if token.scopes is not None:
                    headers["X-OAuth-Scopes"] = ", ".join(token.scopes)
                status, body = self._handle(operation, token, path, params, request)
            except GitHubError as exc:
                logger.debug("github %s -> %d", operation, exc.status)
                return JSONResponse(exc.body, status_code=exc.status, headers={**headers, **exc.headers})
            if operation == "list_issues":
                headers.update(self._link_header(request, params, len(body["all"])))
                body = body["page"]
        if status == 204:
            return Response(status_code=204, headers=headers)
        return JSONResponse(body, status_code=status, headers=headers)

    def _authenticate(self, header: str | None) -> GitHubToken:
        scheme, _, value = (header or "").partition(" ")
        if not value or scheme.lower() not in ("bearer", "token"):
            raise GitHubError(401, "Requires authentication")
        token = self.tokens.get(value.strip())
        if token is None:
            raise GitHubError(401, "Bad credentials")
        return token

    def _handle(
        self, operation: Operation, token: GitHubToken, path: JSON, params: JSON, request: Request
    ) -> tuple[int, Any]:
        if operation == "get_user":
            return 200, {"login": token.login, "id": token.user_id, "type": "User", "name": "The Octocat"}
        repo = self._repo(path["owner"], path["repo"])
        if operation == "list_issues":
            return 200, self._list_issues(repo, params)
        if operation == "create_hook":
            _require_hook_admin(token)
            return 201, self._create_hook(path, repo, params)
        if operation == "delete_hook":
            _require_hook_admin(token)
            kept = [hook for hook in repo["hooks"] if hook["id"] != path["hook_id"]]
            if len(kept) == len(repo["hooks"]):
                raise GitHubError(404, "Not Found")
            repo["hooks"] = kept
            return 204, None
        _require_write(token)
        if operation == "create_issue":
            return 201, self._create_issue(path, repo, params, token)
        return 201, self._create_comment(path, repo, params, token)

    def _repo(self, owner: str, name: str) -> JSON:
        repo = self.repos.get((owner.lower(), name.lower()))
        if repo is None:
            raise GitHubError(404, "Not Found")
        return repo

    # --- operations (called with the lock held) ------------------------------

    def _create_hook(self, path: JSON, repo: JSON, params: JSON) -> JSON:
        config = params.get("config")
        if not isinstance(config, dict) or not isinstance(config.get("url"), str):
            raise _validation("missing_field", "url", resource="Hook")
        if any(hook["config"]["url"] == config["url"] for hook in repo["hooks"]):
            raise GitHubError(
                422,
                "Validation Failed",
                errors=[
                    {
                        "resource": "Hook",
                        "code": "custom",
                        "message": "Hook already exists on this repository",
                    }
                ],
            )
        hook_id = next(self._ids)
        base = f"https://api.github.com/repos/{path['owner']}/{path['repo']}/hooks/{hook_id}"
        hook = {
            "type": "Repository",
            "id": hook_id,
            "name": params.get("name", "web"),
            "active": params.get("active", True),
            "events": params.get("events") or ["push"],
            "config": dict(config),
            "url": base,
            "ping_url": f"{base}/pings",
            "deliveries_url": f"{base}/deliveries",
        }
        repo["hooks"].append(hook)
        shown = {**hook, "config": {k: ("********" if k == "secret" else v) for k, v in config.items()}}
        return shown

    def _create_issue(self, path: JSON, repo: JSON, params: JSON, token: GitHubToken) -> JSON:
        title = params.get("title")
        if not isinstance(title, str) or not title.strip():
            raise _validation("missing_field", "title")
        for login in params.get("assignees") or []:
            if login not in repo["collaborators"]:
                raise _validation("invalid", "assignees", value=login)
        return self._new_issue(path["owner"], path["repo"], params, token.login)

    def _new_issue(self, owner: str, name: str, params: JSON, author: str) -> JSON:
        repo = self.repos[(owner.lower(), name.lower())]
        number = repo["next_number"]
        repo["next_number"] += 1
        api = f"https://api.github.com/repos/{owner}/{name}/issues/{number}"
        issue: JSON = {
            "id": next(self._ids),
            "node_id": f"I_kwDO{number:08d}",
            "number": number,
            "title": params["title"],
            "body": params.get("body"),
            "state": "open",
            "url": api,
            "html_url": f"{WEB}/{owner}/{name}/issues/{number}",
            "user": {"login": author, "id": 583231, "type": "User"},
            "labels": [{"name": label} for label in params.get("labels") or []],
            "assignees": [{"login": login} for login in params.get("assignees") or []],
            "comments": 0,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        repo["issues"].append(issue)
        return issue

    def _list_issues(self, repo: JSON, params: JSON) -> JSON:
        state = str(params.get("state") or "open")
        if state not in ("open", "closed", "all"):
            raise _validation("invalid", "state", value=state)
        wanted = {label for label in str(params.get("labels") or "").split(",") if label}
        matching = [
            issue
            for issue in reversed(repo["issues"])  # sort=created, direction=desc by default
            if state in ("all", issue["state"]) and wanted <= {label["name"] for label in issue["labels"]}
        ]
        per_page = min(int(params.get("per_page") or 30), 100)
        page = max(int(params.get("page") or 1), 1)
        return {"all": matching, "page": matching[(page - 1) * per_page : page * per_page]}

    def _link_header(self, request: Request, params: JSON, total: int) -> dict[str, str]:
        per_page = min(int(params.get("per_page") or 30), 100)
        page = max(int(params.get("page") or 1), 1)
        last = max(1, -(-total // per_page))
        if page >= last:
            return {}
        base = str(request.url.replace(query=""))

        def link(n: int, rel: str) -> str:
            return f'<{base}?{urlencode({**params, "page": n})}>; rel="{rel}"'

        return {"Link": f"{link(page + 1, 'next')}, {link(last, 'last')}"}

    def _create_comment(self, path: JSON, repo: JSON, params: JSON, token: GitHubToken) -> JSON:
        issue = next((i for i in repo["issues"] if i["number"] == path["number"]), None)
        if issue is None:
            raise GitHubError(404, "Not Found")
        body = params.get("body")
        if not isinstance(body, str) or not body:
            raise _validation("missing_field", "body", resource="IssueComment")
        comment_id = next(self._ids)
        comment: JSON = {
            "id": comment_id,
            "body": body,
            "user": {"login": token.login, "id": token.user_id},
            "html_url": f"{issue['html_url']}#issuecomment-{comment_id}",
            "issue_url": issue["url"],
        }
        issue["comments"] += 1
        self.comments.append(comment)
        return comment


def _require(token: GitHubToken, permission: str, scopes: set[str], refusal: GitHubError) -> None:
    """A fine-grained token needs `permission`=write; a classic one any of `scopes`, else `refusal`."""
    if token.permissions is not None:
        if token.permissions.get(permission) != "write":
            raise GitHubError(
                403,
                "Resource not accessible by personal access token",
                {"X-Accepted-GitHub-Permissions": f"{permission}=write"},
            )
    elif token.scopes is not None and not scopes & set(token.scopes):
        raise refusal


def _require_hook_admin(token: GitHubToken) -> None:
    """Repository hooks need admin:repo_hook (classic) or Webhooks write (fine-grained); without
    the scope GitHub answers as if the repository had no hooks endpoint."""
    refusal = GitHubError(404, "Not Found", {"X-Accepted-OAuth-Scopes": "admin:repo_hook, write:repo_hook"})
    _require(token, "repository_hooks", {"admin:repo_hook", "write:repo_hook"}, refusal)


def _require_write(token: GitHubToken) -> None:
    """What GitHub answers a token that may read but not write issues."""
    refusal = GitHubError(403, "Resource not accessible by integration", {"X-Accepted-OAuth-Scopes": "repo"})
    _require(token, "issues", {"repo", "public_repo"}, refusal)


def _validation(code: str, field_name: str, *, resource: str = "Issue", **extra: Any) -> GitHubError:
    error = {"resource": resource, "code": code, "field": field_name, **extra}
    return GitHubError(422, "Validation Failed", errors=[error])


def _rate_headers() -> dict[str, str]:
    reset = str(int(time.time()) + 3600)
    return {
        "x-ratelimit-limit": "5000",
        "x-ratelimit-remaining": "4999",
        "x-ratelimit-reset": reset,
        "x-ratelimit-resource": "core",
    }
