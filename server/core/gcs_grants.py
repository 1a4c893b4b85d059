"""Which GCS folders an owner may mount with the server's own GCS credential.

The operator grants them (TENDRIL_GCS_GRANTS, or `tendril gcs grant`); an owner's keys never can.
A grant of `gs://bucket` covers the whole bucket, `gs://bucket/folder` that folder and below. The
default grants nothing. An owner who gives a connection a credential of their own needs no grant:
Google then decides what that credential may read.
"""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from connectors.gcs import GcsRoot
from server.core.errors import Invalid, NotFound
from storage.repositories import Store


def covers(grant: GcsRoot, root: GcsRoot) -> bool:
    if grant.bucket != root.bucket:
        return False
    return not grant.subroot or root.subroot == grant.subroot or root.subroot.startswith(f"{grant.subroot}/")


def _root(url: str) -> GcsRoot:
    try:
        return GcsRoot.parse(url)
    except ValueError as exc:
        raise Invalid(str(exc), field="url") from None


def parse_setting(value: str | None) -> dict[str, list[GcsRoot]]:
    """`owner=gs://bucket[/folder],...` -> folders by owner name; raises ValueError naming the entry."""
    granted: dict[str, list[GcsRoot]] = {}
    for entry in (value or "").split(","):
        if not entry.strip():
            continue
        owner, sep, url = entry.partition("=")
        if not sep or not owner.strip():
            raise ValueError(f"TENDRIL_GCS_GRANTS entry {entry.strip()!r} is not owner=gs://bucket[/folder]")
        try:
            granted.setdefault(owner.strip(), []).append(GcsRoot.parse(url.strip()))
        except ValueError as exc:
            raise ValueError(f"TENDRIL_GCS_GRANTS entry {entry.strip()!r}: {exc}") from None
    return granted


class GcsGrants:
    def __init__(self, store: Store, configured: dict[str, list[GcsRoot]]) -> None:
        self._store = store
        self._configured = configured

    async def grant(self, owner_id: UUID, url: str) -> GcsRoot:
        root = _root(url)
        await self._store.grant_gcs(owner_id, root.url)
        return root

    async def revoke(self, owner_id: UUID, url: str) -> None:
        if not await self._store.revoke_gcs(owner_id, _root(url).url):
            raise NotFound(f"no grant of {url} to that owner")

    async def granted(self, owner_id: UUID) -> list[str]:
        """What the owner may mount: the setting's grants and the CLI's."""
        owner = await self._store.owner_by_id(owner_id)
        configured = [root.url for root in self._configured.get(owner.name, [])] if owner else []
        stored = [url for _, url in await self._store.gcs_grants(owner_id)]
        return sorted(set(configured + stored))

    async def all(self) -> Sequence[tuple[UUID, str]]:
        return await self._store.gcs_grants()

    async def allows(self, owner_id: UUID, root: GcsRoot) -> bool:
        return any(covers(GcsRoot.parse(url), root) for url in await self.granted(owner_id))
