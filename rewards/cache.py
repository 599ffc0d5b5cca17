"""The public catalogue cache (Redis through Django's cache), invalidated by a version number.

Every cached list response lives under `rewards:list:page:<hash of host + query>` with the version it was rendered
at. Every service that changes what the public list shows (a reward's fields, status or stock, a merchant's status)
calls `catalogue_changed()`, which bumps the version when its transaction commits: once the service has returned,
no reader can be served a page from before the change (a page of an older version is rendered again).
Entries also carry a short TTL, a backstop for rewards whose validity window opens or closes with time.
Redis being down never breaks the catalogue: reads fall back to the database.
"""

from backend.core.list_cache import VersionedListCache

CATALOGUE = VersionedListCache(prefix="rewards:list", version_key="rewards:catalogue:version", ttl_s=60)


def catalogue_changed() -> None:
    """Invalidate the public catalogue when the current transaction commits (at once outside one)."""
    CATALOGUE.bump_on_commit()


def list_key(host: str, query: str) -> str:
    return CATALOGUE.page_key(host, query)
