"""Encryption at rest for private keys (ACME account keys, certificate keys).

Keys are encrypted with Fernet (AES-128-CBC plus HMAC-SHA256, from ``cryptography``)
under the key in the setting ``HOSTYARD_ENCRYPTION_KEY``: a urlsafe base64 32-byte
Fernet key, or several separated by commas to rotate keys. The first key encrypts;
every key is tried to decrypt.

When ``HOSTYARD_ENCRYPTION_KEY`` is empty, the key is derived from Django's
``SECRET_KEY`` with HKDF-SHA256. Rotating ``SECRET_KEY`` then makes every stored
private key unreadable, so production deployments should set
``HOSTYARD_ENCRYPTION_KEY``.

Neither keys nor plaintext are ever logged or put in an error message.
"""

import base64
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.core.exceptions import ImproperlyConfigured

# Fixed HKDF inputs: changing either makes every key derived from SECRET_KEY different.
_HKDF_SALT = b"hostyard-private-key-encryption"
_HKDF_INFO = b"fernet-key-v1"


class DecryptionError(ValueError):
    """A stored value that none of the configured keys can decrypt."""


def encrypt_private_key(key_pem: str, *, settings_obj: Any = None) -> str:
    """Encrypt a PEM private key for storage; the result is an ASCII Fernet token."""
    return _fernet(settings_obj).encrypt(key_pem.encode()).decode("ascii")


def decrypt_private_key(token: str, *, settings_obj: Any = None) -> str:
    """Decrypt a value from ``encrypt_private_key``.

    Raises ``DecryptionError`` when the token was made with another key or was
    altered.
    """
    try:
        return _fernet(settings_obj).decrypt(token.encode("ascii")).decode()
    except (InvalidToken, UnicodeEncodeError) as exc:
        raise DecryptionError(
            "The stored private key cannot be decrypted with HOSTYARD_ENCRYPTION_KEY: "
            "restore the key it was encrypted with, or issue a new key."
        ) from exc


def _fernet(settings_obj: Any) -> MultiFernet:
    if settings_obj is None:
        from django.conf import settings as settings_obj

    configured = str(getattr(settings_obj, "HOSTYARD_ENCRYPTION_KEY", "") or "")
    keys = [key.strip() for key in configured.split(",") if key.strip()]
    if not keys:
        return MultiFernet([Fernet(_derive_from_secret_key(settings_obj))])

    fernets = []
    for position, key in enumerate(keys, start=1):
        try:
            fernets.append(Fernet(key))
        except ValueError:
            raise ImproperlyConfigured(
                f"HOSTYARD_ENCRYPTION_KEY entry {position} is not a Fernet key (32 bytes in "
                "urlsafe base64): generate one with "
                "`python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())'`."
            ) from None
    return MultiFernet(fernets)


def _derive_from_secret_key(settings_obj: Any) -> bytes:
    secret = str(getattr(settings_obj, "SECRET_KEY", "") or "")
    if not secret:
        raise ImproperlyConfigured(
            "Both HOSTYARD_ENCRYPTION_KEY and SECRET_KEY are empty: set HOSTYARD_ENCRYPTION_KEY "
            "to a Fernet key to encrypt private keys."
        )
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=_HKDF_SALT, info=_HKDF_INFO)
    return base64.urlsafe_b64encode(hkdf.derive(secret.encode()))
