"""DRF throttles backed by Redis that fail open: a throttle is a courtesy limit, not a guard of value, so a
Redis outage must not turn every request into a 500 (the login lockout, which guards accounts, fails closed)."""

import logging

from rest_framework import throttling

logger = logging.getLogger(__name__)


class _FailOpen:
    def allow_request(self, request, view):
        try:
            return super().allow_request(request, view)
        except Exception:  # Redis unreachable: let the request through, say so in the logs
            logger.warning("throttle store unavailable; request not throttled", exc_info=True)
            return True


class AnonRateThrottle(_FailOpen, throttling.AnonRateThrottle):
    pass


class UserRateThrottle(_FailOpen, throttling.UserRateThrottle):
    pass


class PartnerRateThrottle(_FailOpen, throttling.SimpleRateThrottle):
    """Per signed partner (request.auth is the Partner)."""

    scope = "partner"

    def get_cache_key(self, request, view):
        partner = getattr(request, "auth", None)
        if partner is None:
            return None
        return self.cache_format % {"scope": self.scope, "ident": partner.pk}
