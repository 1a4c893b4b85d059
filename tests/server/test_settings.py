"""Settings come from TENDRIL_* variables and .env, with per-connector overrides."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from server.settings import Settings


def test_defaults_are_the_embedded_setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = Settings.from_environment(env_file=tmp_path / "missing.env")
    assert settings.public_url == "http://127.0.0.1:8080"
    assert (settings.host, settings.port) == ("127.0.0.1", 8080)
    assert settings.resolved_database_url == f"sqlite+aiosqlite:///{tmp_path / '.tendril' / 'tendril.db'}"
    assert settings.connector("slack").api_base is None


def test_environment_and_dotenv_are_read_and_the_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        "TENDRIL_PORT=9000\nTENDRIL_PUBLIC_URL=https://hub.example.com/\n"
        "TENDRIL_SLACK_API_BASE=http://from-dotenv/api/\nTENDRIL_TELEGRAM_API_BASE=http://tg.local\n"
    )
    monkeypatch.setenv("TENDRIL_PORT", "9100")
    monkeypatch.setenv("TENDRIL_SLACK_API_BASE", "http://from-env/api/")
    monkeypatch.setenv("TENDRIL_NOTION_CLIENT_ID", "client-123")
    settings = Settings.from_environment(env_file=env_file)
    assert settings.port == 9100
    assert settings.public_url == "https://hub.example.com"
    assert settings.connector("slack").api_base == "http://from-env/api/"
    assert settings.connector("telegram").api_base == "http://tg.local"
    assert settings.connector("notion").client_id == "client-123"


def test_a_relative_public_url_is_refused() -> None:
    with pytest.raises(ValidationError, match="TENDRIL_PUBLIC_URL"):
        Settings(public_url="hub.example.com")


def test_the_public_url_follows_the_host_and_port_unless_it_is_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "missing.env"
    monkeypatch.setenv("TENDRIL_PORT", "18080")
    derived = Settings.from_environment(env_file=missing)
    assert (derived.public_url, derived.public_url_set) == ("http://127.0.0.1:18080", False)
    monkeypatch.setenv("TENDRIL_HOST", "0.0.0.0")
    assert Settings.from_environment(env_file=missing).public_url == "http://127.0.0.1:18080"
    served = derived.for_listener("::1", 9000)  # `serve --host ::1 --port 9000`
    assert (served.public_url, served.host, served.port) == ("http://[::1]:9000", "::1", 9000)
    monkeypatch.setenv("TENDRIL_PUBLIC_URL", "https://hub.example.com/")
    behind_a_proxy = Settings.from_environment(env_file=missing)
    assert (behind_a_proxy.public_url, behind_a_proxy.public_url_set) == ("https://hub.example.com", True)
    assert behind_a_proxy.for_listener("127.0.0.1", 9000).public_url == "https://hub.example.com"
    monkeypatch.setenv("TENDRIL_PUBLIC_URL", "")  # empty is unset
    assert Settings.from_environment(env_file=missing).public_url == "http://127.0.0.1:18080"
