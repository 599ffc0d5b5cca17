"""Personal data at rest: a keyed hash for lookups and authenticated encryption for the value itself."""

import base64
import hashlib
import hmac
from functools import lru_cache

from cryptography.fernet import Fernet, MultiFernet
from django.conf import settings


def keyed_hash(purpose: str, value: str) -> str:
    """HMAC-SHA256 of a normalised value; `purpose` separates namespaces (phone, transit card, ...)."""
    key = settings.FIELD_HASH_KEY.encode()
    return hmac.new(key, f"{purpose}:{value}".encode(), hashlib.sha256).hexdigest()


@lru_cache(maxsize=4)
def _fernet(keys: str, secret_key: str) -> MultiFernet:
    if keys:
        # Comma-separated Fernet keys: the first encrypts, all decrypt (key rotation without downtime).
        return MultiFernet([Fernet(k.strip().encode()) for k in keys.split(",") if k.strip()])
    derived = base64.urlsafe_b64encode(hashlib.sha256(("fernet:" + secret_key).encode()).digest())
    return MultiFernet([Fernet(derived)])


def encrypt(value: str) -> str:
    return _fernet(settings.FIELD_ENCRYPTION_KEY, settings.SECRET_KEY).encrypt(value.encode()).decode()


def decrypt(token: str) -> str:
    return _fernet(settings.FIELD_ENCRYPTION_KEY, settings.SECRET_KEY).decrypt(token.encode()).decode()
