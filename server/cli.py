"""`tendril` command line. Commands that print a new key print it as their last line."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio
import uvicorn
import yaml

from auth.crypto import CryptoError, generate_key
from server.app import build_app, build_core, build_mcp, openapi_document
from server.core import Core
from server.core.errors import DomainError, NotFound
from server.core.webhooks.endpoints import Registration
from server.keys import StartupRefused
from server.logs import configure_logging
from server.mcp.caller import fixed_agent_resolver
from server.settings import Settings
from server.web.reading import uuid_of
from server.web.serving import uvicorn_options

logger = logging.getLogger("tendril")


def _say(text: str = "") -> None:
    # Human-facing output goes to stdout; logs go to stderr.
    print(text, flush=True)


async def _with_core(settings: Settings, work: Callable[[Core], Awaitable[int]]) -> int:
    core = build_core(settings)
    try:
        await core.prepare()
        return await work(core)
    finally:
        await core.aclose()


# -- commands --------------------------------------------------------------------------------
async def _bootstrap_admin(core: Core) -> int:
    """First run on an empty database: an `admin` owner and a key shown once."""
    if await core.identity.has_owners():
        return 0
    owner = await core.identity.create_owner("admin")
    key = await core.identity.create_api_key(owner.id, name="bootstrap", permissions=["admin"])
    _say("Created owner 'admin'. Its API key is shown only this once, keep it:")
    _say(f"  {key.plaintext}")
    _say("Create an agent allowed to use Slack and Telegram with:")
    _say("  tendril agents create --owner admin --name my-agent --allow slack,telegram")
    _say(
        f"or: curl -X POST {core.links.url('/api/v1/agents')} -H 'Authorization: Bearer <key>' "
        '-H \'Content-Type: application/json\' -d \'{"name": "my-agent", "allowedConnectors": ["slack"]}\''
    )
    return 0


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    host = args.host or settings.host
    port = args.port if args.port is not None else settings.port
    asyncio.run(_with_core(settings, _bootstrap_admin))
    app = build_app(settings)
    _say(f"Tendril serving on http://{host}:{port} (MCP at {settings.public_url}/mcp)")
    uvicorn.run(app, host=host, port=port, lifespan="on", **uvicorn_options(settings))
    return 0


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
        logger.error("set TENDRIL_AGENT_KEY to the agent key this stdio server speaks for")
        return 2
    agent_key = settings.agent_key.get_secret_value()

    async def run(core: Core) -> int:
        if await core.identity.authenticate_agent(agent_key) is None:
            logger.error("TENDRIL_AGENT_KEY is not a valid agent key")
            return 2
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

    return asyncio.run(_with_core(settings, noop))


def cmd_owners_create(settings: Settings, args: argparse.Namespace) -> int:
    async def work(core: Core) -> int:
        owner = await core.identity.create_owner(args.name)
        key = await core.identity.create_api_key(owner.id, name="default", permissions=["admin"])
        _say(f"Created owner {owner.name} ({owner.id}) with an admin API key (shown once):")
        _say(key.plaintext)
        return 0

    return asyncio.run(_with_core(settings, work))


def cmd_keys_create(settings: Settings, args: argparse.Namespace) -> int:
    async def work(core: Core) -> int:
        owner = await core.identity.owner_named(args.owner)
        key = await core.identity.create_api_key(
            owner.id, name=args.name, permissions=args.permission or None
        )
        _say(
            f"Created API key '{key.record.name}' for {owner.name} "
            f"with {list(key.record.permissions)} (shown once):"
        )
        _say(key.plaintext)
        return 0

    return asyncio.run(_with_core(settings, work))


def cmd_agents_create(settings: Settings, args: argparse.Namespace) -> int:
    async def work(core: Core) -> int:
        owner = await core.identity.owner_named(args.owner)
        allowed = [slug.strip() for slug in (args.allow or "").split(",") if slug.strip()]
        created = await core.identity.create_agent(owner.id, name=args.name, allowed_connectors=allowed)
        _say(f"Created agent {created.record.name} ({created.record.id}) allowed {allowed}.")
        _say(f"MCP endpoint: {core.links.mcp} with header 'Authorization: Bearer <agent key>'.")
        _say("Agent key (shown once):")
        _say(created.plaintext_key)
        return 0

    return asyncio.run(_with_core(settings, work))


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

    return asyncio.run(_with_core(settings, work))


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

    return asyncio.run(_with_core(settings, work))


def cmd_gcs_grant(settings: Settings, args: argparse.Namespace) -> int:
    """Let an owner mount a bucket (or a folder of it) with the server's GCS credential."""

    async def work(core: Core) -> int:
        owner = await core.identity.owner_named(args.owner)
        root = await core.files.grants.grant(owner.id, args.url)
        _say(f"Granted {root.url} to {owner.name}.")
        return 0

    return asyncio.run(_with_core(settings, work))


def cmd_gcs_revoke(settings: Settings, args: argparse.Namespace) -> int:
    """Take a grant back: the owner's connections in that folder stop reading at once."""

    async def work(core: Core) -> int:
        owner = await core.identity.owner_named(args.owner)
        await core.files.grants.revoke(owner.id, args.url)
        _say(f"Revoked {args.url} from {owner.name}.")
        return 0

    return asyncio.run(_with_core(settings, work))


