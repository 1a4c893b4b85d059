"""`tendril` command line. Commands that print a new key print it as their last line.

Only `serve` and `db upgrade` create a database (and a master key file, when none is set); every
other command acts on an existing one, and says where it looked when there is none. Failures are
plain sentences on stderr: exit status 1 when a request is refused, 2 for a setup problem.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import getpass
import json
import logging
import os
import re
import shlex
import shutil
import socket
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from importlib import metadata
from ipaddress import ip_address
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit
from uuid import UUID

import anyio
import uvicorn
import yaml
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from auth import api_keys
from auth.crypto import CryptoError, generate_key
from server.app import build_app, build_core, build_mcp, openapi_document
from server.core import Core
from server.core.errors import DomainError, NotFound, did_you_mean
from server.core.files import FILE_CONNECTORS
from server.core.webhooks.endpoints import Registration
from server.keys import KEY_FILE_NAME, StartupRefused
from server.logs import configure_logging
from server.mcp.caller import fixed_agent_resolver
from server.settings import Settings, listener_url
from server.web.reading import uuid_of
from server.web.serving import uvicorn_options
from storage.presence import schema_present
from storage.repositories import AgentRecord, ApiKeyRecord, Owner

logger = logging.getLogger("tendril")

DEFAULT_DATA_DIR = Path(".tendril")
DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8080


class Failed(Exception):
    """A command that cannot go on; `message` is said as it is, `status` is the exit status."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def _say(text: str = "") -> None:
    # Human-facing output goes to stdout; logs go to stderr.
    print(text, flush=True)


def _tell(text: str) -> None:
    """A warning or a note for the person at the terminal, on stderr (stdout stays parseable)."""
    print(text, file=sys.stderr, flush=True)


# -- how to run tendril again -----------------------------------------------------------------
def tendril_command() -> str:
    """This `tendril` as a person can type it here: the script beside the running interpreter
    (`.venv/bin/tendril` after `make run`), plain `tendril` when PATH finds that same script."""
    script = Path(sys.executable).parent / "tendril"
    if not script.is_file():
        return f"{shlex.quote(sys.executable)} -m server.cli"
    on_path = shutil.which("tendril")
    if on_path and Path(on_path).resolve() == script.resolve():
        return "tendril"
    try:
        return shlex.quote(str(script.absolute().relative_to(Path.cwd())))
    except ValueError:
        return shlex.quote(str(script.absolute()))


def command_hint(settings: Settings, *args: str) -> str:
    """A `tendril` command line that reaches this database and states this server's URLs when typed
    into another terminal in this folder: the TENDRIL_* settings that differ from the defaults go
    in front of it (a database URL with a password is left out; the caller says so)."""
    env: list[str] = []
    if settings.data_dir.absolute() != (Path.cwd() / DEFAULT_DATA_DIR).absolute():
        env.append(f"TENDRIL_DATA_DIR={shlex.quote(str(settings.data_dir.absolute()))}")
    if settings.database_url and make_url(settings.database_url).password is None:
        env.append(f"TENDRIL_DATABASE_URL={shlex.quote(settings.database_url)}")
    if settings.public_url_set:
        if settings.public_url != listener_url(DEFAULT_HOST, DEFAULT_PORT):
            env.append(f"TENDRIL_PUBLIC_URL={shlex.quote(settings.public_url)}")
    else:
        if settings.host != DEFAULT_HOST:
            env.append(f"TENDRIL_HOST={shlex.quote(settings.host)}")
        if settings.port != DEFAULT_PORT:
            env.append(f"TENDRIL_PORT={settings.port}")
    return " ".join([*env, tendril_command(), *(shlex.quote(a) for a in args)])


def _hidden_database_url(settings: Settings) -> bool:
    return bool(settings.database_url) and make_url(settings.database_url or "").password is not None


# -- the database must already be there -------------------------------------------------------------
def _shown_database(settings: Settings) -> str:
    return make_url(settings.resolved_database_url).render_as_string(hide_password=True)


