"""How pages are rendered: Jinja2 templates (autoescaped) beside this module, answered with the
headers every page carries."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.templating import Jinja2Templates

CHANNEL = "tendril-connections"  # BroadcastChannel name and localStorage key shared by the pages

templates = Jinja2Templates(directory=Path(__file__).with_name("templates"))

HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",  # forms keep their Origin header (the CSRF check reads it)
    "Content-Security-Policy": "default-src 'self'; script-src 'unsafe-inline' 'self'; "
    "style-src 'unsafe-inline'; frame-ancestors 'none'",
}


def page(request: Request, template: str, title: str, status: int = 200, **context: Any) -> HTMLResponse:
    return templates.TemplateResponse(
        request,
        template,
        {"title": title, "channel": CHANNEL, **context},
        status_code=status,
        headers=HEADERS,
    )


def message(
    request: Request, title: str, text: str, status: int = 200, *, error: bool = True
) -> HTMLResponse:
    return page(request, "message.html", title, status, message=text, error=error)
