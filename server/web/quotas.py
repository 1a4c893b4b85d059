"""Rate limits at the HTTP edge: every API answer says where its caller's window stands
(X-RateLimit-Limit, -Remaining, and -Reset as Unix seconds), refusals included."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

from server.core.identity import OwnerPrincipal
from server.core.rate_limits import OverQuota, Quota
from server.web.reading import client_of, core_of, guarded


class Window:
    """The caller's window, as far as it is known: counted once per request, shown on the answer."""

    def __init__(self, request: Request) -> None:
        self._request = request
        self.quota: Quota | None = None

    async def count_key(self, principal: OwnerPrincipal) -> None:
        """Count a request made with a valid API key (raises OverQuota past its limit)."""
        await self._count(principal)

    async def count_address(self) -> None:
        """Count a request made without a valid key, by the caller's address."""
        await self._count(None)

    async def _count(self, principal: OwnerPrincipal | None) -> None:
        limits = core_of(self._request).rate_limits
        try:
            if principal is None:
                self.quota = await limits.anonymous_request(client_of(self._request))
            else:
                self.quota = await limits.api_request(principal.key_id, principal.rate_limit)
        except OverQuota as over:
            self.quota = over.quota
            raise

    def shown_on(self, response: Response) -> Response:
        if self.quota is not None:
            response.headers.update(
                {
                    "X-RateLimit-Limit": str(self.quota.limit),
                    "X-RateLimit-Remaining": str(self.quota.remaining),
                    "X-RateLimit-Reset": str(math.ceil(self.quota.reset_at)),
                }
            )
        return response


async def keyless(request: Request, work: Callable[[], Awaitable[Response]]) -> Response:
    """An API route that needs no key (the document, the API's own 404): counted by address."""
    window = Window(request)

    async def counted() -> Response:
        await window.count_address()
        return await work()

    return window.shown_on(await guarded(request, counted))