async def _require_database(settings: Settings) -> None:
    """Refuse, creating nothing, when this command would otherwise start a new database or key."""
    url = settings.resolved_database_url
    where = (
        f"Looked for it with data dir {settings.data_dir.absolute()} and database "
        f"{_shown_database(settings)}, from the working directory {Path.cwd()}."
    )
    if not await schema_present(url):
        sqlite = make_url(url).get_backend_name() == "sqlite"
        what = (
            f"no Tendril database at {make_url(url).database}"
            if sqlite
            else f"the database {_shown_database(settings)} holds no Tendril tables"
        )
        raise Failed(
            f"{what}, and this command does not create one.\n{where}\n"
            "Run it from the folder holding the server's .tendril (where you ran `make run` or "
            "`tendril serve`), or point it at the server's data: TENDRIL_DATA_DIR=/path/to/.tendril, "
            f"or TENDRIL_DATABASE_URL for a PostgreSQL database. `{tendril_command()} serve` and "
            f"`{tendril_command()} db upgrade` create a new database.",
            2,
        )
    has_key = settings.master_key is not None and settings.master_key.get_secret_value().strip()
    key_file = settings.data_dir.absolute() / KEY_FILE_NAME
    if not has_key and settings.env != "production" and not key_file.exists():
        raise Failed(
            f"the database {_shown_database(settings)} is there, but not its master key: "
            f"TENDRIL_MASTER_KEY is not set and {key_file} does not exist, and this command does not "
            f"make a new key (it could not open the stored credentials).\n{where}\n"
            "Set TENDRIL_MASTER_KEY to the server's key, or TENDRIL_DATA_DIR to the folder holding "
            "its master.key.",
            2,
        )


async def _with_core(
    settings: Settings, work: Callable[[Core], Awaitable[int]], *, may_create: bool = False
) -> int:
    if not may_create:
        await _require_database(settings)
    core = build_core(settings)
    try:
        await core.prepare()
        return await work(core)
    finally:
        await core.aclose()


def _run(settings: Settings, work: Callable[[Core], Awaitable[int]]) -> int:
    return asyncio.run(_with_core(settings, work))


# -- naming things: owners, keys, agents, connectors, with suggestions ---------------------------
async def _owner(core: Core, name: str) -> Owner:
    try:
        return await core.identity.owner_named(name)
    except NotFound:
        names = [o.name for o in await core.identity.owners()]
        if not names:
            raise Failed(
                f"no owner named {name!r}: this database has no owners yet "
                f"(`{tendril_command()} owners create NAME` makes one)."
            ) from None
        raise Failed(
            f"no owner named {name!r}{did_you_mean(name, names)}; `{tendril_command()} owners list` "
            "shows them."
        ) from None


def _pick(kind: str, ref: str, candidates: Sequence[tuple[Any, UUID, Sequence[str]]]) -> Any:
    """The one candidate whose id, or one of whose names (a name, a key prefix), is `ref`."""
    found = [item for item, id_, names in candidates if ref in (str(id_), *names)]
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        raise Failed(f"several {kind}s match {ref!r}: name one by its id (from the list command).")
    every = [name for _, id_, names in candidates for name in (*names, str(id_))]
    raise Failed(f"no {kind} {ref!r}{did_you_mean(ref, every)}.")


async def _key(core: Core, owner: Owner, ref: str) -> ApiKeyRecord:
    live = [k for k in await core.identity.list_api_keys(owner.id) if k.revoked_at is None]
    return _pick("live API key", ref, [(k, k.id, (k.name, k.key_prefix)) for k in live])


async def _agent(core: Core, owner: Owner, ref: str) -> AgentRecord:
    agents = await core.identity.list_agents(owner.id)
    return _pick("agent", ref, [(a, a.id, (a.name,)) for a in agents])


def _permissions(asked: Sequence[str] | None) -> list[str] | None:
    if not asked:
        return None
    chosen = [p.strip() for item in asked for p in item.split(",") if p.strip()]
    for permission in chosen:
        if permission not in api_keys.PERMISSIONS:
            raise Failed(
                f"unknown permission {permission!r}{did_you_mean(permission, api_keys.PERMISSIONS)}; "
                f"choose from {', '.join(api_keys.PERMISSIONS)}."
            )
    return chosen


# -- printing lists -------------------------------------------------------------------------------
def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M") if moment else "-"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    if not rows:
        return
    widths = [max(len(headers[i]), *(len(r[i]) for r in rows)) for i in range(len(headers))]
    for row in (headers, *rows):
        _say("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def _listing(
    args: argparse.Namespace, headers: Sequence[str], rows: Sequence[dict[str, Any]], empty: str
) -> None:
    """`rows` as JSON with --json, else as a table (or `empty` on stderr when there are none)."""
    if args.json:
        _say(json.dumps(list(rows), indent=2, default=str))
        return
    if not rows:
        _tell(empty)
        return
    _table(headers, [[str(row[h]) if row[h] is not None else "-" for h in headers] for row in rows])


