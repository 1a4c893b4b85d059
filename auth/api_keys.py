"""API keys for owners and agents: random, prefixed, shown once, stored only as a digest."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Literal, get_args

Permission = Literal["read", "write", "execute", "admin"]
PERMISSIONS: tuple[Permission, ...] = get_args(Permission)
# `admin` implies everything; the others are independent.
DEFAULT_PERMISSIONS: tuple[Permission, ...] = ("read", "write", "execute")

OWNER_KEY_PREFIX = "tdl_"
AGENT_KEY_PREFIX = "tdl_agent_"


@dataclass(frozen=True, slots=True)
class NewKey:
    """A key as created: `plaintext` is shown to the user once and never stored."""

    plaintext: str
    digest: str
    display_prefix: str


def new_key(prefix: str = OWNER_KEY_PREFIX) -> NewKey:
    plaintext = prefix + secrets.token_urlsafe(32)
    return NewKey(plaintext, digest(plaintext), plaintext[: len(prefix) + 4])


def digest(plaintext: str) -> str:
    # Keys carry 256 bits of entropy, so a fast hash is enough: there is nothing to brute-force.
    return hashlib.sha256(plaintext.encode()).hexdigest()


def looks_like_key(value: str) -> bool:
    return value.startswith(OWNER_KEY_PREFIX) and 16 <= len(value) <= 128


def grants(held: tuple[str, ...] | list[str], needed: Permission) -> bool:
    return "admin" in held or needed in held
