"""/dashboard/agents: the owner's agents. Create one with its allowed connectors, rename it or change
them, give it a new MCP key, delete it (after a confirmation page), and copy the MCP URL and a host
config for it. Each action needs the permission of the REST route doing the same thing
(server/web/api/agents.py). A new key is shown once, on the page that made it."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from pydantic import Field
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from auth import api_keys
from server.core.errors import Conflict, Invalid
from server.web.errors import status_of
from server.web.pages import once
from server.web.pages.forms import Form, read_form
from server.web.pages.host_configs import host_configs
from server.web.pages.render import page
from server.web.pages.session import check_csrf, signed_in
from server.web.reading import core_of, uuid_of
from storage.flows import WebSession
from storage.repositories import AgentRecord

PATH = "/dashboard/agents"


class AgentForm(Form):
    name: str = ""
    allowed: list[str] = Field(default_factory=list[str])  # one checkbox per connector


def agent_path(agent_id: UUID | str) -> str:
    return f"{PATH}/{agent_id}"


def _agent_id(request: Request) -> UUID:
    return uuid_of(request.path_params["agent_id"], "agent id")


def _connectors(request: Request, also: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """Everything an agent may be allowed: the catalog's connectors and the webhook-only providers
    (whose events become its jobs), with any slug it already holds."""
    core = core_of(request)
    names = {slug: connector.spec.name for slug, connector in core.catalog.items()}
    names |= {
        slug: f"{connector.spec.name} (events only)"
        for slug, connector in core.catalog.receivers.items()
        if slug not in names
    }
    names |= {slug: slug for slug in also if slug not in names}
    return sorted(names.items(), key=lambda item: item[1].lower())


def _list_page(
    request: Request,
    session: WebSession,
    agents: list[AgentRecord],
    *,
    form: AgentForm | None = None,
    error: str | None = None,
    status: int = 200,
) -> Response:
    core = core_of(request)
    return page(
        request,
        "agents.html",
        "Agents",
        status,
        path=PATH,
        agents=agents,
        connectors=_connectors(request),
        mcp_url=core.links.mcp,
        can_write=api_keys.grants(session.permissions, "write"),
        csrf=session.csrf_token,
        form=form or AgentForm(),
        error=error,
    )


def _detail_page(
    request: Request,
    session: WebSession,
    agent: AgentRecord,
    *,
    form: AgentForm | None = None,
    error: str | None = None,
    status: int = 200,
) -> Response:
    core = core_of(request)
    return page(
        request,
        "agent.html",
        f"Agent {agent.name}",
        status,
        path=PATH,
        agent=agent,
        connectors=_connectors(request, agent.allowed_connectors),
        mcp_url=core.links.mcp,
        configs=host_configs(core.links.mcp, None),
        can_write=api_keys.grants(session.permissions, "write"),
        csrf=session.csrf_token,
        form=form or AgentForm(name=agent.name, allowed=list(agent.allowed_connectors)),
        error=error,
    )


def _key_path(agent_id: UUID) -> str:
    return f"{agent_path(agent_id)}/key"


@signed_in("read")
async def new_key_page(request: Request, session: WebSession) -> Response:
    """An agent's new MCP key with ready host configs, shown once after it was made"""
    core = core_of(request)
    agent = await core.identity.agent(session.owner_id, _agent_id(request))
    key = once.take(request, session)
    if key is None:  # shown already, or never made here: the agent's page says how to get one
        return RedirectResponse(agent_path(agent.id), status_code=303)
    rotated = request.query_params.get("made") != "new"
    title = f"New key for agent {agent.name}" if rotated else f"Agent {agent.name} created"
    response = page(
        request,
        "agent_key.html",
        title,
        path=PATH,
        agent=agent,
        what="its new MCP key" if rotated else "its MCP key",
        key=key,
        mcp_url=core.links.mcp,
        configs=host_configs(core.links.mcp, key),
    )
    return once.shown_once(request, response)


@signed_in("read")
async def agents_page(request: Request, session: WebSession) -> Response:
    """The owner's agents, and a form to create one"""
    agents = await core_of(request).identity.list_agents(session.owner_id)
    return _list_page(request, session, agents)


@signed_in("write")
async def create_agent(request: Request, session: WebSession) -> Response:
    """Create an agent; the answer shows its MCP key, once"""
    core = core_of(request)
    form = await read_form(request, AgentForm, core.settings.max_body_bytes)
    check_csrf(request, session, form.csrf)
    try:
        created = await core.identity.create_agent(
            session.owner_id, name=form.name.strip(), allowed_connectors=form.allowed
        )
    except (Invalid, Conflict) as error:
        agents = await core.identity.list_agents(session.owner_id)
        return _list_page(request, session, agents, form=form, error=error.message, status=status_of(error))
    key_page = _key_path(created.record.id)
    return once.redirect_showing(request, session, key_page, created.plaintext_key, query="made=new")


@signed_in("read")
async def agent_page(request: Request, session: WebSession) -> Response:
    """One agent: its allowed connectors, its MCP URL and host configs"""
    agent = await core_of(request).identity.agent(session.owner_id, _agent_id(request))
    return _detail_page(request, session, agent)


@signed_in("write")
async def update_agent(request: Request, session: WebSession) -> Response:
    """Rename an agent or change its allowed connectors"""
    core = core_of(request)
    form = await read_form(request, AgentForm, core.settings.max_body_bytes)
    check_csrf(request, session, form.csrf)
    agent = await core.identity.agent(session.owner_id, _agent_id(request))
    try:
        await core.identity.update_agent(
            session.owner_id, agent.id, name=form.name.strip(), allowed_connectors=form.allowed
        )
    except (Invalid, Conflict) as error:
        return _detail_page(request, session, agent, form=form, error=error.message, status=status_of(error))
    return RedirectResponse(agent_path(agent.id), status_code=303)


@signed_in("write")
async def rotate_agent_key(request: Request, session: WebSession) -> Response:
    """Give an agent a new MCP key, shown once; the old key stops working at once"""
    core = core_of(request)
    form = await read_form(request, Form, core.settings.max_body_bytes)
    check_csrf(request, session, form.csrf)
    rotated = await core.identity.rotate_agent_key(session.owner_id, _agent_id(request))
    return once.redirect_showing(request, session, _key_path(rotated.record.id), rotated.plaintext_key)


@signed_in("write")
async def confirm_delete_agent(request: Request, session: WebSession) -> Response:
    """Ask before deleting an agent"""
    agent = await core_of(request).identity.agent(session.owner_id, _agent_id(request))
    context: dict[str, Any] = {"path": PATH, "agent": agent, "csrf": session.csrf_token}
    return page(request, "agent_delete.html", f"Delete agent {agent.name}?", **context)


@signed_in("write")
async def delete_agent(request: Request, session: WebSession) -> Response:
    """Delete an agent; its MCP key stops working at once"""
    core = core_of(request)
    form = await read_form(request, Form, core.settings.max_body_bytes)
    check_csrf(request, session, form.csrf)
    await core.identity.delete_agent(session.owner_id, _agent_id(request))
    return RedirectResponse(PATH, status_code=303)
