"""The public methodology list (GET /api/v1/methodologies) cached in Redis, invalidated by a version number.

The list is the same for everyone and changes only when a methodology or one of its versions changes (drafts,
reviews, activation, retirement, seeding), yet rendering it (every methodology with its active version's
parameters, rules and sources) was the costliest public read. Pages are cached under
`methodologies:list:page:<hash of host, language and query>` with the version they were rendered at. Every save
or delete of a Methodology or MethodologyVersion row (their save()/delete(), models.ListCacheInvalidating) bumps the
version at once and again when its transaction commits, so no reader is served a page from before the change once
the writer has returned. Entries also expire after 5 minutes, a backstop for a write
that sends no signal (a bulk `QuerySet.update()`). Redis down: pages are rendered from the database.
"""

from backend.core.list_cache import VersionedListCache

LIST = VersionedListCache(prefix="methodologies:list", version_key="methodologies:list:version", ttl_s=300)


def methodologies_changed() -> None:
    """Invalidate now (readers inside the writer's transaction) and when it commits."""
    LIST.bump()
    LIST.bump_on_commit()


def list_key(host: str, language: str, query: str) -> str:
    return LIST.page_key(host, language, query)
