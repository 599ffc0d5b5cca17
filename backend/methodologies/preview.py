"""Impact preview: what the credited actions of a window would have earned under a candidate version, against
what they did earn. On PostgreSQL the per-action grams are computed and aggregated in SQL (every formula type
is linear: quantity x factor, see formulas.sql_net), in id-range chunks so progress can be reported; elsewhere,
and as the reference the tests compare against, the Python engine prices each action."""

from collections import defaultdict
from collections.abc import Callable
from zoneinfo import ZoneInfo

from django.db import connection

from backend.actions.models import Action
from backend.methodologies.engine import ActionDataInvalid, calculate, parameter_values, parse_action_data
from backend.methodologies.formulas import FORMULA_TYPES

SHANGHAI = ZoneInfo("Asia/Shanghai")
CHUNK_IDS = 200_000
LARGEST_CHANGES = 10
ASSUMPTIONS = [
    "Daily caps are ignored: each action is priced in full under the candidate version.",
    "Each action's evidence share is applied; grams are rounded down per action.",
    "Validity rules are not re-applied: the actions were already verified.",
    "Current grams are what each action was credited (after caps).",
]


def _queryset(version, start, end):
    return Action.objects.filter(
        status=Action.Status.CREDITED, methodology=version.methodology.code, occurred_at__gte=start, occurred_at__lt=end
    )


def compute_impact(version, start, end, *, progress: Callable[[int, int], None] | None = None, engine: str = "auto"):
    """The preview result (JSON-serialisable). engine: "auto" (SQL on PostgreSQL), "sql" or "python"."""
    progress = progress or (lambda done, total: None)
    if engine == "auto":
        engine = "sql" if connection.vendor == "postgresql" else "python"
    qs = _queryset(version, start, end)
    total = qs.count()
    progress(0, total)
    if engine == "sql":
        groups, residents = _aggregate_sql(version, qs, start, end, total, progress)
    else:
        groups, residents = _aggregate_python(version, qs, total, progress)
    progress(total, total)
    return _result(version, start, end, engine, groups, residents)


def _blank():
    return {"actions": 0, "current_grams": 0, "preview_grams": 0}


def _aggregate_python(version, qs, total, progress):
    methodology = version.methodology
    groups: dict = defaultdict(_blank)  # (district, day) -> sums
    residents: dict = defaultdict(lambda: [None, 0, 0])  # resident -> [district, current, preview]
    rows = qs.values_list(
        "id", "resident_id", "resident__district_id", "occurred_at", "data", "evidence_share", "grams"
    )
    done = 0
    for _id, resident_id, district, occurred_at, data, share, grams in rows.iterator(chunk_size=5000):
        try:
            new = calculate(version, parse_action_data(methodology, data), evidence_share=share).grams
        except ActionDataInvalid:
            new = 0
        key = (district or "", occurred_at.astimezone(SHANGHAI).date().isoformat())
        group = groups[key]
        group["actions"] += 1
        group["current_grams"] += grams
        group["preview_grams"] += new
        if resident_id is not None:
            entry = residents[resident_id]
            entry[0], entry[1], entry[2] = district, entry[1] + grams, entry[2] + new
        done += 1
        if done % 50_000 == 0:
            progress(done, total)
    changed = [
        {"resident_id": rid, "district": d, "current_grams": cur, "preview_grams": new}
        for rid, (d, cur, new) in residents.items()
        if cur != new
    ]
    changed.sort(key=lambda r: (-abs(r["preview_grams"] - r["current_grams"]), r["resident_id"]))
    return groups, {"affected": len(changed), "largest": changed[:LARGEST_CHANGES]}


def _new_grams_sql(version) -> tuple[str, list]:
    net_sql, args = FORMULA_TYPES[version.methodology.formula_type].sql_net(parameter_values(version))
    # One floor per action, never negative; a missing key gives NULL, which GREATEST turns into 0 like the engine.
    return f"GREATEST(0, FLOOR(({net_sql}) * a.evidence_share))::bigint", list(args)


def _aggregate_sql(version, qs, start, end, total, progress):
    new_sql, new_args = _new_grams_sql(version)
    where = "a.status = %s AND a.methodology = %s AND a.occurred_at >= %s AND a.occurred_at < %s"
    where_args = [Action.Status.CREDITED, version.methodology.code, start, end]
    groups: dict = defaultdict(_blank)
    bounds = qs.order_by().values_list("id", flat=True)
    low, high = bounds.order_by("id").first(), bounds.order_by("-id").first()
    done = 0
    with connection.cursor() as cursor:
        if low is not None:
            for chunk_start in range(low, high + 1, CHUNK_IDS):
                cursor.execute(
                    f"""
                    SELECT COALESCE(u.district_id, ''), (a.occurred_at AT TIME ZONE 'Asia/Shanghai')::date,
                           COUNT(*), COALESCE(SUM(a.grams), 0), COALESCE(SUM({new_sql}), 0)
                    FROM actions_action a LEFT JOIN accounts_user u ON u.id = a.resident_id
                    WHERE {where} AND a.id >= %s AND a.id < %s
                    GROUP BY 1, 2
                    """,  # noqa: S608 - only our own SQL fragments are interpolated; values are parameters
                    [*new_args, *where_args, chunk_start, chunk_start + CHUNK_IDS],
                )
                for district, day, count, current, new in cursor.fetchall():
                    group = groups[(district, day.isoformat())]
                    group["actions"] += count
                    group["current_grams"] += int(current)
                    group["preview_grams"] += int(new)
                    done += count
                progress(done, total)
        cursor.execute(
            f"""
            WITH per_resident AS (
                SELECT a.resident_id, u.district_id, SUM(a.grams) AS cur, SUM({new_sql}) AS new
                FROM actions_action a LEFT JOIN accounts_user u ON u.id = a.resident_id
                WHERE {where} AND a.resident_id IS NOT NULL
                GROUP BY 1, 2
            )
            SELECT COUNT(*) FILTER (WHERE cur <> new) OVER (), resident_id, district_id, cur, new
            FROM per_resident ORDER BY ABS(new - cur) DESC, resident_id LIMIT %s
            """,  # noqa: S608
            [*new_args, *where_args, LARGEST_CHANGES],
        )
        rows = cursor.fetchall()
    largest = [
        {"resident_id": rid, "district": d, "current_grams": int(cur), "preview_grams": int(new)}
        for _, rid, d, cur, new in rows
        if cur != new
    ]
    return groups, {"affected": rows[0][0] if rows else 0, "largest": largest}


def _with_delta(entry: dict) -> dict:
    return {**entry, "delta_grams": entry["preview_grams"] - entry["current_grams"]}


def _result(version, start, end, engine, groups, residents) -> dict:
    by_district: dict = defaultdict(_blank)
    by_day: dict = defaultdict(_blank)
    totals = _blank()
    for (district, day), sums in groups.items():
        for target in (by_district[district or "unknown"], by_day[day], totals):
            for key, value in sums.items():
                target[key] += value
    return {
        "methodology": version.methodology.code,
        "version": version.number,
        "window": {"start": start.isoformat(), "end": end.isoformat()},
        "engine": engine,
        "assumptions": ASSUMPTIONS,
        "totals": _with_delta(totals),
        "by_district": [_with_delta({"district": d, **s}) for d, s in sorted(by_district.items())],
        "by_day": [_with_delta({"day": d, **s}) for d, s in sorted(by_day.items())],
        "residents_affected": residents["affected"],
        "largest_changes": [_with_delta(r) for r in residents["largest"]],
    }