# -- serve ----------------------------------------------------------------------------------------
def _address(host: str, port: int) -> str:
    try:
        if ip_address(host).version == 6:
            return f"[{host}]:{port}"
    except ValueError:
        pass
    return f"{host}:{port}"


def _listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound before anything is said or created, so a busy port fails first."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise Failed(_bind_failure(host, port, exc), 1) from None
    sock.set_inheritable(True)
    return sock


def _bind_failure(host: str, port: int, exc: OSError) -> str:
    where = _address(host, port)
    other = port + 1 if 0 < port < 65535 else 18080
    elsewhere = f"TENDRIL_PORT={other} make run, or {tendril_command()} serve --port {other}"
    if exc.errno == errno.EADDRINUSE:
        return (
            f"serve failed: cannot listen on {where}, the address is already in use (another Tendril "
            f"or another program listens there). Stop that one, or pick another port: {elsewhere}."
        )
    if exc.errno == errno.EACCES:
        return (
            f"serve failed: permission denied to listen on {where} (ports below 1024 need privileges). "
            f"Pick a higher port: {elsewhere}."
        )
    if exc.errno == errno.EADDRNOTAVAIL or isinstance(exc, socket.gaierror):
        return (
            f"serve failed: this machine has no address {host!r} to listen on. Set TENDRIL_HOST (or "
            "--host) to one of its addresses: 127.0.0.1 for this machine only, 0.0.0.0 for every "
            "interface."
        )
    return f"serve failed: cannot listen on {where}: {exc.strerror or exc}."


def public_url_mismatch(settings: Settings, host: str, port: int) -> str | None:
    """A warning when a set TENDRIL_PUBLIC_URL names this machine at another port than the one it
    listens on (a URL on another host name may well be a proxy in front of it: not judged)."""
    if not settings.public_url_set:
        return None
    public = urlsplit(settings.public_url)
    public_port = public.port or (443 if public.scheme == "https" else 80)
    if public_port == port:
        return None
    name = public.hostname or ""
    try:
        local = ip_address(name).is_loopback or ip_address(name).is_unspecified
    except ValueError:
        local = name in ("localhost", socket.gethostname())
    if not (local or name == host):
        return None
    return (
        f"Warning: TENDRIL_PUBLIC_URL is {settings.public_url}, but this server listens on "
        f"{_address(host, port)}: the links it hands out (connect pages, credential URLs, the MCP URL) "
        f"point at port {public_port}, where it does not answer. Unset TENDRIL_PUBLIC_URL to have them "
        "follow the host and port, or set it to the URL clients reach this server at."
    )


async def _bootstrap_admin(core: Core) -> int:
    """First run on an empty database: an `admin` owner and a key shown once, with what to do next."""
    if await core.identity.has_owners():
        return 0
    owner = await core.identity.create_owner("admin")
    key = await core.identity.create_api_key(owner.id, name="bootstrap", permissions=["admin"])
    settings = core.settings
    body = json.dumps({"name": "my-agent", "allowedConnectors": ["slack", "telegram"]})
    _say("Created owner 'admin'. Its API key is shown only this once, keep it:")
    _say(f"  {key.plaintext}")
    _say(f"Create an agent allowed to use Slack and Telegram, in another terminal in {Path.cwd()}:")
    _say(
        "  "
        + command_hint(
            settings,
            "agents",
            "create",
            "--owner",
            "admin",
            "--name",
            "my-agent",
            "--allow",
            "slack,telegram",
        )
    )
    if _hidden_database_url(settings):
        _say("  (with TENDRIL_DATABASE_URL set as for this server)")
    _say("or over the API:")
    _say(
        f"  curl -X POST {core.links.url('/api/v1/agents')} -H 'Authorization: Bearer {key.plaintext}' "
        f"-H 'Content-Type: application/json' -d '{body}'"
    )
    return 0


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    host = args.host or settings.host
    sock = _listen(host, args.port if args.port is not None else settings.port)
    try:
        port = sock.getsockname()[1]  # the system's pick for port 0
        settings = settings.for_listener(host, port)
        warning = public_url_mismatch(settings, host, port)
        if warning:
            _tell(warning)
        asyncio.run(_with_core(settings, _bootstrap_admin, may_create=True))
        app = build_app(settings)
        _say(f"Tendril serving on http://{_address(host, port)} (MCP at {settings.public_url}/mcp)")
        _say(f"Start page: {settings.public_url}/ (sign in, dashboard, API docs, the MCP URL for hosts)")
        server = uvicorn.Server(
            uvicorn.Config(app, host=host, port=port, lifespan="on", **uvicorn_options(settings))
        )
        server.run(sockets=[sock])
        if not server.started:
            raise Failed("serve failed while starting: see the messages above.", 1)
        return 0
    finally:
        sock.close()


