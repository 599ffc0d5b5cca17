"""The public catalogue cache (Redis through Django's cache), invalidated by a version number.

Every cached list response lives under `rewards:list:v<version>:<hash of host + query>`. Every service that
changes what the public list shows (a reward's fields, status or stock, a merchant's status) calls
`catalogue_changed()`, which bumps the version when its transaction commits: once the service has returned,
no reader can be served a page from before the change (old keys are simply never read again and expire).
Entries also carry a short TTL, a backstop for rewards whose validity window opens or closes with time.
Redis being down never breaks the catalogue: reads fall back to the database.
"""

import hashlib
import logging

from django.core.cache import cache
from django.db import transaction

logger = logging.getLogger(__name__)
VERSION_KEY = "rewards:catalogue:version"
LIST_TTL_S = 60


def catalogue_version() -> int:
    try:
        version = cache.get(VERSION_KEY)
        if version is None:
            cache.add(VERSION_KEY, 1, timeout=None)
            version = cache.get(VERSION_KEY) or 1
        return int(version)
    except Exception:  # Redis down: serve from the database
        logger.warning("catalogue cache unavailable", exc_info=True)
        return 0


def _bump() -> None:
    try:
        try:
            cache.incr(VERSION_KEY)
        except ValueError:  # no version yet (first change, or the cache was flushed)
            cache.add(VERSION_KEY, 2, timeout=None)
            cache.incr(VERSION_KEY)
    except Exception:
        logger.warning("could not bump the catalogue cache version", exc_info=True)


def catalogue_changed() -> None:
    """Invalidate the public catalogue when the current transaction commits (at once outside one)."""
    transaction.on_commit(_bump)


def list_key(version: int, host: str, query: str) -> str:
    return f"rewards:list:v{version}:{hashlib.sha256(f'{host}|{query}'.encode()).hexdigest()[:32]}"


def cached_get(key: str):
    try:
        return cache.get(key)
    except Exception:
        return None


def cached_set(key: str, value) -> None:
    try:
        cache.set(key, value, timeout=LIST_TTL_S)
    except Exception:
        logger.warning("could not cache a catalogue page", exc_info=True)
