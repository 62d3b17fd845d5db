"""Encryption at rest of private keys."""

from types import SimpleNamespace

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

from provisioning.crypto import DecryptionError, decrypt_private_key, encrypt_private_key
from provisioning.drivers.acme.client import generate_private_key_pem


@pytest.fixture(scope="module")
def key_pem() -> str:
    return generate_private_key_pem()


def test_round_trip_with_configured_key(key_pem: str) -> None:
    settings_obj = SimpleNamespace(
        HOSTYARD_ENCRYPTION_KEY=Fernet.generate_key().decode(), SECRET_KEY="unused"
    )

    token = encrypt_private_key(key_pem, settings_obj=settings_obj)

    assert "PRIVATE KEY" not in token
    assert decrypt_private_key(token, settings_obj=settings_obj) == key_pem


def test_empty_key_derives_from_secret_key(key_pem: str) -> None:
    first = SimpleNamespace(HOSTYARD_ENCRYPTION_KEY="", SECRET_KEY="secret-one")
    same_secret = SimpleNamespace(HOSTYARD_ENCRYPTION_KEY="", SECRET_KEY="secret-one")
    other_secret = SimpleNamespace(HOSTYARD_ENCRYPTION_KEY="", SECRET_KEY="secret-two")

    token = encrypt_private_key(key_pem, settings_obj=first)

    assert decrypt_private_key(token, settings_obj=same_secret) == key_pem
    with pytest.raises(DecryptionError):
        decrypt_private_key(token, settings_obj=other_secret)


def test_rotation_keeps_old_tokens_readable(key_pem: str) -> None:
    old_key, new_key = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    before = SimpleNamespace(HOSTYARD_ENCRYPTION_KEY=old_key, SECRET_KEY="s")
    after = SimpleNamespace(HOSTYARD_ENCRYPTION_KEY=f"{new_key}, {old_key}", SECRET_KEY="s")
    only_new = SimpleNamespace(HOSTYARD_ENCRYPTION_KEY=new_key, SECRET_KEY="s")

    old_token = encrypt_private_key(key_pem, settings_obj=before)
    new_token = encrypt_private_key(key_pem, settings_obj=after)

    assert decrypt_private_key(old_token, settings_obj=after) == key_pem
    assert decrypt_private_key(new_token, settings_obj=only_new) == key_pem


def test_wrong_key_raises_readable_error(key_pem: str) -> None:
    writer = SimpleNamespace(HOSTYARD_ENCRYPTION_KEY=Fernet.generate_key().decode())
    reader_key = Fernet.generate_key().decode()
    reader = SimpleNamespace(HOSTYARD_ENCRYPTION_KEY=reader_key)
    token = encrypt_private_key(key_pem, settings_obj=writer)

    with pytest.raises(DecryptionError) as failed:
        decrypt_private_key(token, settings_obj=reader)

    assert "cannot be decrypted with HOSTYARD_ENCRYPTION_KEY" in str(failed.value)
    assert reader_key not in str(failed.value)


def test_altered_token_rejected(key_pem: str) -> None:
    settings_obj = SimpleNamespace(HOSTYARD_ENCRYPTION_KEY=Fernet.generate_key().decode())
    token = encrypt_private_key(key_pem, settings_obj=settings_obj)
    altered = token[:-6] + ("A" if token[-6] != "A" else "B") + token[-5:]

    with pytest.raises(DecryptionError):
        decrypt_private_key(altered, settings_obj=settings_obj)
    with pytest.raises(DecryptionError):
        decrypt_private_key("not ascii: é", settings_obj=settings_obj)


def test_invalid_configured_key_names_entry() -> None:
    settings_obj = SimpleNamespace(
        HOSTYARD_ENCRYPTION_KEY=f"{Fernet.generate_key().decode()},too-short"
    )

    with pytest.raises(ImproperlyConfigured) as invalid:
        encrypt_private_key("x", settings_obj=settings_obj)

    assert "entry 2 is not a Fernet key" in str(invalid.value)
    assert "too-short" not in str(invalid.value)


def test_no_key_and_no_secret_key_rejected() -> None:
    settings_obj = SimpleNamespace(HOSTYARD_ENCRYPTION_KEY="", SECRET_KEY="")

    with pytest.raises(ImproperlyConfigured) as invalid:
        encrypt_private_key("x", settings_obj=settings_obj)

    assert "Both HOSTYARD_ENCRYPTION_KEY and SECRET_KEY are empty" in str(invalid.value)


def test_django_settings_used_by_default(key_pem: str, settings) -> None:
    settings.HOSTYARD_ENCRYPTION_KEY = ""
    settings.SECRET_KEY = "from-django-settings"
    explicit = SimpleNamespace(HOSTYARD_ENCRYPTION_KEY="", SECRET_KEY="from-django-settings")

    token = encrypt_private_key(key_pem)

    assert decrypt_private_key(token, settings_obj=explicit) == key_pem