# -- other commands ---------------------------------------------------------------------------------
def cmd_openapi(settings: Settings, args: argparse.Namespace) -> int:
    """Print the API's OpenAPI document (what GET /api/v1/openapi serves), for code generators."""
    document = openapi_document(settings)
    if args.format == "yaml":
        print(yaml.safe_dump(document, sort_keys=False, allow_unicode=True), end="")
    else:
        print(json.dumps(document, indent=2, ensure_ascii=False))
    return 0


def cmd_mcp(settings: Settings, args: argparse.Namespace) -> int:
    if settings.agent_key is None:
        raise Failed("set TENDRIL_AGENT_KEY to the agent key this stdio server speaks for.", 2)
    agent_key = settings.agent_key.get_secret_value()

    async def run(core: Core) -> int:
        if await core.identity.authenticate_agent(agent_key) is None:
            raise Failed("TENDRIL_AGENT_KEY is not a valid agent key (deleted, or its key was rotated).", 2)
        from mcp.server.stdio import stdio_server

        server = build_mcp(core, fixed_agent_resolver(core.identity, agent_key)).server
        async with stdio_server() as (read_stream, write_stream):
            await server.run(read_stream, write_stream, server.create_initialization_options())
        return 0

    return anyio.run(_with_core, settings, run)


def cmd_db_upgrade(settings: Settings, args: argparse.Namespace) -> int:
    async def noop(core: Core) -> int:
        _say("database is up to date")
        return 0

    return asyncio.run(_with_core(settings, noop, may_create=True))


# owners
def cmd_owners_create(settings: Settings, args: argparse.Namespace) -> int:
    async def work(core: Core) -> int:
        owner = await core.identity.create_owner(args.name)
        key = await core.identity.create_api_key(owner.id, name="default", permissions=["admin"])
        _say(f"Created owner {owner.name} ({owner.id}) with an admin API key (shown once):")
        _say(key.plaintext)
        return 0

    return _run(settings, work)


def cmd_owners_list(settings: Settings, args: argparse.Namespace) -> int:
    async def work(core: Core) -> int:
        rows = []
        for owner in await core.identity.owners():
            rows.append(
                {
                    "name": owner.name,
                    "id": str(owner.id),
                    "created": _when(owner.created_at),
                    "keys": sum(k.revoked_at is None for k in await core.identity.list_api_keys(owner.id)),
                    "agents": len(await core.identity.list_agents(owner.id)),
                    "connections": len(await core.connections.list(owner.id)),
                }
            )
        _listing(args, ["name", "id", "created", "keys", "agents", "connections"], rows, "No owners yet.")
        return 0

    return _run(settings, work)


def _confirm(question: str, yes: bool) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise Failed(f"{question} Not asked without a terminal: add --yes to confirm.")
    if input(f"{question} [y/N] ").strip().lower() not in ("y", "yes"):
        raise Failed("Nothing deleted.")


def cmd_owners_delete(settings: Settings, args: argparse.Namespace) -> int:
    """Delete an owner: webhooks removed and connections revoked at the providers first, then the
    owner with their keys, agents, credentials and jobs."""

    async def work(core: Core) -> int:
        owner = await _owner(core, args.name)
        connections = await core.connections.list(owner.id)
        endpoints = await core.webhooks.list(owner.id)
        agents = await core.identity.list_agents(owner.id)
        keys = [k for k in await core.identity.list_api_keys(owner.id) if k.revoked_at is None]
        _confirm(
            f"Delete owner {owner.name!r} with {len(keys)} API key(s), {len(agents)} agent(s), "
            f"{len(connections)} connection(s) and {len(endpoints)} webhook endpoint(s)?",
            args.yes,
        )
        for endpoint in endpoints:
            try:
                _, removal = await core.webhooks.delete(owner.id, endpoint.id)
            except DomainError as refused:
                _tell(f"Webhook endpoint {endpoint.id} ({endpoint.provider}): {refused.message}")
            else:
                _tell(f"Webhook endpoint {endpoint.id} ({endpoint.provider}) deleted: {removal.how}")
        for connection in connections:
            if connection.connector_slug in FILE_CONNECTORS:  # revoked, and the uploaded content deleted
                await core.files.delete(owner.id, f"conn_{connection.id.hex}")
            else:
                await core.connections.revoke(owner.id, connection.id)
            _tell(f"Connection {connection.id} ({connection.connector_slug}) revoked.")
        await core.identity.delete_owner(owner.id)
        _say(f"Deleted owner {owner.name} ({owner.id}).")
        return 0

    return _run(settings, work)


