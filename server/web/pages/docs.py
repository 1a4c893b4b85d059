"""GET /docs: the OpenAPI document as an interactive Swagger UI page, to browse the API and try it.

Tendril often runs without internet, so Swagger UI comes from the swagger-ui-py package's static
files, served here at /docs/assets, never from a CDN. The page's own script is a file too, so its
Content-Security-Policy can keep scripts to 'self'. No sign-in: the document is public, and "Try it
out" sends only the key the visitor types into "Authorize".
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.staticfiles import StaticFiles

from server.web.pages.render import HEADERS, templates

PATH = "/docs"
ASSETS = PATH + "/assets"
SCRIPT = PATH + "/docs.js"
_SCRIPT_FILE = Path(__file__).with_name("static") / "docs.js"

# Stricter than the other pages' policy: no inline script or style at all. Swagger UI's stylesheet
# draws some icons from data: URLs.
CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'"


async def docs_page(request: Request) -> Response:
    return templates.TemplateResponse(
        request,
        "docs.html",
        {"title": "API docs", "assets": ASSETS, "script": SCRIPT},
        headers={**HEADERS, "Content-Security-Policy": CSP},
    )


async def docs_script(request: Request) -> Response:
    return FileResponse(_SCRIPT_FILE, media_type="text/javascript", headers={"Cache-Control": "no-cache"})


# Only what the page loads: the package also ships editor bundles, source maps and an OAuth
# redirect page with an inline script, none of which Tendril means to serve.
_ASSET_NAMES = frozenset({"swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png"})
_assets = StaticFiles(packages=[("swagger_ui", "static")])


async def docs_asset(request: Request) -> Response:
    name = request.path_params["name"]
    if name not in _ASSET_NAMES:
        return Response("Not Found", status_code=404, media_type="text/plain")
    return await _assets.get_response(name, request.scope)


def docs_routes() -> list[BaseRoute]:
    return [
        Route(PATH, docs_page, methods=["GET"]),
        Route(SCRIPT, docs_script, methods=["GET"]),
        Route(ASSETS + "/{name}", docs_asset, methods=["GET"]),
    ]
