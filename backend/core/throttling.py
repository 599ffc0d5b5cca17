"""DRF throttles backed by Redis that fail open: a throttle is a courtesy limit, not a guard of value, so a
Redis outage must not turn every request into a 500 (the login lockout, which guards accounts, fails closed).

On Redis each throttle costs one round trip: a sliding-window counter (the current fixed window's count plus the
previous window's, weighted by how much of it still overlaps the sliding window), `INCR` + `EXPIRE` + `GET` in one
pipeline. DRF's own throttle keeps a list of every request time in the cache and reads and rewrites it whole
(two round trips and a pickle of up to `rate` floats per request). A refused request is not counted (its
increment is taken back), as with DRF. Without Redis (the embedded default's local-memory cache) DRF's own
algorithm runs.

Signed-in requests get both Redis reads in one round trip: the JWT authentication (backend/accounts/authentication.py)
sends the cached user row's GET and every sliding-window throttle's pipeline of the view for the token's user id
(`prefetch_add`) together; `allow_request` then uses those figures instead of its own round trip. The counter was
incremented before authentication and permissions had their say, so a request that stops there (refused token, user
inactive, permission denied: DRF would not have counted it) gives its increments back (`prefetch_release`, from the
authentication and from the exception handler), like a refused request does.
"""

import logging
import math

from django.core.cache import cache
from rest_framework import throttling

logger = logging.getLogger(__name__)


def _redis_client():
    """The raw client of the default cache when it is django-redis, else None."""
    client = getattr(cache, "client", None)
    if client is None or not hasattr(client, "get_client"):
        return None
    return client.get_client(write=True)


class _FailOpen:
    def allow_request(self, request, view):
        try:
            return super().allow_request(request, view)
        except Exception:  # Redis unreachable: let the request through, say so in the logs
            logger.warning("throttle store unavailable; request not throttled", exc_info=True)
            return True


class _SlidingWindowCounter:
    """`allow_request` / `wait` of SimpleRateThrottle as one Redis round trip (see the module docstring)."""

    _wait: float | None = None

    def allow_request(self, request, view):
        if self.rate is None:
            return True
        self.key = self.get_cache_key(request, view)
        if self.key is None:
            return True
        prefetched = _prefetched(request).pop(self.key, None)
        if prefetched is not None:  # counted in the authentication's round trip
            client, current, elapsed, count, previous = prefetched
        else:
            client = _redis_client()
            if client is None:
                return super().allow_request(request, view)
            pipe = client.pipeline(transaction=False)
            current, elapsed = self._queue(pipe, self.key, self.timer())
            reads = reads_add(pipe, request)  # the view's own GETs ride along (one round trip)
            count, _expiry, previous, *read_replies = pipe.execute()
            reads_store(request, reads, read_replies)
        previous = int(previous or 0)
        before = count - 1 + previous * (1 - elapsed)  # requests in the sliding window before this one
        if before < self.num_requests:
            return True
        client.decr(current)  # refused: not counted
        self._wait = self._seconds_until_free(count - 1, previous, elapsed)
        return False

    def _queue(self, pipe, key: str, now: float) -> tuple[str, float]:
        """INCR + EXPIRE of the current window's counter and GET of the previous one's, on `pipe`."""
        window, into = divmod(now, self.duration)
        window = int(window)
        current = cache.make_key(f"{key}:{window}")
        pipe.incr(current)
        pipe.expire(current, int(self.duration) * 2)
        pipe.get(cache.make_key(f"{key}:{window - 1}"))
        return current, into / self.duration  # 0..1 of the current window gone

    def _seconds_until_free(self, count: int, previous: int, elapsed: float) -> float:
        """When the weighted count drops below the limit if no other request arrives."""
        limit = self.num_requests
        if count >= limit:  # only the next window helps, once enough of this one has slid out
            fraction = (1 - elapsed) + max(0.0, 1 - limit / count)
        else:  # the previous window's weight must shrink: previous * (1 - t) < limit - count
            fraction = max(0.0, 1 - (limit - count) / previous - elapsed) if previous else 0.0
        return max(1.0, math.ceil(fraction * self.duration))

    def wait(self):
        if self._wait is not None:
            return self._wait
        return super().wait()


# ------------------------------------------------------------------------- one round trip with the authentication

_PREFETCH_ATTR = "_throttle_prefetch"


def _prefetched(request) -> dict:
    return getattr(request, _PREFETCH_ATTR, None) or {}