# keys
def cmd_keys_create(settings: Settings, args: argparse.Namespace) -> int:
    permissions = _permissions(args.permission)

    async def work(core: Core) -> int:
        owner = await _owner(core, args.owner)
        key = await core.identity.create_api_key(owner.id, name=args.name, permissions=permissions)
        _say(
            f"Created API key '{key.record.name}' ({key.record.id}) for {owner.name} "
            f"with {list(key.record.permissions)} (shown once):"
        )
        _say(key.plaintext)
        return 0

    return _run(settings, work)


def cmd_keys_list(settings: Settings, args: argparse.Namespace) -> int:
    async def work(core: Core) -> int:
        owner = await _owner(core, args.owner)
        rows = [
            {
                "id": str(k.id),
                "name": k.name,
                "prefix": k.key_prefix,
                "permissions": ",".join(k.permissions),
                "rate limit": k.rate_limit,
                "created": _when(k.created_at),
                "last used": _when(k.last_used_at),
                "revoked": _when(k.revoked_at) if k.revoked_at else None,
            }
            for k in await core.identity.list_api_keys(owner.id)
            if args.all or k.revoked_at is None
        ]
        headers = ["id", "name", "prefix", "permissions", "rate limit", "created", "last used"]
        _listing(args, [*headers, "revoked"] if args.all else headers, rows, f"{owner.name} has no API keys.")
        return 0

    return _run(settings, work)


def cmd_keys_rotate(settings: Settings, args: argparse.Namespace) -> int:
    async def work(core: Core) -> int:
        owner = await _owner(core, args.owner)
        key = await _key(core, owner, args.key)
        rotated = await core.identity.rotate_api_key(owner.id, key.id)
        _say(
            f"Rotated API key '{key.name}' ({key.id}) of {owner.name}: the old key and the browser "
            "sessions signed in with it stop working now. New key (shown once):"
        )
        _say(rotated.plaintext)
        return 0

    return _run(settings, work)


def cmd_keys_delete(settings: Settings, args: argparse.Namespace) -> int:
    async def work(core: Core) -> int:
        owner = await _owner(core, args.owner)
        key = await _key(core, owner, args.key)
        await core.identity.revoke_api_key(owner.id, key.id)
        _say(f"Revoked API key '{key.name}' ({key.id}) of {owner.name}.")
        return 0

    return _run(settings, work)


# agents
def cmd_agents_create(settings: Settings, args: argparse.Namespace) -> int:
    async def work(core: Core) -> int:
        owner = await _owner(core, args.owner)
        allowed = [slug.strip() for slug in (args.allow or "").split(",") if slug.strip()]
        created = await core.identity.create_agent(owner.id, name=args.name, allowed_connectors=allowed)
        _say(f"Created agent {created.record.name} ({created.record.id}) allowed {allowed}.")
        if not allowed:
            _tell(
                f"Warning: agent {created.record.name!r} is allowed no connectors, so it will see no "
                "tools. Create agents with --allow slack,telegram (connector slugs), or change its "
                f"allowedConnectors with PATCH /api/v1/agents/{created.record.id}."
            )
        _say(f"MCP endpoint: {core.links.mcp} with header 'Authorization: Bearer <agent key>'.")
        _say("Agent key (shown once):")
        _say(created.plaintext_key)
        return 0

    return _run(settings, work)


def cmd_agents_list(settings: Settings, args: argparse.Namespace) -> int:
    async def work(core: Core) -> int:
        owner = await _owner(core, args.owner)
        rows = [
            {
                "id": str(a.id),
                "name": a.name,
                "allowed": ",".join(a.allowed_connectors) or "(none)",
                "key prefix": a.key_prefix,
                "tool calls/min": a.tool_rate_limit,
                "created": _when(a.created_at),
            }
            for a in await core.identity.list_agents(owner.id)
        ]
        headers = ["id", "name", "allowed", "key prefix", "tool calls/min", "created"]
        _listing(args, headers, rows, f"{owner.name} has no agents.")
        return 0

    return _run(settings, work)


def cmd_agents_rotate_key(settings: Settings, args: argparse.Namespace) -> int:
    async def work(core: Core) -> int:
        owner = await _owner(core, args.owner)
        agent = await _agent(core, owner, args.agent)
        rotated = await core.identity.rotate_agent_key(owner.id, agent.id)
        _say(
            f"Rotated the MCP key of agent {agent.name} ({agent.id}): the old key stops working now; "
            "the agent keeps its connectors and jobs. New agent key (shown once):"
        )
        _say(rotated.plaintext_key)
        return 0

    return _run(settings, work)


