"""Database helpers. `prepared_cursor()`: a cursor whose statements PostgreSQL plans once per connection
(backend/core/db/postgresql/base.py); an ordinary cursor on any other database."""

from django.db import connection


def prepared_cursor():
    maker = getattr(connection, "prepared_cursor", None)
    return maker() if maker is not None else connection.cursor()
