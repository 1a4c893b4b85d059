"""/dashboard/workflows and /dashboard/executions: the signed-in owner's workflows, and their
executions (the same ones as GET /api/v1/executions), newest first, filterable by workflow and
status, a page at a time; one execution with its steps (status, timings, output, error); Cancel for
one that has not finished (the permission of the REST cancel, `execute`).

What an execution carries (its input, the steps' outputs and errors) came from the owner and from
providers: it is shown escaped (Jinja2's autoescape), as JSON cut at SHOWN_MAX characters, and
masked against the secrets the log lines are masked against (bearer headers, Tendril and Slack
keys, and every credential this process opened recently). The REST API has it whole.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from urllib.parse import urlencode
from uuid import UUID

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from auth import api_keys
from auth.redaction import secrets_to_redact
from server.core.workflows.executions import ExecutionView
from server.web.pages.forms import Form, read_form
from server.web.pages.render import page
from server.web.pages.session import check_csrf, signed_in
from server.web.reading import core_of, uuid_of
from storage.executions import ExecutionStatus
from storage.flows import WebSession

PATH = "/dashboard/executions"
WORKFLOWS_PATH = "/dashboard/workflows"
PAGE_SIZE = 50
WORKFLOWS_MAX = 500  # the workflows named on the pages (the service's largest page)
SHOWN_MAX = 4000  # characters of one value (input, output, error) shown on a page


class ExecutionFilters(BaseModel):
    workflow: str | None = None
    status: str | None = None
    cursor: str | None = None


def execution_path(execution_id: UUID | str) -> str:
    return f"{PATH}/{execution_id}"


def shown(value: Any) -> str:
    """A value as the page shows it: indented JSON, secrets masked, cut when long."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, indent=2, ensure_ascii=False, default=str)
    text = secrets_to_redact.redact(text)
    if len(text) > SHOWN_MAX:
        more = len(text) - SHOWN_MAX
        text = f"{text[:SHOWN_MAX]}\n... ({more} more characters: GET the execution from the API)"
    return text


def _seconds(started: datetime | None, finished: datetime | None) -> str:
    if started is None or finished is None:
        return ""
    return f"{(finished - started).total_seconds():.3f}"


async def _workflow_names(request: Request, owner_id: UUID) -> dict[UUID, str]:
    found = await core_of(request).workflows.list(owner_id, limit=WORKFLOWS_MAX)
    return {w.id: w.name for w in found.workflows}


@signed_in("read")
async def workflows_page(request: Request, session: WebSession) -> Response:
    """The owner's workflows (a browser page)
    Each with its steps and a link to its executions."""
    found = await core_of(request).workflows.list(session.owner_id, limit=WORKFLOWS_MAX)
    rows = [
        {
            "workflow": w,
            "steps": ", ".join(f"{s.get('name')} ({s.get('type')})" for s in w.definition.get("steps", [])),
            "executions": f"{PATH}?{urlencode({'workflow': str(w.id)})}",
        }
        for w in found.workflows
    ]
    return page(request, "workflows.html", "Workflows", rows=rows, more=found.next_cursor is not None)


@signed_in("read", query=ExecutionFilters)
async def executions_page(request: Request, session: WebSession) -> Response:
    """The owner's executions (a browser page)
    Newest first, filterable by workflow and status, a page at a time."""
    core = core_of(request)
    filters: ExecutionFilters = request.state.query
    workflow_id = uuid_of(filters.workflow, "workflow id") if filters.workflow else None
    found = await core.executions.list(
        session.owner_id,
        workflow_id=workflow_id,
        status=filters.status or None,
        cursor=filters.cursor or None,
        limit=PAGE_SIZE,
    )
    names = await _workflow_names(request, session.owner_id)
    chosen = {"workflow": filters.workflow or "", "status": filters.status or ""}
    kept = {k: v for k, v in chosen.items() if v}
    newest = f"{PATH}?{urlencode(kept)}" if kept else PATH
    older = f"{PATH}?{urlencode({**kept, 'cursor': found.next_cursor})}" if found.next_cursor else None
    rows = [
        {
            "execution": e,
            "workflow": names.get(e.workflow_id, str(e.workflow_id)),
            "seconds": _seconds(e.started_at, e.finished_at),
        }
        for e in found.executions
    ]
    return page(
        request,
        "executions.html",
        "Executions",
        path=PATH,
        rows=rows,
        workflows=names,
        statuses=ExecutionStatus.ALL,
        chosen=chosen,
        older=older,
        newest=newest,
        paged=bool(filters.cursor),
    )


def _execution_page(request: Request, session: WebSession, view: ExecutionView, workflow: str) -> Response:
    steps = [
        {
            "step": s,
            "seconds": _seconds(s.started_at, s.finished_at),
            "output": shown(s.output),
            "error": shown(s.error),
        }
        for s in view.steps or []
    ]
    return page(
        request,
        "execution.html",
        f"Execution of {workflow}",
        path=PATH,
        execution=view,
        workflow=workflow,
        workflow_executions=f"{PATH}?{urlencode({'workflow': str(view.workflow_id)})}",
        seconds=_seconds(view.started_at, view.finished_at),
        input=shown(view.input),
        output=shown(view.output),
        error=shown(view.error),
        steps=steps,
        can_cancel=view.status in ExecutionStatus.UNFINISHED
        and api_keys.grants(session.permissions, "execute"),
        csrf=session.csrf_token,
    )


def _execution_id(request: Request) -> UUID:
    return uuid_of(request.path_params["execution_id"], "execution id")


@signed_in("read")
async def execution_page(request: Request, session: WebSession) -> Response:
    """One execution (a browser page)
    Its status, input, output or error, and each step's status, timings, output and error."""
    core = core_of(request)
    view = await core.executions.get(session.owner_id, _execution_id(request))
    names = await _workflow_names(request, session.owner_id)
    return _execution_page(request, session, view, names.get(view.workflow_id, str(view.workflow_id)))


@signed_in("execute")
async def cancel_execution(request: Request, session: WebSession) -> Response:
    """Cancel an execution (a browser form)
    It runs no further step; a finished execution stays as it ended."""
    core = core_of(request)
    form = await read_form(request, Form, core.settings.max_body_bytes)
    check_csrf(request, session, form.csrf)
    view = await core.executions.cancel(session.owner_id, _execution_id(request))
    return RedirectResponse(execution_path(view.id), status_code=303)