def cmd_agents_delete(settings: Settings, args: argparse.Namespace) -> int:
    async def work(core: Core) -> int:
        owner = await _owner(core, args.owner)
        agent = await _agent(core, owner, args.agent)
        await core.identity.delete_agent(owner.id, agent.id)
        _say(f"Deleted agent {agent.name} ({agent.id}) of {owner.name}; its key stops working now.")
        return 0

    return _run(settings, work)


# connections
def cmd_connections_list(settings: Settings, args: argparse.Namespace) -> int:
    async def work(core: Core) -> int:
        owners = [await _owner(core, args.owner)] if args.owner else await core.identity.owners()
        rows = [
            {
                "id": str(c.id),
                "owner": owner.name,
                "connector": c.connector_slug,
                "label": c.label,
                "status": c.status.value,
                "created": _when(c.created_at),
            }
            for owner in owners
            for c in await core.connections.list(owner.id)
        ]
        headers = ["id", "owner", "connector", "label", "status", "created"]
        _listing(
            args, headers, rows, "No connections." if not args.owner else f"{args.owner} has no connections."
        )
        return 0

    return _run(settings, work)


# webhooks
def cmd_webhooks_setup(settings: Settings, args: argparse.Namespace) -> int:
    """Create a webhook endpoint on a connection; Telegram's is registered with setWebhook."""
    secrets: dict[str, str] = {}
    for item in args.secret:
        name, has_value, value = item.partition("=")
        # A secret left without a value is asked for, so it stays out of shell history.
        secrets[name] = value if has_value else getpass.getpass(f"{args.provider} {name}: ")

    async def work(core: Core) -> int:
        connection = await core.connections.find_any(uuid_of(args.connection, "connection id"))
        if connection is None:
            raise NotFound("connection not found")
        endpoint, setup = await core.webhooks.setup(
            connection.owner_id,
            connection.id,
            provider=args.provider,
            secrets=secrets,
            agents=[uuid_of(a, "agent id") for a in args.agent] if args.agent else None,
            register=Registration(args.repository, tuple(args.event or ())) if args.register else None,
        )
        _say(f"Created {args.provider} webhook endpoint {endpoint.id}.")
        _say(f"Receiver URL: {core.webhooks.url_for(endpoint)}")
        _say(setup.how)
        return 0

    return _run(settings, work)


def cmd_webhooks_delete(settings: Settings, args: argparse.Namespace) -> int:
    """Retire an endpoint, removing the hook at the provider where Tendril registered it."""

    async def work(core: Core) -> int:
        found = await core.webhooks.find_any(uuid_of(args.endpoint, "endpoint id"))
        if found is None:
            raise NotFound("webhook endpoint not found")
        endpoint, removal = await core.webhooks.delete(found.owner_id, found.id)
        _say(f"Deleted {endpoint.provider} webhook endpoint {endpoint.id}.")
        _say(removal.how)
        return 0

    return _run(settings, work)


# gcs
def cmd_gcs_grant(settings: Settings, args: argparse.Namespace) -> int:
    """Let an owner mount a bucket (or a folder of it) with the server's GCS credential."""

    async def work(core: Core) -> int:
        owner = await _owner(core, args.owner)
        root = await core.files.grants.grant(owner.id, args.url)
        _say(f"Granted {root.url} to {owner.name}.")
        return 0

    return _run(settings, work)


def cmd_gcs_revoke(settings: Settings, args: argparse.Namespace) -> int:
    """Take a grant back: the owner's connections in that folder stop reading at once."""

    async def work(core: Core) -> int:
        owner = await _owner(core, args.owner)
        await core.files.grants.revoke(owner.id, args.url)
        _say(f"Revoked {args.url} from {owner.name}.")
        return 0

    return _run(settings, work)


def cmd_gcs_grants(settings: Settings, args: argparse.Namespace) -> int:
    async def work(core: Core) -> int:
        owner = await _owner(core, args.owner)
        for url in await core.files.grants.granted(owner.id):
            _say(url)
        return 0

    return _run(settings, work)


