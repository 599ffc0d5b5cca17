"""DRF throttles backed by Redis that fail open: a throttle is a courtesy limit, not a guard of value, so a
Redis outage must not turn every request into a 500 (the login lockout, which guards accounts, fails closed).

On Redis each throttle costs one round trip: a sliding-window counter (the current fixed window's count plus the
previous window's, weighted by how much of it still overlaps the sliding window), `INCR` + `EXPIRE` + `GET` in one
pipeline. DRF's own throttle keeps a list of every request time in the cache and reads and rewrites it whole
(two round trips and a pickle of up to `rate` floats per request). A refused request is not counted (its
increment is taken back), as with DRF. Without Redis (the embedded default's local-memory cache) DRF's own
algorithm runs.
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
        client = _redis_client()
        if client is None:
            return super().allow_request(request, view)
        now = self.timer()
        window, into = divmod(now, self.duration)
        window = int(window)
        elapsed = into / self.duration  # 0..1 of the current window gone
        current = cache.make_key(f"{self.key}:{window}")
        pipe = client.pipeline(transaction=False)
        pipe.incr(current)
        pipe.expire(current, int(self.duration) * 2)
        pipe.get(cache.make_key(f"{self.key}:{window - 1}"))
        count, _expiry, previous = pipe.execute()
        previous = int(previous or 0)
        before = count - 1 + previous * (1 - elapsed)  # requests in the sliding window before this one
        if before < self.num_requests:
            return True
        client.decr(current)  # refused: not counted
        self._wait = self._seconds_until_free(count - 1, previous, elapsed)
        return False

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
