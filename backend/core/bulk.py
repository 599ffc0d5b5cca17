"""Bulk writes with a constant number of queries (the pipeline updates a thousand rows per batch)."""

from django.db import connection, models


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
        column = field.column
        db_type = _array_type(field)
        columns.append(column)
        casts.append(db_type)
        arrays.append([field.get_db_prep_value(row[name], connection) for row in rows])
    pk_field = model._meta.pk
    sets = ", ".join(f'"{c}" = v."{c}"' for c in columns)
    unnest = ", ".join(["%s::bigint[]", *[f"%s::{t}[]" for t in casts]])
    names = ", ".join(['"__id"', *[f'"{c}"' for c in columns]])
    # Identifiers come from model metadata, never from input; values travel as bound array parameters.
    sql = (
        f'UPDATE "{table}" AS t SET {sets} FROM unnest({unnest}) AS v({names}) '  # noqa: S608
        f'WHERE t."{pk_field.column}" = v."__id"'
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [[row["id"] for row in rows], *arrays])
        return cursor.rowcount


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
