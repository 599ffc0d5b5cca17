"""Django's PostgreSQL backend with the per-request health check (CONN_HEALTH_CHECKS) skipped on a connection that
was known to work less than DB_HEALTH_CHECK_IDLE_S ago.

With CONN_HEALTH_CHECKS Django sends `SELECT 1` before the first query of every request on a persistent connection:
for a one-query read (the wallet) that is a second round trip and about a tenth of its PostgreSQL and web CPU. The
check is there for a connection that died while it sat idle (server restart, failover, an idle timeout, a network
cut). A connection that finished a request without a database error a moment ago is as good as checked: like
PgBouncer's `server_check_delay`, the check runs only once the connection has been idle for a while. What it gives
up: a connection that breaks within that second fails its next request's first query instead of being replaced
before it; Django then sees the error and closes the connection at the end of that request, as without health checks.
"""

import time

from django.conf import settings
from django.db.backends.postgresql import base


class DatabaseWrapper(base.DatabaseWrapper):
    _known_good_at: float | None = None

    def close_if_unusable_or_obsolete(self):
        # Called as a request (or Celery task) starts and ends. health_check_done is True only after a query ran in
        # the cycle that is ending, and errors_occurred says whether one failed: then the connection just worked.
        worked = self.connection is not None and self.health_check_done and not self.errors_occurred
        super().close_if_unusable_or_obsolete()
        if self.connection is None:
            self._known_good_at = None
        elif worked:
            self._known_good_at = time.monotonic()

    def close_if_health_check_failed(self):
        if (
            self.connection is not None
            and self.health_check_enabled
            and not self.health_check_done
            and self._known_good_at is not None
            and time.monotonic() - self._known_good_at < settings.DB_HEALTH_CHECK_IDLE_S
        ):
            self.health_check_done = True
            return
        super().close_if_health_check_failed()
        if self.connection is not None:
            self._known_good_at = time.monotonic()

    def connect(self):
        super().connect()
        self._known_good_at = None
