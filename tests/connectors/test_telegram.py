"""Telegram actions over httpx against the fake Bot API on loopback."""

from __future__ import annotations

import pytest

from connectors import ActionRunner, load_catalog
from connectors.errors import Forbidden, InvalidCredentials, InvalidInput, NotFound
from tests.conftest import TELEGRAM_TOKEN, Fakes

pytestmark = pytest.mark.anyio
telegram = load_catalog()["telegram"]
CREDENTIALS = {"bot_token": TELEGRAM_TOKEN}


def runner(fakes: Fakes) -> ActionRunner:
    return ActionRunner(api_bases={"telegram": fakes.telegram_url}, timeout=5)


async def test_send_message_returns_the_levqor_shape(fakes: Fakes) -> None:
    result = await runner(fakes).run(
        telegram,
        telegram.actions["send_message"],
        {"chat_id": "123456789", "text": "hello"},
        credentials=CREDENTIALS,
    )
    assert result.model_dump() == {"message_id": 1, "chat_id": 123456789, "status": "sent"}
    assert fakes.telegram.messages[-1]["text"] == "hello"


async def test_get_updates_confirms_with_the_next_offset(fakes: Fakes) -> None:
    fakes.telegram.push_message(123456789, "first")
    fakes.telegram.push_message(123456789, "second")
    run = runner(fakes)
    page = await run.run(telegram, telegram.actions["get_updates"], {"limit": 1}, credentials=CREDENTIALS)
    data = page.model_dump()
    assert data["count"] == 1 and data["updates"][0]["message"]["text"] == "first"
    rest = await run.run(
        telegram, telegram.actions["get_updates"], {"offset": data["next_offset"]}, credentials=CREDENTIALS
    )
    assert [u["message"]["text"] for u in rest.model_dump()["updates"]] == ["second"]


async def test_bot_api_errors_map_to_actionable_kinds(fakes: Fakes) -> None:
    with pytest.raises(InvalidCredentials, match="Unauthorized"):
        await runner(fakes).verify(telegram, {"bot_token": "1:not-a-bot"})
    with pytest.raises(NotFound, match="chat not found"):
        await runner(fakes).run(
            telegram, telegram.actions["send_message"], {"chat_id": 5, "text": "x"}, credentials=CREDENTIALS
        )
    with pytest.raises(NotFound, match="replied not found"):
        await runner(fakes).run(
            telegram,
            telegram.actions["send_message"],
            {"chat_id": 123456789, "text": "x", "reply_to_message_id": 999},
            credentials=CREDENTIALS,
        )
    entities = {"ok": False, "error_code": 400, "description": "Bad Request: can't parse entities"}
    fakes.telegram.break_next("sendMessage", entities, status=400)
    with pytest.raises(InvalidInput, match="parse entities"):
        await runner(fakes).run(
            telegram,
            telegram.actions["send_message"],
            {"chat_id": 123456789, "text": "*x"},
            credentials=CREDENTIALS,
        )
    fakes.telegram.break_next(
        "sendMessage",
        {"ok": False, "error_code": 403, "description": "Forbidden: bot was blocked by the user"},
        status=403,
    )
    with pytest.raises(Forbidden, match="blocked"):
        await runner(fakes).run(
            telegram,
            telegram.actions["send_message"],
            {"chat_id": 123456789, "text": "x"},
            credentials=CREDENTIALS,
        )
