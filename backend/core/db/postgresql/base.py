"""Django's PostgreSQL backend with the per-request health check (CONN_HEALTH_CHECKS) skipped on a connection that
was known to work less than DB_HEALTH_CHECK_IDLE_S ago.

With CONN_HEALTH_CHECKS Django sends `SELECT 1` before the first query of every request on a persistent connection:
for a one-query read (the wallet) that is a second round trip and about a tenth of its PostgreSQL and web CPU. The
check is there for a connection that died while it sat idle (server restart, failover, an idle timeout, a network
cut). A connection that finished a request without a database error a moment ago is as good as checked: like
PgBouncer's `server_check_delay`, the check runs only once the connection has been idle for a while. What it gives
up: a connection that breaks within that second fails its next request's first query instead of being replaced
before it; Django then sees the error and closes the connection at the end of that request, as without health checks.

`prepared_cursor()`: a cursor whose statements are bound server-side and prepared, so PostgreSQL plans them once
per connection instead of on every execution. For the hot hand-written read statements (the wallet's one query,
a ledger page's amounts): planning the wallet statement took about twice its execution. The ORM keeps Django's
client-side binding (server_side_binding for every query is DB_SERVER_SIDE_BINDING=1 in settings, off by default).
Prepared statements live on the connection: behind PgBouncer, transaction pooling needs PgBouncer >= 1.21 with
max_prepared_statements set.
"""

import threading
import time

from django.conf import settings
from django.db.backends.postgresql import base, operations
from psycopg.errors import DataError


class PreparedCursor(base.ServerBindingCursor):
    """psycopg's server-side binding cursor with every statement prepared (psycopg keeps up to prepared_max per
    connection and re-prepares after a reconnect)."""

    def execute(self, query, params=None, *, prepare=None, binary=None):
        return super().execute(query, params, prepare=True, binary=binary)


class DatabaseOperations(operations.DatabaseOperations):
    def last_executed_query(self, cursor, sql, params):
        # A prepared execution leaves psycopg no query text to read back: the query log (debug, query-count tests)
        # gets the statement with its parameters merged client-side, as Django does under server-side binding.
        if isinstance(cursor, PreparedCursor):
            try:
                return self.compose_sql(sql, params)
            except DataError:
                return None
        return super().last_executed_query(cursor, sql, params)


class DatabaseWrapper(base.DatabaseWrapper):
    ops_class = DatabaseOperations
    _known_good_at: float | None = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._prepared = threading.local()

    def get_new_connection(self, conn_params):
        connection = super().get_new_connection(conn_params)
        if connection.prepare_threshold is None:
            # Django turns psycopg's preparation off (None), which also ignores prepare=True. A threshold nothing
            # reaches: only PreparedCursor's explicit prepare=True prepares (Django's client-side binding cursors
            # never prepare at all).
            connection.prepare_threshold = 2**31
        return connection

    def prepared_cursor(self):
        """Like cursor() (health check, connection, Django's execute wrappers and query log), statements prepared."""
        before = getattr(self._prepared, "on", False)
        self._prepared.on = True
        try:
            return self._cursor()
        finally:
            self._prepared.on = before

    def create_cursor(self, name=None):
        if name or not getattr(self._prepared, "on", False):
            return super().create_cursor(name)
        cursor = PreparedCursor(self.connection)
        tzloader = self.connection.adapters.get_loader(base.TIMESTAMPTZ_OID, base.Format.TEXT)
        if self.timezone != tzloader.timezone:  # as Django's create_cursor does
            base.register_tzloader(self.timezone, cursor)
        return cursor

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
