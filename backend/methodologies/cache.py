"""The public methodology list (GET /api/v1/methodologies) cached in Redis, invalidated by a version number.

The list is the same for everyone and changes only when a methodology or one of its versions changes (drafts,
reviews, activation, retirement, seeding), yet rendering it (every methodology with its active version's
parameters, rules and sources) was the costliest public read. Pages are cached under
`methodologies:list:v<version>:<hash of host, language and query>`. Every save or delete of a Methodology or
MethodologyVersion row (their save()/delete(), models.ListCacheInvalidating) bumps the version at once and again
when its transaction commits, so no reader is served a page
from before the change once the writer has returned. Entries also expire after LIST_TTL_S, a backstop for a write
that sends no signal (a bulk `QuerySet.update()`). Redis down: pages are rendered from the database.
"""

import hashlib
import logging

from django.core.cache import cache
from django.db import transaction

logger = logging.getLogger(__name__)
VERSION_KEY = "methodologies:list:version"
LIST_TTL_S = 300


def list_version() -> int:
    try:
        version = cache.get(VERSION_KEY)
        if version is None:
            cache.add(VERSION_KEY, 1, timeout=None)
            version = cache.get(VERSION_KEY) or 1
        return int(version)
    except Exception:  # Redis down: serve from the database
        logger.warning("methodology list cache unavailable", exc_info=True)
        return 0


def _bump() -> None:
    try:
        try:
            cache.incr(VERSION_KEY)
        except ValueError:  # no version yet (first change, or the cache was flushed)
            cache.add(VERSION_KEY, 2, timeout=None)
            cache.incr(VERSION_KEY)
    except Exception:
        logger.warning("could not bump the methodology list cache version", exc_info=True)


def methodologies_changed() -> None:
    """Invalidate now (readers inside the writer's transaction) and when it commits."""
    _bump()
    transaction.on_commit(_bump)


def list_key(version: int, host: str, language: str, query: str) -> str:
    digest = hashlib.sha256(f"{host}|{language}|{query}".encode()).hexdigest()[:32]
    return f"methodologies:list:v{version}:{digest}"


def cached_get(key: str):
    try:
        return cache.get(key)
    except Exception:
        return None


def cached_set(key: str, value) -> None:
    try:
        cache.set(key, value, timeout=LIST_TTL_S)
    except Exception:
        logger.warning("could not cache a methodology list page", exc_info=True)
