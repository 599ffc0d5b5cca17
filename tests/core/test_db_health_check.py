"""backend/core/db/postgresql: Django's per-request connection health check (`SELECT 1`) is skipped on a connection
that worked less than DB_HEALTH_CHECK_IDLE_S ago, and still replaces a dead connection that sat idle longer."""

import pytest
from django.db import connections

from tests.conftest import requires_postgres

pytestmark = [requires_postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def conn():
    connection = connections.create_connection("default")
    assert connection.settings_dict["CONN_HEALTH_CHECKS"] and connection.settings_dict["CONN_MAX_AGE"] > 0
    yield connection
    connection.close()


def request_cycle(conn) -> int:
    """What a request does (request_started / one query / request_finished); the SELECT 1 checks it cost."""
    checks = []
    original = conn.is_usable

    def counting():
        checks.append(1)
        return original()

    conn.is_usable = counting
    try:
        conn.close_if_unusable_or_obsolete()
        with conn.cursor() as cursor:
            cursor.execute("SELECT 2")
            assert cursor.fetchone() == (2,)
        conn.close_if_unusable_or_obsolete()
    finally:
        del conn.is_usable
    return len(checks)


def test_a_busy_connection_is_not_checked_before_every_request(conn, settings):
    settings.DB_HEALTH_CHECK_IDLE_S = 60
    request_cycle(conn)  # connects
    assert [request_cycle(conn) for _ in range(5)] == [0, 0, 0, 0, 0]


def test_an_idle_connection_is_checked(conn, settings):
    settings.DB_HEALTH_CHECK_IDLE_S = 0  # every connection counts as idle: Django's behaviour
    request_cycle(conn)
    assert [request_cycle(conn) for _ in range(3)] == [1, 1, 1]


def test_a_connection_that_died_while_idle_is_replaced_before_the_query(conn, settings):
    settings.DB_HEALTH_CHECK_IDLE_S = 0
    request_cycle(conn)
    pid = conn.connection.info.backend_pid
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    assert request_cycle(conn) == 1  # the check found it dead; the query ran on a new connection
    assert conn.connection.info.backend_pid != pid
