"""GET /: what this server is, where to sign in, the dashboard, the API docs, and the MCP URL to
paste into a host. Public (it shows nothing of anyone's), with the headers every page carries."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from server.web.pages.render import page
from server.web.reading import core_of

PATH = "/"


async def home(request: Request) -> Response:
    links = core_of(request).links
    return page(
        request,
        "home.html",
        "Tendril connector hub",
        mcp_url=links.mcp,
        openapi_url=links.url("/api/v1/openapi"),
        public_url=links.public_url,
    )
