"""Database helpers: statements PostgreSQL plans once per connection (backend/core/db/postgresql/base.py).

`prepared_cursor()` is a cursor whose statements are prepared; inside `with prepared_statements():` every cursor the
ORM opens is one (for a hot read view's own queries, whose text repeats). Ordinary cursors on any other database.
"""

from contextlib import contextmanager

from django.db import connection


def prepared_cursor():
    maker = getattr(connection, "prepared_cursor", None)
    return maker() if maker is not None else connection.cursor()


@contextmanager
def prepared_statements():
    state = getattr(connection, "_prepared", None)
    if state is None:  # not our PostgreSQL backend
        yield
        return
    before = getattr(state, "on", False)
    state.on = True
    try:
        yield
    finally:
        state.on = before
