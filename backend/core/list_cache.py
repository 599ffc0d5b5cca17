"""A public list cached in Redis (through Django's cache) and invalidated by a version number.

Pages live under `<prefix>:v<version>:<hash of the parts that vary the page>`. A change bumps the version, so old
keys are simply never read again and expire after the TTL (also a backstop for changes that send no signal).
Redis being down never breaks a list: the version reads 0 (a key nobody bumps) and pages are rendered from the
database. Used by the rewards catalogue and the methodology list.
"""

import hashlib
import logging

from django.core.cache import cache
from django.db import transaction

logger = logging.getLogger(__name__)


class VersionedListCache:
    def __init__(self, *, prefix: str, version_key: str, ttl_s: int):
        self.prefix, self.version_key, self.ttl_s = prefix, version_key, ttl_s

    def version(self) -> int:
        try:
            version = cache.get(self.version_key)
            if version is None:
                cache.add(self.version_key, 1, timeout=None)
                version = cache.get(self.version_key) or 1
            return int(version)
        except Exception:  # Redis down: serve from the database
            logger.warning("%s cache unavailable", self.prefix, exc_info=True)
            return 0

    def bump(self) -> None:
        try:
            try:
                cache.incr(self.version_key)
            except ValueError:  # no version yet (first change, or the cache was flushed)
                cache.add(self.version_key, 2, timeout=None)
                cache.incr(self.version_key)
        except Exception:
            logger.warning("could not bump the %s cache version", self.prefix, exc_info=True)

    def bump_on_commit(self) -> None:
        """Bump when the current transaction commits (at once outside one)."""
        transaction.on_commit(self.bump)

    def key(self, version: int, *parts: str) -> str:
        digest = hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]
        return f"{self.prefix}:v{version}:{digest}"

    def get(self, key: str):
        try:
            return cache.get(key)
        except Exception:
            return None

    def set(self, key: str, value) -> None:
        try:
            cache.set(key, value, timeout=self.ttl_s)
        except Exception:
            logger.warning("could not cache a %s page", self.prefix, exc_info=True)
