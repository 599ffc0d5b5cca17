"""Impact preview of a methodology version: what the credited actions of a window would have earned under a
candidate version, against what they did earn. It lives downstream of methodologies (pure pricing), actions and
accounts: it reads credited actions and their residents' districts, and prices them with the engine.

On PostgreSQL the per-action grams are computed and aggregated in SQL (every formula type is linear: quantity x
factor, see formulas.sql_net), in id-range chunks so progress can be reported; elsewhere, and as the reference
the tests compare against, the Python engine prices each action.

Both sides of the comparison are after caps: each action is priced on the quantity that fit under its daily cap
when it was credited (`credited_quantity` of `quantity`), so an unchanged draft shows zero change."""

from collections import defaultdict
from collections.abc import Callable
from datetime import timedelta

from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from rest_framework import exceptions

from backend.actions.models import Action
from backend.core.days import SHANGHAI
from backend.core.errors import ApplicationError, ConflictError
from backend.methodologies.engine import ActionDataInvalid, calculate, cap_quantity, parameter_values, parse_action_data
from backend.methodologies.formulas import FORMULA_TYPES
from backend.methodologies.models import ImpactPreview, MethodologyVersion, VersionStatus

CHUNK_IDS = 200_000
LARGEST_CHANGES = 10
ASSUMPTIONS = [
    "Daily caps as they were: each action is priced on the quantity that fit under its cap when credited.",
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
        "id",
        "resident_id",
        "resident__district_id",
        "occurred_at",
        "data",
        "evidence_share",
        "grams",
        "quantity",
        "credited_quantity",
    )
    done = 0
    for _id, resident_id, district, occurred_at, data, share, grams, quantity, credited in rows.iterator(
        chunk_size=5000
    ):
        try:
            parsed = parse_action_data(methodology, data)
            credited_now = _credited(version, parsed, quantity, credited)
            new = calculate(version, parsed, evidence_share=share, credited_quantity=credited_now).grams
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


def _credited(version, parsed: dict, quantity, credited):
    """The credited quantity to price with: the share of the action that fit under its cap when credited (None:
    all of it). Scaled to the candidate's own quantity, in case the candidate counts its cap in another unit."""
    if not quantity or credited >= quantity:
        return None
    new_quantity = cap_quantity(version, parsed)
    return credited if new_quantity == quantity else new_quantity * credited / quantity


def _new_grams_sql(version) -> tuple[str, list]:
    net_sql, args = FORMULA_TYPES[version.methodology.formula_type].sql_net(parameter_values(version), "a.data")
    # One floor per action, never negative; a missing key gives NULL, which GREATEST turns into 0 like the engine.
    # A partly capped action keeps its credited share (multiplications first: numeric products are exact).
    return (
        f"GREATEST(0, FLOOR(CASE WHEN a.quantity > 0 AND a.credited_quantity < a.quantity"
        f" THEN ({net_sql}) * a.evidence_share * a.credited_quantity / a.quantity"
        f" ELSE ({net_sql}) * a.evidence_share END))::bigint",
        [*args, *args],
    )


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


# --- request / run ----------------------------------------------------------------------------------------

DEFAULT_PREVIEW_DAYS = 30


@transaction.atomic
def impact_preview_request(*, version_id: int, actor, days: int = DEFAULT_PREVIEW_DAYS) -> ImpactPreview:
    """Queue an impact preview of a draft or in-review version over the last `days` days of credited actions."""
    from backend.actions.tasks import impact_preview_run_task
    from backend.methodologies.services import version_content_check

    version = MethodologyVersion.objects.filter(pk=version_id).first()
    if version is None:
        raise exceptions.NotFound()
    if version.status not in (VersionStatus.DRAFT, VersionStatus.IN_REVIEW):
        raise ConflictError(_("Previews are for drafts and versions in review."), code="version_not_previewable")
    if not 1 <= days <= 366:
        raise ApplicationError(_("days must be between 1 and 366."), code="invalid_days", attr="days")
    try:
        version_content_check(version)
    except exceptions.ValidationError:
        raise ApplicationError(_("Fix the draft's parameters before previewing."), code="version_invalid")
    end = timezone.now()
    preview = ImpactPreview.objects.create(
        version=version, days=days, window_start=end - timedelta(days=days), window_end=end, requested_by=actor
    )
    transaction.on_commit(lambda: impact_preview_run_task.delay(preview_id=preview.id))
    return preview


def impact_preview_run(*, preview_id: int) -> ImpactPreview:
    """Compute and store a preview. Not one transaction on purpose: progress (done/total) is committed as it
    goes so the API can show it. Safe to run twice: a finished preview is returned as is, an interrupted one
    is recomputed from scratch (the result is a pure function of the window's actions)."""
    preview = ImpactPreview.objects.select_related("version__methodology").get(pk=preview_id)
    if preview.status == ImpactPreview.Status.DONE:
        return preview
    ImpactPreview.objects.filter(pk=preview_id).update(
        status=ImpactPreview.Status.RUNNING, started_at=timezone.now(), progress_done=0, error=""
    )

    def progress(done: int, total: int) -> None:
        ImpactPreview.objects.filter(pk=preview_id).update(progress_done=done, progress_total=total)

    try:
        result = compute_impact(preview.version, preview.window_start, preview.window_end, progress=progress)
    except Exception as error:
        ImpactPreview.objects.filter(pk=preview_id).update(
            status=ImpactPreview.Status.FAILED, error=str(error)[:2000], finished_at=timezone.now()
        )
        raise
    ImpactPreview.objects.filter(pk=preview_id).update(
        status=ImpactPreview.Status.DONE, result=result, finished_at=timezone.now()
    )
    preview.refresh_from_db()
    return preview