# crypto
@dataclass
class _Progress:
    """`what: done/total` on stderr as it goes: one line rewritten on a terminal, else about ten lines."""

    what: str
    shown: int = 0

    def __call__(self, done: int, total: int) -> None:
        if sys.stderr.isatty():
            print(
                f"\r{self.what}: {done}/{total}",
                end="\n" if done == total else "",
                file=sys.stderr,
                flush=True,
            )
        elif done == total or done - self.shown >= max(1, total // 10):
            self.shown = done
            _tell(f"{self.what}: {done}/{total}")


def cmd_crypto_rotate(settings: Settings, args: argparse.Namespace) -> int:
    async def work(core: Core) -> int:
        report = await core.keys_at_rest.reseal_all(_Progress)
        for line in report:
            _say(f"{line.what}: re-encrypted {line.resealed}, {line.unchanged} already used the key")
        _say(f"every sealed value now uses key {core.keys_at_rest.primary_key_id}")
        return 0

    return _run(settings, work)


def cmd_crypto_generate_key(settings: Settings, args: argparse.Namespace) -> int:
    _say(generate_key())
    return 0


# -- parser ------------------------------------------------------------------------------------
_INVALID_CHOICE = re.compile(r"invalid choice: '(?P<value>[^']*)' \(choose from (?P<choices>.*)\)")


class _Parser(argparse.ArgumentParser):
    """argparse, suggesting the nearest command when one is mistyped."""

    def error(self, message: str) -> NoReturn:
        found = _INVALID_CHOICE.search(message)
        if found:
            choices = re.findall(r"'([^']*)'", found["choices"])
            message += did_you_mean(found["value"], choices)
        super().error(message)


def _version() -> str:
    try:
        return metadata.version("tendril")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def _group(sub: Any, name: str, about: str) -> Any:
    return sub.add_parser(name, help=about, description=about).add_subparsers(
        dest=f"{name}_command", required=True, metavar="COMMAND"
    )


def _command(
    group: Any,
    name: str,
    func: Callable[[Settings, argparse.Namespace], int],
    about: str,
    *,
    listing: bool = False,
) -> argparse.ArgumentParser:
    command: argparse.ArgumentParser = group.add_parser(name, help=about, description=about)
    command.set_defaults(func=func)
    if listing:
        command.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return command


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="tendril",
        description="Tendril connector hub. Commands other than serve, db upgrade, openapi and crypto "
        "generate-key act on an existing database (./.tendril, or TENDRIL_DATA_DIR / TENDRIL_DATABASE_URL).",
    )
    parser.add_argument("--version", action="version", version=f"tendril {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the REST API and the MCP server (Streamable HTTP at /mcp)")
    serve.add_argument("--host", help="interface to bind (default TENDRIL_HOST)")
    serve.add_argument("--port", type=int, help="port to bind (default TENDRIL_PORT; 0: any free port)")
    serve.set_defaults(func=cmd_serve)

    sub.add_parser("mcp", help="run the MCP server on stdio for TENDRIL_AGENT_KEY").set_defaults(func=cmd_mcp)

    openapi = sub.add_parser("openapi", help="print the REST API's OpenAPI document")
    openapi.add_argument("--format", choices=["json", "yaml"], default="json")
    openapi.set_defaults(func=cmd_openapi)

    database = _group(sub, "db", "database maintenance")
    _command(database, "upgrade", cmd_db_upgrade, "create the database, or apply new migrations to it")

    owners = _group(sub, "owners", "manage owners")
    made = _command(owners, "create", cmd_owners_create, "create an owner and print an admin API key")
    made.add_argument("name")
    _command(owners, "list", cmd_owners_list, "list owners", listing=True)
    gone = _command(
        owners,
        "delete",
        cmd_owners_delete,
        "delete an owner: their webhooks and connections are removed at the providers, then the owner "
        "with their keys, agents and credentials",
    )
    gone.add_argument("name")
    gone.add_argument("--yes", action="store_true", help="do not ask for confirmation")

    keys = _group(sub, "keys", "manage owners' API keys")
    made = _command(keys, "create", cmd_keys_create, "create an API key and print it")
    made.add_argument("--owner", required=True)
    made.add_argument("--name", default="cli")
    made.add_argument(
        "--permission",
        action="append",
        metavar="PERMISSION",
        help=f"one of {', '.join(api_keys.PERMISSIONS)} (repeatable; default all but admin)",
    )
    listed = _command(
        keys, "list", cmd_keys_list, "list an owner's API keys (never the keys themselves)", listing=True
    )
    listed.add_argument("--owner", required=True)
    listed.add_argument("--all", action="store_true", help="include revoked keys")
    for verb, func, about in (
        ("rotate", cmd_keys_rotate, "give a key a new secret (same id and permissions) and print it"),
        ("delete", cmd_keys_delete, "revoke a key: it stops working at once"),
    ):
        command = _command(keys, verb, func, about)
        command.add_argument("--owner", required=True)
        command.add_argument("key", help="the key's id, prefix (tdl_...) or name, as `keys list` shows")

    agents = _group(sub, "agents", "manage agents")
    made = _command(agents, "create", cmd_agents_create, "create an agent and print its MCP key")
    made.add_argument("--owner", required=True)
    made.add_argument("--name", required=True)
    made.add_argument("--allow", default="", help="comma-separated connector slugs, e.g. slack,telegram")
    listed = _command(agents, "list", cmd_agents_list, "list an owner's agents", listing=True)
    listed.add_argument("--owner", required=True)
    for verb, func, about in (
        (
            "rotate-key",
            cmd_agents_rotate_key,
            "give an agent a new MCP key (the old one stops working) and print it",
        ),
        ("delete", cmd_agents_delete, "delete an agent: its key stops working at once"),
    ):
        command = _command(agents, verb, func, about)
        command.add_argument("--owner", required=True)
        command.add_argument("agent", help="the agent's name or id")

    connections = _group(sub, "connections", "owners' connections")
    listed = _command(connections, "list", cmd_connections_list, "list live connections", listing=True)
    listed.add_argument("--owner", help="only this owner's (default: every owner's)")

    webhooks = _group(sub, "webhooks", "provider webhooks")
    hook_setup = _command(
        webhooks, "setup", cmd_webhooks_setup, "create a receiver endpoint for a provider's events"
    )
    hook_setup.add_argument(
        "provider", help="telegram, slack, discord, github, linear, stripe, twilio, whatsapp, gmail"
    )
    hook_setup.add_argument("--connection", required=True, help="the connection the events belong to")
    hook_setup.add_argument(
        "--secret",
        action="append",
        default=[],
        help="name=value (e.g. signing_secret=...); a bare name is asked for without echo",
    )
    hook_setup.add_argument("--agent", action="append", help="agent id to receive the jobs (repeatable)")
    hook_setup.add_argument(
        "--register",
        action="store_true",
        help="github, stripe: create the hook through the provider's API with the connection's credential",
    )
    hook_setup.add_argument("--repository", help="with --register on github: owner/name")
    hook_setup.add_argument("--event", action="append", help="with --register: an event to subscribe to")
    hook_delete = _command(
        webhooks,
        "delete",
        cmd_webhooks_delete,
        "retire an endpoint (and the hook at the provider, where Tendril made it)",
    )
    hook_delete.add_argument("endpoint", help="the endpoint id")

    gcs = _group(sub, "gcs", "GCS buckets owners may mount")
    for verb, func, about in (
        ("grant", cmd_gcs_grant, "let an owner mount gs://bucket[/folder] with the server's GCS credential"),
        ("revoke", cmd_gcs_revoke, "take such a grant back"),
    ):
        command = _command(gcs, verb, func, about)
        command.add_argument("--owner", required=True)
        command.add_argument("url", help="gs://bucket or gs://bucket/folder")
    listing = _command(gcs, "grants", cmd_gcs_grants, "what an owner may mount (setting and CLI grants)")
    listing.add_argument("--owner", required=True)

    crypto = _group(sub, "crypto", "encryption keys")
    _command(crypto, "rotate", cmd_crypto_rotate, "re-encrypt every credential with the first key")
    _command(crypto, "generate-key", cmd_crypto_generate_key, "print a new base64 AES-256 key")
    return parser


def _fail(message: str) -> None:
    print(f"tendril: {message}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    os.umask(0o077)  # whatever Tendril writes (database, keys, uploads) is this user's only
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_environment()
    except ValueError as exc:
        _fail(f"invalid settings: {exc}")
        return 2
    configure_logging(settings.log_level, settings.log_format)
    handler: Callable[[Settings, argparse.Namespace], Any] = args.func
    if handler not in (cmd_serve, cmd_db_upgrade):
        # Alembic's notes on every start ("Context impl SQLiteImpl.") are noise around a command's answer.
        logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        return int(handler(settings, args))
    except Failed as exc:
        _fail(exc.message)
        return exc.status
    except StartupRefused as exc:
        _fail(f"refusing to start: {exc}")
        return 2
    except CryptoError as exc:
        _fail(f"encryption key problem: {exc}")
        return 2
    except DomainError as exc:
        _fail(exc.message)
        return 1
    except (SQLAlchemyError, OSError) as exc:
        logger.debug("database or system error", exc_info=True)
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        _fail(f"cannot use the database {_shown_database(settings)}: {reason}")
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
