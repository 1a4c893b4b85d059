"""Where the master key comes from: the setting, or a key file generated on first run."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from auth.crypto import Keyring, generate_key
from server.settings import Settings

logger = logging.getLogger(__name__)

KEY_FILE_NAME = "master.key"


class StartupRefused(Exception):
    """Configuration that must not run (a production deployment without a master key)."""


@dataclass(frozen=True, slots=True)
class KeySource:
    keyring: Keyring
    generated_file: Path | None


def private_data_dir(settings: Settings) -> None:
    """The data directory (database, key file, uploads), open to this user only."""
    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(settings.data_dir, 0o700)


def load_keyring(settings: Settings) -> KeySource:
    if settings.master_key is not None and settings.master_key.get_secret_value().strip():
        return KeySource(Keyring.from_setting(settings.master_key.get_secret_value()), None)
    if settings.env == "production":
        raise StartupRefused(
            "TENDRIL_MASTER_KEY is not set. In production Tendril never generates a key: "
            "set one (e.g. from `tendril crypto generate-key`) and keep it safe."
        )
    path = settings.data_dir / KEY_FILE_NAME
    if path.exists():
        return KeySource(Keyring.from_setting(path.read_text(encoding="utf-8")), None)
    private_data_dir(settings)
    # O_EXCL: two processes starting together cannot both write a different key.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return KeySource(Keyring.from_setting(path.read_text(encoding="utf-8")), None)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(generate_key() + "\n")
    logger.warning(
        "No TENDRIL_MASTER_KEY set: generated one at %s (mode 0600). Back it up: without it, "
        "stored credentials cannot be decrypted.",
        path,
    )
    return KeySource(Keyring.from_setting(path.read_text(encoding="utf-8")), path)
