"""An HTTP client acting as the person's browser: a cookie jar, redirects followed across hosts."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import httpx

TENDRIL_ORIGIN = "http://127.0.0.1:8080"


def signin_token_of(page: str) -> str:
    found = re.search(r'name="signin_token" value="([^"]+)"', page)
    assert found, "no sign-in token on the page"
    return found.group(1)


class BrowserLike:
    """Talks to an in-process Tendril (ASGI transport) and to providers on loopback sockets."""

    def __init__(
        self, tendril_transport: httpx.AsyncBaseTransport | None, base_url: str = TENDRIL_ORIGIN
    ) -> None:
        # Links Tendril hands out name TENDRIL_ORIGIN; they are sent to `base_url` (a live server's socket).
        self.tendril = httpx.AsyncClient(base_url=base_url, transport=tendril_transport)
        self.outside = httpx.AsyncClient()
        self.visited: list[str] = []

    async def __aenter__(self) -> BrowserLike:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.tendril.aclose()
        await self.outside.aclose()

    async def sign_in(self, api_key: str, *, next_path: str | None = None) -> httpx.Response:
        """Open the sign-in form (it sets the pre-session cookie) and submit it, as a browser does."""
        query = f"?next={next_path}" if next_path else ""
        form = await self.tendril.get(f"/signin{query}")
        response = await self.tendril.post(
            f"/signin{query}", data={"api_key": api_key, "signin_token": signin_token_of(form.text)}
        )
        assert response.status_code == 303, response.text
        return response

    async def get(self, url: str) -> httpx.Response:
        self.visited.append(url)
        if url.startswith(("/", TENDRIL_ORIGIN)):
            parts = urlsplit(url)
            return await self.tendril.get(parts.path + (f"?{parts.query}" if parts.query else ""))
        return await self.outside.get(url)

    async def follow(self, url: str, *, hops: int = 10) -> httpx.Response:
        """GET and follow redirects wherever they lead, as a browser tab does."""
        response = await self.get(url)
        for _ in range(hops):
            if response.status_code not in (301, 302, 303, 307, 308):
                return response
            url = response.headers["location"]
            response = await self.get(url)
        raise AssertionError(f"too many redirects: {self.visited}")

    async def submit(self, path: str, data: dict[str, object]) -> httpx.Response:
        """POST a form to Tendril and follow its answer's redirects, as a browser does; the answer
        keeps the path it ended on in `.url`."""
        response = await self.tendril.post(path, data=data)
        if response.status_code in (302, 303):
            return await self.follow(response.headers["location"])
        return response

    async def stop_at_provider(self, url: str) -> str:
        """Follow Tendril's redirects up to the provider's authorize URL, and return it unvisited."""
        response = await self.get(url)
        while response.status_code in (302, 303) and response.headers["location"].startswith("/"):
            response = await self.get(response.headers["location"])
        assert response.status_code == 302, response.text
        return response.headers["location"]

    async def provider_redirect(self, authorize_url: str) -> str:
        """Let the provider answer the authorize request; returns where it sends the browser back."""
        response = await self.outside.get(authorize_url)
        assert response.status_code == 302, response.text
        return response.headers["location"]


def csrf_of(page: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match, "no CSRF token on the page"
    return match.group(1)
