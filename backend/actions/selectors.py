from django.db import connection
from django.db.models import F, Prefetch, QuerySet

from backend.actions.models import Action, ActionStatusChange, SubjectBinding
from backend.core.db import prepared_cursor
from backend.core.pagination import KeysetRows


def binding_list(*, resident) -> QuerySet[SubjectBinding]:
    return SubjectBinding.objects.live().filter(resident=resident)


# What the list shows (ActionListItemSerializer): the action's JSON columns (inputs, breakdown) and the
# version's parameters stay in the database; decoding them was most of a page's cost.
LIST_COLUMNS = (
    "id",
    "methodology",
    "source",
    "occurred_at",
    "status",
    "reason",
    "grams",
    "points",
    "created_at",
)


def resident_action_list(*, resident, filters: dict | None = None) -> QuerySet[Action]:
    filters = filters or {}
    # The version's number as a joined column: no MethodologyVersion model per row (half a page's models).
    qs = (
        Action.objects.filter(resident=resident)
        .only(*LIST_COLUMNS)
        .annotate(methodology_version_number=F("methodology_version__number"))
    )
    if filters.get("status"):
        qs = qs.filter(status=filters["status"])
    if filters.get("methodology"):
        qs = qs.filter(methodology=filters["methodology"])
    if filters.get("date_from"):
        qs = qs.filter(occurred_at__gte=filters["date_from"])
    if filters.get("date_to"):
        qs = qs.filter(occurred_at__lt=filters["date_to"])
    return qs


# The list page in one prepared statement (PostgreSQL): `resident_action_list`'s columns and filters from a keyset
# bound, rows written out as they come. The filters present pick the statement text (each prepared once).
LIST_SQL = """
SELECT a.id, a.methodology, v.number, a.source, a.occurred_at, a.status, a.reason, a.grams, a.points, a.created_at
FROM actions_action a LEFT JOIN methodologies_methodologyversion v ON v.id = a.methodology_version_id
WHERE a.resident_id = %(resident)s AND a.id {op} %(bound)s{filters}
ORDER BY a.id {direction} LIMIT %(limit)s OFFSET %(offset)s
"""
LIST_FILTERS = {
    "status": " AND a.status = %(status)s",
    "methodology": " AND a.methodology = %(methodology)s",
    "date_from": " AND a.occurred_at >= %(date_from)s",
    "date_to": " AND a.occurred_at < %(date_to)s",
}


def resident_action_rows(*, resident_id: int, filters: dict | None = None, write) -> KeysetRows:
    """A resident's actions for the cursor pagination (`-id`), filtered as `resident_action_list`, each written by
    `write(id, methodology, version_number, source, occurred_at, status, reason, grams, points, created_at)`.
    PostgreSQL: one prepared statement (LIST_SQL); elsewhere the ORM queryset, also the tests' reference."""
    present = {name: value for name, value in (filters or {}).items() if value and name in LIST_FILTERS}

    def fetch(*, descending: bool, bound: int, offset: int, limit: int) -> list:
        if connection.vendor != "postgresql":
            qs = resident_action_list(resident=resident_id, filters=present).order_by("-id" if descending else "id")
            qs = qs.filter(id__lt=bound) if descending else qs.filter(id__gt=bound)
            return [
                write(
                    a.id, a.methodology, a.methodology_version_number, a.source, a.occurred_at,
                    a.status, a.reason, a.grams, a.points, a.created_at,
                )
                for a in qs[offset : offset + limit]
            ]  # fmt: skip
        sql = LIST_SQL.format(
            op="<" if descending else ">",
            direction="DESC" if descending else "ASC",
            filters="".join(LIST_FILTERS[name] for name in LIST_FILTERS if name in present),
        )
        params = {"resident": resident_id, "bound": bound, "limit": limit, "offset": offset, **present}
        with prepared_cursor() as cursor:
            cursor.execute(sql, params)
            return [write(*row) for row in cursor.fetchall()]

    return KeysetRows(fetch)


def resident_action_get(*, resident, action_id: int) -> Action:
    """404 (DoesNotExist) for anyone else's action."""
    return (
        Action.objects.select_related("methodology_version__methodology", "points_policy_version")
        .prefetch_related(Prefetch("history", queryset=ActionStatusChange.objects.order_by("at", "id")))
        .get(pk=action_id, resident=resident)
    )


def partner_action_get(*, partner, external_id: str) -> Action:
    return Action.objects.get(partner=partner, external_id=external_id)


def review_queue() -> QuerySet[Action]:
    return (
        Action.objects.filter(needs_review=True)  # = flagged or pending_review (a CHECK), by a partial index
        .select_related("resident", "methodology_version__methodology", "points_policy_version")
        .order_by("id")
    )


def action_breakdown(action: Action) -> dict:
    """The full, human-readable calculation of an action, recomputed from its methodology version, inputs,
    evidence share and credited quantity; the stored compact breakdown when it cannot be recomputed."""
    from backend.methodologies import engine

    if action.methodology_version is None or action.status in (Action.Status.REJECTED, Action.Status.UNCLAIMED):
        return action.breakdown
    try:
        result = engine.calculate(
            action.methodology_version,
            action.data,
            evidence_share=action.evidence_share,
            credited_quantity=action.credited_quantity,
        )
    except Exception:  # data written by an older engine: show what was stored at the time
        return action.breakdown
    return result.breakdown
