"""Small plain pages people open in a browser. No build step, no external assets.

The connect page is reached through a URL an agent hands to its user. The URL carries no
credential: the person proves who they are with their Tendril API key, and the API refuses
anyone who is not the connection's owner (MCP spec: URLs must not be pre-authenticated).
"""

from __future__ import annotations

import html

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from server.errors import ApiError
from server.hub import parse_uuid
from server.web._http import guarded, hub_of

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>{title} - Tendril</title>
<style>body{{font:16px system-ui,sans-serif;max-width:34rem;margin:3rem auto;padding:0 1rem}}
label{{display:block;margin:.8rem 0 .2rem}}input{{width:100%;padding:.4rem}}
button{{margin-top:1rem;padding:.5rem 1rem}}
#result{{margin-top:1rem}}</style></head>
<body><h1>{title}</h1>{body}</body></html>"""

_FORM_SCRIPT = """<script>
const form = document.getElementById("connect");
form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const data = Object.fromEntries(new FormData(form));
  const apiKey = data.__api_key; delete data.__api_key;
  const out = document.getElementById("result");
  out.textContent = "Checking with the provider...";
  const response = await fetch(form.dataset.submit, {method: "POST",
    headers: {"Content-Type": "application/json", "X-Api-Key": apiKey},
    body: JSON.stringify(data)});
  const body = await response.json();
  out.textContent = response.ok ? "Connected. You can go back to your chat." : body.error;
  if (response.ok) { form.remove(); }
});
</script>"""


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(
        _PAGE.format(title=html.escape(title), body=body),
        status_code=status,
        headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer"},
    )


async def connect_page(request: Request) -> Response:
    return await guarded(request, lambda: _connect_page(request))


async def _connect_page(request: Request) -> Response:
    hub = hub_of(request)
    try:
        connection_id = parse_uuid(request.path_params["id"], "connection id")
    except ApiError:
        return _page("Unknown link", "<p>This connect link is not valid.</p>", 404)
    slug = await hub.store.connector_slug_of(connection_id)
    connector = hub.catalog.get(slug) if slug else None
    if connector is None:
        return _page("Unknown link", "<p>This connect link is not valid or has been revoked.</p>", 404)
    spec = connector.spec
    if await hub.store.connection_is_active(connection_id):
        return _page(
            f"{spec.name} is connected", "<p>This connection is already active. You can close this tab.</p>"
        )
    fields = "".join(
        f'<label for="{html.escape(f.key)}">{html.escape(f.label)}</label>'
        f'<input id="{html.escape(f.key)}" name="{html.escape(f.key)}" '
        f'type="{"password" if f.secret else "text"}" autocomplete="off" '
        f'placeholder="{html.escape(f.placeholder or "")}" {"required" if f.required else ""}>'
        for f in spec.credential_fields
    )
    submit_url = f"/api/v1/connections/{connection_id}/credentials"
    body = (
        f"<p>Connect <b>{html.escape(spec.name)}</b> so your agent can use it. "
        "The credential goes to Tendril only, never into the chat.</p>"
        f'<form id="connect" data-submit="{html.escape(submit_url)}">'
        '<label for="__api_key">Your Tendril API key</label>'
        '<input id="__api_key" name="__api_key" type="password" autocomplete="off" required>'
        f"{fields}<button type=submit>Connect</button></form><p id=result></p>{_FORM_SCRIPT}"
    )
    return _page(f"Connect {spec.name}", body)


def page_routes() -> list[BaseRoute]:
    return [Route("/connect/{id}", connect_page, methods=["GET"])]
