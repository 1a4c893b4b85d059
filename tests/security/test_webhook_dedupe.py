"""Deliveries are deduplicated on the provider's whole event id, however long."""

from __future__ import annotations

import pytest

from tests.conftest import Fakes, Tendril
from tests.support.hooks import hook_up
from tests.support.webhooks import WhatsAppSigner

pytestmark = pytest.mark.anyio


async def test_two_deliveries_whose_long_ids_share_a_200_character_prefix_are_two_jobs(
    hub_app: Tendril, fakes: Fakes
) -> None:
    hooked = await hook_up(hub_app, WhatsAppSigner(), fakes)
    prefix = "x" * 250
    async with hooked:
        for suffix in ("first", "second", "first"):  # the last is the provider retrying the first
            delivery = hooked.signer.deliver(prefix + suffix)
            assert (await hooked.post(delivery.body, delivery.headers)).status_code == 200
        jobs = await hooked.jobs()
    assert len(jobs) == 2
    ids = sorted(str(job["payload"]["entry"][0]["changes"][0]["value"]["messages"][0]["id"]) for job in jobs)  # type: ignore[index]
    assert ids == [f"wamid.{prefix}first", f"wamid.{prefix}second"]
