"""AES-256-GCM sealing: key ids, associated data, rotation, loud failures."""

from __future__ import annotations

import uuid

import pytest

from auth.credentials import CredentialVault
from auth.crypto import CryptoError, Keyring, generate_key


def test_sealed_value_opens_and_hides_the_plaintext() -> None:
    keyring = Keyring([generate_key()])
    sealed = keyring.seal(b"xoxb-secret-value", associated_data="record-1")
    assert b"xoxb" not in sealed.encode() and "secret" not in sealed
    assert sealed.startswith(f"v1:{keyring.primary_key_id}:")
    assert keyring.open(sealed, associated_data="record-1") == b"xoxb-secret-value"


def test_each_seal_uses_a_fresh_nonce() -> None:
    keyring = Keyring([generate_key()])
    assert keyring.seal(b"same", associated_data="r") != keyring.seal(b"same", associated_data="r")


def test_ciphertext_moved_to_another_record_does_not_open() -> None:
    vault = CredentialVault(Keyring([generate_key()]))
    first, second = uuid.uuid4(), uuid.uuid4()
    sealed = vault.seal(first, {"bot_token": "xoxb-1"})
    with pytest.raises(CryptoError, match="wrong key or record"):
        vault.open(second, sealed)


def test_tampered_ciphertext_is_refused() -> None:
    keyring = Keyring([generate_key()])
    sealed = keyring.seal(b"payload", associated_data="r")
    tampered = sealed[:-4] + ("AAAA" if not sealed.endswith("AAAA") else "BBBB")
    with pytest.raises(CryptoError):
        keyring.open(tampered, associated_data="r")


def test_unknown_key_id_names_the_missing_key() -> None:
    old = Keyring([generate_key()])
    sealed = old.seal(b"payload", associated_data="r")
    with pytest.raises(CryptoError, match=f"sealed with key {old.primary_key_id}"):
        Keyring([generate_key()]).open(sealed, associated_data="r")


def test_first_key_seals_and_every_key_opens_then_reseal_moves_to_the_first() -> None:
    old_key, new_key = generate_key(), generate_key()
    connection_id = uuid.uuid4()
    sealed_with_old = CredentialVault(Keyring([old_key])).seal(connection_id, {"token": "t-123456"})
    rotated = CredentialVault(Keyring([new_key, old_key]))
    assert rotated.open(connection_id, sealed_with_old) == {"token": "t-123456"}
    resealed = rotated.reseal(connection_id, sealed_with_old)
    assert resealed is not None and rotated.reseal(connection_id, resealed) is None
    assert CredentialVault(Keyring([new_key])).open(connection_id, resealed) == {"token": "t-123456"}


@pytest.mark.parametrize(
    ("setting", "message"),
    [("", "no master key"), ("not base64!", "not valid base64"), ("c2hvcnQ=", "32 bytes")],
)
def test_malformed_master_keys_are_refused(setting: str, message: str) -> None:
    with pytest.raises(CryptoError, match=message):
        Keyring.from_setting(setting)