class _SignedIn:
    """The request as the throttles will see it once the token's user is loaded: only `user` differs."""

    def __init__(self, request, user_id):
        self._request = request
        self.user = _UserId(user_id)

    def __getattr__(self, name):
        return getattr(self._request, name)


class _UserId:
    is_authenticated = True
    is_anonymous = False

    def __init__(self, pk):
        self.pk = self.id = pk


def prefetch_add(pipe, request, user_id) -> list:
    """Queue on `pipe` the round trip of every sliding-window throttle of the request's view for the signed-in user
    `user_id` (three commands each); returns what `prefetch_store` needs to read their replies. A throttle whose key
    needs more than the user's id is left to its own round trip."""
    view = (getattr(request, "parser_context", None) or {}).get("view")
    if view is None or _redis_client() is None:
        return []
    queued = []
    signed_in = _SignedIn(request, user_id)
    for throttle in view.get_throttles():
        if not isinstance(throttle, _SlidingWindowCounter) or throttle.rate is None:
            continue
        try:
            key = throttle.get_cache_key(signed_in, view)
        except Exception:  # keyed on more than the user id: it makes its own round trip
            logger.debug("throttle %s not prefetched", type(throttle).__name__, exc_info=True)
            continue
        if key is None or any(key == k for k, *_ in queued):
            continue
        current, elapsed = throttle._queue(pipe, key, throttle.timer())
        queued.append((key, current, elapsed))
    return queued


def prefetch_store(request, queued: list, replies: list) -> None:
    """Keep the queued throttles' replies (three per throttle, in order) for their `allow_request`."""
    if not queued:
        return
    client = _redis_client()
    store = {}
    for i, (key, current, elapsed) in enumerate(queued):
        count, _expiry, previous = replies[3 * i : 3 * i + 3]
        store[key] = (client, current, elapsed, count, previous)
    setattr(request, _PREFETCH_ATTR, store)


def prefetch_release(request) -> None:
    """The request stopped before its throttles ran: give back the increments they did not use."""
    store = _prefetched(request)
    if not store:
        return
    setattr(request, _PREFETCH_ATTR, None)
    try:
        client = next(iter(store.values()))[0]
        pipe = client.pipeline(transaction=False)
        for _client, current, *_ in store.values():
            pipe.decr(current)
        pipe.execute()
    except Exception:
        logger.warning("could not take back unused throttle counts", exc_info=True)


# ------------------------------------------------------------------------------ the view's reads in the same trip

_READS_ATTR = "_redis_reads"


def reads_add(pipe, request) -> list[str]:
    """Queue on `pipe` a GET of every Redis key the request's view names in `redis_prefetch_keys(request)` (full keys,
    `cache.make_key` applied), once per request: a cached public list's version and page travel with the throttle or
    authentication round trip the request makes anyway. Returns the keys, for `reads_store`."""
    view = (getattr(request, "parser_context", None) or {}).get("view")
    hook = getattr(view, "redis_prefetch_keys", None)
    if hook is None or getattr(request, _READS_ATTR, None) is not None:
        return []
    try:
        keys = list(hook(request))
    except Exception:  # the view reads them itself
        logger.debug("view reads not prefetched", exc_info=True)
        return []
    for key in keys:
        pipe.get(key)
    return keys


def reads_store(request, keys: list[str], replies: list) -> None:
    if keys:
        setattr(request, _READS_ATTR, dict(zip(keys, replies, strict=True)))


def prefetched_reads(request) -> dict:
    """{full key: raw reply (bytes or None)} of the view's GETs made in the request's throttle round trip."""
    return getattr(request, _READS_ATTR, None) or {}


class AnonRateThrottle(_FailOpen, _SlidingWindowCounter, throttling.AnonRateThrottle):
    pass


class UserRateThrottle(_FailOpen, _SlidingWindowCounter, throttling.UserRateThrottle):
    """Signed-in users only. DRF's version also limits anonymous requests by address, next to the anon throttle
    that already does (and more strictly by default): a second Redis round trip per public request for nothing.
    Every request now pays one throttle round trip: the anon one or this one."""

    def get_cache_key(self, request, view):
        if not (request.user and request.user.is_authenticated):
            return None
        return super().get_cache_key(request, view)


class PartnerRateThrottle(_FailOpen, _SlidingWindowCounter, throttling.SimpleRateThrottle):
    """Per signed partner (request.auth is the Partner)."""

    scope = "partner"

    def get_cache_key(self, request, view):
        partner = getattr(request, "auth", None)
        if partner is None:
            return None
        return self.cache_format % {"scope": self.scope, "ident": partner.pk}
