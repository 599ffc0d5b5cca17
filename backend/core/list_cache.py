"""A public list cached in Redis (through Django's cache) and invalidated by a version number.

A page lives under `<prefix>:page:<hash of the parts that vary the page>` as (version it was rendered at, data). A
change bumps the version (`bump`), so a page rendered before it no longer matches the version and is rendered again
(and pages expire after the TTL, a backstop for changes that send no signal). Reading a page is one round trip: GET of
the version and of the page together, and when the view names them in `redis_prefetch_keys` they even travel with
the request's throttle or authentication round trip (backend/core/throttling.py `reads_add`): a cached list costs
one Redis round trip in all. Redis being down never breaks a list: the version reads 0 (a key nobody bumps) and
pages are rendered from the database. Used by the rewards catalogue and the methodology list.
"""

import hashlib
import logging
import time

from django.core.cache import cache
from django.db import transaction

from backend.core.throttling import _redis_client, prefetched_reads

logger = logging.getLogger(__name__)


def _fresh_version() -> int:
    """Where a missing version starts (first use, or the key was flushed or evicted): the clock in microseconds.
    Pages of the lost version carry smaller numbers, and the counter they were stored at climbs by one per change,
    far slower than the clock, so a recreated version never meets a page from before the loss. Starting again at
    1 did: a few dozen redemptions within a page's TTL counted back up to a stored page's version and served it."""
    return time.time_ns() // 1000


class VersionedListCache:
    def __init__(self, *, prefix: str, version_key: str, ttl_s: int):
        self.prefix, self.version_key, self.ttl_s = prefix, version_key, ttl_s

    def version(self) -> int:
        try:
            version = cache.get(self.version_key)
            if version is None:
                cache.add(self.version_key, _fresh_version(), timeout=None)
                version = cache.get(self.version_key) or 0
            return int(version)
        except Exception:  # Redis down: serve from the database
            logger.warning("%s cache unavailable", self.prefix, exc_info=True)
            return 0

    def bump(self) -> None:
        """One round trip of two plain commands on Redis: SET NX of a fresh version (none yet: the first change, or the
        key was flushed or evicted; `_fresh_version`) then INCR. django-redis's `incr` is a Lua EVAL that raises on a
        missing key (then two more round trips): every redemption of a limited reward runs this after its commit."""
        try:
            client = _redis_client()
            if client is None:  # the embedded default's local-memory cache
                cache.add(self.version_key, _fresh_version(), timeout=None)
                cache.incr(self.version_key)
                return
            key = cache.make_key(self.version_key)
            pipe = client.pipeline(transaction=False)
            pipe.set(key, _fresh_version(), nx=True)
            pipe.incr(key)
            pipe.execute()
        except Exception:
            logger.warning("could not bump the %s cache version", self.prefix, exc_info=True)

    def bump_on_commit(self) -> None:
        """Bump when the current transaction commits (at once outside one)."""
        transaction.on_commit(self.bump)

    def page_key(self, *parts: str) -> str:
        digest = hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]
        return f"{self.prefix}:page:{digest}"

    def prefetch_keys(self, key: str) -> list[str]:
        """The full Redis keys `lookup` reads for the page at `key` (a view's `redis_prefetch_keys`)."""
        return [cache.make_key(self.version_key), cache.make_key(key)]

    def lookup(self, request, key: str) -> tuple[int, object]:
        """(the current version, the page at `key` if it was rendered at that version, else None). From the request's
        prefetched reads when its throttle or authentication round trip carried them, else one round trip."""
        try:
            prefetched = prefetched_reads(request)
            full_keys = self.prefetch_keys(key)
            if all(k in prefetched for k in full_keys):
                raw_version, raw_entry = (prefetched[k] for k in full_keys)
                version = None if raw_version is None else int(cache.client.decode(raw_version))
                entry = None if raw_entry is None else cache.client.decode(raw_entry)
            else:
                found = cache.get_many([self.version_key, key])  # MGET on Redis
                version, entry = found.get(self.version_key), found.get(key)
        except Exception:  # Redis down: serve from the database
            logger.warning("%s cache unavailable", self.prefix, exc_info=True)
            return 0, None
        if version is None:  # first use (or a flushed cache): create the version, render the page
            return self.version(), None
        version = int(version)
        if isinstance(entry, tuple) and len(entry) == 2 and entry[0] == version:
            return version, entry[1]
        return version, None

    def store(self, key: str, version: int, data) -> None:
        """Keep `data`, rendered after reading `version`: a change committed meanwhile bumped the version, so the
        page (possibly from before it) is never served."""
        try:
            cache.set(key, (version, data), timeout=self.ttl_s)
        except Exception:
            logger.warning("could not cache a %s page", self.prefix, exc_info=True)
