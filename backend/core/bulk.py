"""Bulk writes with a constant number of queries (the pipeline updates a thousand rows per batch)."""

import json

from django.db import DEFAULT_DB_ALIAS, connection, connections, models


def bulk_update_rows(model: type[models.Model], rows: list[dict], fields: list[str]) -> int:
    """Update many rows by primary key in one statement. `rows` are dicts with "id" and every name in `fields`
    (attribute names, e.g. "resident_id"). On PostgreSQL: UPDATE ... FROM unnest(arrays); elsewhere Django's
    bulk_update (fine for the embedded quick start)."""
    if not rows:
        return 0
    if connection.vendor != "postgresql":
        objs = []
        for row in rows:
            obj = model(pk=row["id"])
            for name in fields:
                setattr(obj, name, row[name])
            objs.append(obj)
        model.objects.bulk_update(objs, [model._meta.get_field(_field_name(model, f)).name for f in fields])
        return len(objs)
    table = model._meta.db_table
    columns, casts, arrays = [], [], []
    for name in fields:
        field = model._meta.get_field(_field_name(model, name))
        columns.append(field.column)
        casts.append(_array_type(field))
        if field.get_internal_type() == "JSONField":
            # JSON travels as text and is cast by the server: a Jsonb wrapper per value costs ~9x the CPU.
            encoder = field.encoder
            arrays.append([json.dumps(row[name], cls=encoder) for row in rows])
        elif field.get_internal_type() == "DecimalField":
            # Decimals travel as text and are cast by the server: psycopg's binary numeric dumping is ~20x slower.
            arrays.append([None if row[name] is None else str(row[name]) for row in rows])
        else:
            arrays.append([row[name] for row in rows])
    pk_field = model._meta.pk
    sets = ", ".join(f'"{c}" = v."{c}"' for c in columns)
    unnest = ", ".join(
        ["%b::bigint[]", *[f"%b::text[]::{t}[]" if t in ("numeric", "jsonb") else f"%b::{t}[]" for t in casts]]
    )
    names = ", ".join(['"__id"', *[f'"{c}"' for c in columns]])
    # Identifiers come from model metadata, never from input; values travel as binary array parameters.
    sql = (
        f'UPDATE "{table}" AS t SET {sets} FROM unnest({unnest}) AS v({names}) '  # noqa: S608
        f'WHERE t."{pk_field.column}" = v."__id"'
    )
    with BoundCursor() as cursor:
        cursor.execute(sql, [[row["id"] for row in rows], *arrays])
        return cursor.cursor.rowcount


def _field_name(model, attname: str) -> str:
    for field in model._meta.concrete_fields:
        if field.attname == attname or field.name == attname:
            return field.name
    raise KeyError(attname)


def _array_type(field) -> str:
    internal = field.get_internal_type()
    if internal in ("ForeignKey", "OneToOneField"):
        return _array_type(field.target_field)
    mapping = {
        "AutoField": "integer",
        "BigAutoField": "bigint",
        "BigIntegerField": "bigint",
        "IntegerField": "integer",
        "PositiveIntegerField": "integer",
        "SmallIntegerField": "smallint",
        "CharField": "text",
        "TextField": "text",
        "DateTimeField": "timestamptz",
        "DateField": "date",
        "BooleanField": "boolean",
        "JSONField": "jsonb",
        "FileField": "text",
    }
    if internal == "DecimalField":
        return "numeric"
    return mapping[internal]


class BoundCursor:
    """A psycopg cursor with server-side parameter binding on Django's connection. Django's own cursors bind
    client-side, quoting every element of a 1,000-element array in Python (most of a batch's time); here an
    array travels as one binary parameter (`%b`). Queries are still reported to Django's query log."""

    def __init__(self):
        import psycopg

        # The thread's connection looked up once: each attribute of the `connection` proxy is a look-up of its own
        # (a few microseconds each, dozens per request on the redemption path).
        self.db = connections[DEFAULT_DB_ALIAS]
        self.db.ensure_connection()
        self.cursor = psycopg.Cursor(self.db.connection)

    def execute(self, sql: str, params=None, *, prepare: bool | None = None) -> None:
        """`prepare=True`: a server-side prepared statement (parsed and planned once per connection) for a hot
        path's few statements. Our PostgreSQL backend (backend/core/db/postgresql) gives every connection a
        prepare_threshold nothing reaches, so only statements asked for explicitly are ever prepared."""
        self.cursor.execute(sql, params, prepare=prepare)
        if self.db.queries_logged:
            self.db.queries_log.append({"sql": sql, "time": "0"})

    def fetchall(self) -> list:
        return self.cursor.fetchall()

    def copy(self, sql: str):
        if self.db.queries_logged:
            self.db.queries_log.append({"sql": sql, "time": "0"})
        return self.cursor.copy(sql)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cursor.close()