def cmd_gcs_grants(settings: Settings, args: argparse.Namespace) -> int:
    async def work(core: Core) -> int:
        owner = await core.identity.owner_named(args.owner)
        for url in await core.files.grants.granted(owner.id):
            _say(url)
        return 0

    return asyncio.run(_with_core(settings, work))


def cmd_crypto_rotate(settings: Settings, args: argparse.Namespace) -> int:
    async def work(core: Core) -> int:
        resealed, unchanged = await core.connections.reseal_all()
        objects_resealed, objects_unchanged = await core.credentials.reseal_all()
        _say(
            f"re-encrypted {resealed} connection credential(s) and {objects_resealed} credential "
            f"object(s) with key {core.connections.primary_key_id}; "
            f"{unchanged + objects_unchanged} already used it"
        )
        return 0

    return asyncio.run(_with_core(settings, work))


def cmd_crypto_generate_key(settings: Settings, args: argparse.Namespace) -> int:
    _say(generate_key())
    return 0


# -- parser ------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tendril", description="Tendril connector hub")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the REST API and the MCP server (Streamable HTTP at /mcp)")
    serve.add_argument("--host", help="interface to bind (default TENDRIL_HOST)")
    serve.add_argument("--port", type=int, help="port to bind (default TENDRIL_PORT)")
    serve.set_defaults(func=cmd_serve)

    sub.add_parser("mcp", help="run the MCP server on stdio for TENDRIL_AGENT_KEY").set_defaults(func=cmd_mcp)

    openapi = sub.add_parser("openapi", help="print the REST API's OpenAPI document")
    openapi.add_argument("--format", choices=["json", "yaml"], default="json")
    openapi.set_defaults(func=cmd_openapi)

    database = sub.add_parser("db", help="database maintenance").add_subparsers(
        dest="db_command", required=True
    )
    database.add_parser("upgrade", help="apply migrations").set_defaults(func=cmd_db_upgrade)

    owners = sub.add_parser("owners", help="manage owners").add_subparsers(
        dest="owners_command", required=True
    )
    owner_create = owners.add_parser("create", help="create an owner and print an admin API key")
    owner_create.add_argument("name")
    owner_create.set_defaults(func=cmd_owners_create)

    keys = sub.add_parser("keys", help="manage API keys").add_subparsers(dest="keys_command", required=True)
    key_create = keys.add_parser("create", help="create an API key and print it")
    key_create.add_argument("--owner", required=True)
    key_create.add_argument("--name", default="cli")
    key_create.add_argument(
        "--permission", action="append", choices=["read", "write", "execute", "admin"], help="repeatable"
    )
    key_create.set_defaults(func=cmd_keys_create)

    agents = sub.add_parser("agents", help="manage agents").add_subparsers(
        dest="agents_command", required=True
    )
    agent_create = agents.add_parser("create", help="create an agent and print its MCP key")
    agent_create.add_argument("--owner", required=True)
    agent_create.add_argument("--name", required=True)
    agent_create.add_argument(
        "--allow", default="", help="comma-separated connector slugs, e.g. slack,telegram"
    )
    agent_create.set_defaults(func=cmd_agents_create)

    webhooks = sub.add_parser("webhooks", help="provider webhooks").add_subparsers(
        dest="webhooks_command", required=True
    )
    hook_setup = webhooks.add_parser("setup", help="create a receiver endpoint for a provider's events")
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
    hook_setup.set_defaults(func=cmd_webhooks_setup)
    hook_delete = webhooks.add_parser(
        "delete", help="retire an endpoint (and the hook at the provider, where Tendril made it)"
    )
    hook_delete.add_argument("endpoint", help="the endpoint id")
    hook_delete.set_defaults(func=cmd_webhooks_delete)

    gcs = sub.add_parser("gcs", help="GCS buckets owners may mount").add_subparsers(
        dest="gcs_command", required=True
    )
    for verb, func, about in (
        ("grant", cmd_gcs_grant, "let an owner mount gs://bucket[/folder] with the server's GCS credential"),
        ("revoke", cmd_gcs_revoke, "take such a grant back"),
    ):
        command = gcs.add_parser(verb, help=about)
        command.add_argument("--owner", required=True)
        command.add_argument("url", help="gs://bucket or gs://bucket/folder")
        command.set_defaults(func=func)
    listing = gcs.add_parser("grants", help="what an owner may mount (setting and CLI grants)")
    listing.add_argument("--owner", required=True)
    listing.set_defaults(func=cmd_gcs_grants)

    crypto = sub.add_parser("crypto", help="encryption keys").add_subparsers(
        dest="crypto_command", required=True
    )
    crypto.add_parser("rotate", help="re-encrypt every credential with the first key").set_defaults(
        func=cmd_crypto_rotate
    )
    crypto.add_parser("generate-key", help="print a new base64 AES-256 key").set_defaults(
        func=cmd_crypto_generate_key
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.umask(0o077)  # whatever Tendril writes (database, keys, uploads) is this user's only
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_environment()
    except ValueError as exc:
        print(f"tendril: invalid settings: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    handler: Callable[[Settings, argparse.Namespace], Any] = args.func
    try:
        return int(handler(settings, args))
    except StartupRefused as exc:
        logger.error("refusing to start: %s", exc)
        return 2
    except CryptoError as exc:
        logger.error("encryption key problem: %s", exc)
        return 2
    except DomainError as exc:
        logger.error("%s", exc.message)
        return 1


if __name__ == "__main__":
    sys.exit(main())
