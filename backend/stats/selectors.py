"""Every read the statistics API and dashboard need.

Public figures are built from MonthlyStat cells (month x district x methodology). A cell that describes
fewer than MIN_RESIDENTS residents is *suppressed*: it is never shown and never enters any published total.
Every published figure is therefore a sum of published cells, so no combination of filters, and no difference
between two answers, says anything about a suppressed cell. Residual risk (documented in the README): counts of
distinct residents over several cells are not additive, so differencing two counts can reveal how many
residents were active in one published cell but not in another (a number, never anyone's grams)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_DOWN, Decimal

from django.db.models import Count, Exists, OuterRef, Q, QuerySet, Sum

from backend.stats import reference
from backend.stats.aggregation import ACTIVE, month_of, resident_period_grams
from backend.stats.leaderboards import board_around, current_start, period_end
from backend.stats.models import ALL, DailyStat, MonthlyStat, ResidentDay, StatsWatermark

MIN_RESIDENTS = 10
FIGURES = ("actions", "grams", "points_issued", "points_redeemed", "quantity")


def as_of():
    """Until when the statistics include the ledger (the aggregation watermark), or None before the first run."""
    return StatsWatermark.objects.filter(id=1).values_list("ledger_created_before", flat=True).first()


def add_months(month: date, n: int) -> date:
    y, m = divmod(month.year * 12 + month.month - 1 + n, 12)
    return date(y, m + 1, 1)


def months_between(start: date, end: date) -> int:
    return (end.year - start.year) * 12 + end.month - start.month + 1


def per_capita(grams: int | None, population: int) -> Decimal | None:
    """Grams per census resident, rounded down to a milligram (the one rounding of per-capita figures)."""
    if grams is None:
        return None
    return (Decimal(grams) / Decimal(population)).quantize(Decimal("0.001"), rounding=ROUND_DOWN)


def change_pct(current: int | None, previous: int | None) -> Decimal | None:
    if current is None or not previous:
        return None
    return (Decimal(current - previous) * 100 / Decimal(previous)).quantize(Decimal("0.1"), rounding=ROUND_DOWN)


@dataclass
class Scope:
    start: date  # first month
    end: date  # last month
    district: str | None = None
    methodology: str | None = None

    def cells(self, start: date | None = None, end: date | None = None) -> QuerySet[MonthlyStat]:
        qs = MonthlyStat.objects.filter(month__gte=start or self.start, month__lte=end or self.end)
        if self.district:
            qs = qs.filter(district=self.district)
        if self.methodology:
            qs = qs.filter(Q(methodology=self.methodology) | Q(methodology=ALL))
        return qs


def _group(cells: list[MonthlyStat], residents: int | None = None, with_residents: bool = True) -> dict:
    published = [c for c in cells if c.residents >= MIN_RESIDENTS]
    out: dict = {"suppressed": not published, "partial": len(published) != len(cells)}
    for name in FIGURES:
        out[name] = sum((getattr(c, name) for c in published), start=0) if published else None
    if with_residents:
        out["active_residents"] = residents if published else None
    return out


def _published_rows(scope: Scope) -> QuerySet[ResidentDay]:
    """ResidentDay rows (credited, methodology rows) inside published cells of the scope."""
    published = MonthlyStat.objects.filter(
        month=OuterRef("month"),
        district=OuterRef("district"),
        methodology=OuterRef("methodology"),
        residents__gte=MIN_RESIDENTS,
    )
    rows = ResidentDay.objects.filter(ACTIVE, month__gte=scope.start, month__lte=scope.end).exclude(methodology=ALL)
    if scope.district:
        rows = rows.filter(district=scope.district)
    if scope.methodology:
        rows = rows.filter(methodology=scope.methodology)
    return rows.filter(Exists(published))


def public_stats(scope: Scope) -> dict:
    """The public statistics of the city (district None) or one district over whole months (6 queries)."""
    length = months_between(scope.start, scope.end)
    prev_start, prev_end = add_months(scope.start, -length), add_months(scope.start, -1)
    all_cells = list(scope.cells(prev_start, scope.end))
    cells = [c for c in all_cells if c.month >= scope.start]
    previous = [c for c in all_cells if c.month < scope.start]
    rows = _published_rows(scope)
    total_residents = rows.aggregate(n=Count("resident", distinct=True))["n"]
    by_method_residents = dict(rows.values_list("methodology").annotate(n=Count("resident", distinct=True)))
    by_month_residents = dict(rows.values_list("month").annotate(n=Count("resident", distinct=True)))

    method_cells = [c for c in cells if c.methodology != ALL]
    redemption_cells = [c for c in cells if c.methodology == ALL]
    totals = _group(method_cells, total_residents)
    redeemed = _group(redemption_cells, with_residents=False)
    totals["points_redeemed"] = redeemed["points_redeemed"]
    totals.pop("quantity")  # units differ between methodologies
    population = reference.POPULATION_2020[scope.district] if scope.district else reference.CITY_POPULATION_2020

    by_methodology = []
    for methodology in sorted({c.methodology for c in method_cells}):
        entry = _group([c for c in method_cells if c.methodology == methodology], by_method_residents.get(methodology))
        entry.pop("points_redeemed")
        by_methodology.append({"methodology": methodology, **entry})
    by_month = []
    month = scope.start
    while month <= scope.end:
        entry = _group([c for c in method_cells if c.month == month], by_month_residents.get(month))
        entry.pop("quantity")
        entry["points_redeemed"] = _group([c for c in redemption_cells if c.month == month], None, False)[
            "points_redeemed"
        ]
        by_month.append({"month": month.strftime("%Y-%m"), **entry})
        month = add_months(month, 1)
    prev = _group([c for c in previous if c.methodology != ALL], with_residents=False)
    return {
        "district": scope.district,
        "methodology": scope.methodology,
        "from_month": scope.start.strftime("%Y-%m"),
        "to_month": scope.end.strftime("%Y-%m"),
        "as_of": as_of(),
        "min_residents": MIN_RESIDENTS,
        "population": population,
        "population_source": reference.CENSUS_SOURCE,
        "totals": totals,
        "per_capita_grams": {
            "suppressed": totals["suppressed"],
            "value": per_capita(totals["grams"], population),
        },
        "by_methodology": by_methodology,
        "by_month": by_month,
        "trend": {
            "previous_from_month": prev_start.strftime("%Y-%m"),
            "previous_to_month": prev_end.strftime("%Y-%m"),
            "suppressed": prev["suppressed"] or totals["suppressed"],
            "previous_grams": prev["grams"],
            "grams_change_pct": change_pct(totals["grams"], prev["grams"]),
        },
    }


def admin_stats(*, start: date, end: date, district=None, methodology=None, source=None) -> QuerySet[DailyStat]:
    """Daily aggregates for reviewers (nothing suppressed), in a stable order for pages and exports."""
    qs = DailyStat.objects.filter(day__gte=start, day__lte=end)
    if district is not None:
        qs = qs.filter(district=district)
    if methodology is not None:
        qs = qs.filter(methodology=methodology)
    if source is not None:
        qs = qs.filter(source=source)
    return qs.order_by("day", "district", "methodology", "source", "id")


def district_ranking(*, start: date | None = None) -> list[dict]:
    """This Asia/Shanghai week's districts by grams per census resident (2 queries). A district with fewer
    than MIN_RESIDENTS active residents this week is listed as suppressed, unranked, at the end."""
    from backend.accounts.models import District

    start = start or current_start("week")
    end = period_end("week", start)
    rows = ResidentDay.objects.filter(ACTIVE, day__gte=start, day__lte=end).exclude(methodology=ALL)
    figures = {
        r["district"]: r
        for r in rows.values("district").annotate(grams=Sum("grams"), residents=Count("resident", distinct=True))
    }
    out = []
    for d in District.objects.order_by("code"):
        f = figures.get(d.code, {"grams": 0, "residents": 0})
        shown = f["residents"] >= MIN_RESIDENTS
        out.append(
            {
                "code": d.code,
                "name_zh": d.name_zh,
                "name_en": d.name_en,
                "suppressed": not shown,
                "active_residents": f["residents"] if shown else None,
                "grams": f["grams"] if shown else None,
                "per_capita_grams": per_capita(f["grams"], reference.POPULATION_2020[d.code]) if shown else None,
                "population": reference.POPULATION_2020[d.code],
            }
        )
    ranked = sorted((o for o in out if not o["suppressed"]), key=lambda o: (-o["per_capita_grams"], o["code"]))
    for i, o in enumerate(ranked):
        o["rank"] = i + 1
    rest = [dict(o, rank=None) for o in out if o["suppressed"]]
    return ranked + rest


def plan_panel(*, year: int) -> dict:
    """The plan's targets beside what the platform measured this year (published cells only; 2 queries)."""
    from backend.accounts.models import District

    start, end = date(year, 1, 1), date(year, 12, 1)
    cells = [c for c in MonthlyStat.objects.filter(month__gte=start, month__lte=end) if c.residents >= MIN_RESIDENTS]
    modes = reference.PLAN_METHODOLOGIES["green_travel"]
    travel: dict[tuple[str, str], dict] = {}
    for c in cells:
        if c.methodology in modes:
            t = travel.setdefault((c.district, c.methodology), {"trips": 0, "quantity": Decimal(0), "grams": 0})
            t["trips"] += c.actions
            t["quantity"] += c.quantity
            t["grams"] += c.grams
    grams_by_district: dict[str, int] = {}
    for c in cells:
        if c.methodology != ALL:
            grams_by_district[c.district] = grams_by_district.get(c.district, 0) + c.grams
    districts = []
    for d in District.objects.order_by("code"):
        grams = grams_by_district.get(d.code)
        districts.append(
            {
                "code": d.code,
                "name_zh": d.name_zh,
                "co2_intensity_target_pct": d.co2_intensity_target_pct,
                "platform_grams": grams,
                "platform_per_capita_grams": per_capita(grams, reference.POPULATION_2020[d.code]),
            }
        )
    return {
        "year": year,
        "label": reference.PLAN_LABEL,
        "plan_source": reference.PLAN_SOURCE,
        "targets": reference.PLAN_TARGETS,
        "green_travel": [
            {
                "district": district,
                "methodology": methodology,
                "trips": t["trips"],
                "kilometres": t["quantity"] if methodology != "walk_steps" else None,
                "grams": t["grams"],
            }
            for (district, methodology), t in sorted(travel.items())
        ],
        "districts": districts,
        "min_residents": MIN_RESIDENTS,
        "as_of": as_of(),
    }


def equivalent(grams: int, per_unit: Decimal) -> Decimal:
    """Grams CO2e expressed in another unit, rounded down to one decimal (the one rounding of equivalents)."""
    return (Decimal(grams) / per_unit).quantize(Decimal("0.1"), rounding=ROUND_DOWN)


def me_summary(*, user) -> dict:
    """A resident's own month and year (Asia/Shanghai) with equivalents and district rank (2 queries)."""
    from backend.stats.leaderboards import now_shanghai

    today = now_shanghai().date()
    month_start, year_start = month_of(today), date(today.year, 1, 1)
    sums = resident_period_grams(
        resident_id=user.id, periods={"year": (year_start, today), "month": (month_start, today)}
    )
    year_g, month_g = sums["year"], sums["month"]
    rank = None
    if user.district_id:
        mine = [s for s in board_around(period="month", scope=user.district_id, user_id=user.id, neighbours=0)]
        rank = mine[0].rank if mine else None

    def equivalents(grams: int) -> dict:
        return {
            "km_not_driven": equivalent(grams, reference.CAR_G_PER_KM),
            "trees_yearly_uptake": equivalent(grams, reference.TREE_G_PER_YEAR),
        }

    return {
        "month": {"from": month_start, "grams": month_g, "equivalents": equivalents(month_g)},
        "year": {"from": year_start, "grams": year_g, "equivalents": equivalents(year_g)},
        "factors": [
            {"equivalent": "km_not_driven", "grams_per_unit": reference.CAR_G_PER_KM, "source": reference.CAR_SOURCE},
            {
                "equivalent": "trees_yearly_uptake",
                "grams_per_unit": reference.TREE_G_PER_YEAR,
                "source": reference.TREE_SOURCE,
            },
        ],
        "district": user.district_id,
        "district_rank_this_month": rank,
        "as_of": as_of(),
    }


def dashboard_series(*, start: date, end: date) -> dict:
    """What the admin dashboard draws (2 queries over DailyStat, 1 over MonthlyStat)."""
    base = DailyStat.objects.filter(day__gte=start, day__lte=end)
    by_method: dict[str, dict[date, int]] = {}
    for r in base.exclude(methodology=ALL).values("day", "methodology").annotate(g=Sum("grams")).order_by("day"):
        by_method.setdefault(r["methodology"], {})[r["day"]] = r["g"]
    # Districts side by side over the whole months of the range, from the monthly cells (a few hundred rows).
    months = MonthlyStat.objects.filter(month__gte=month_of(start), month__lte=end).exclude(methodology=ALL)
    districts = {r["district"]: r["g"] for r in months.values("district").annotate(g=Sum("grams")).order_by("district")}
    active = {
        r["day"]: r["n"]
        for r in base.filter(methodology=ALL, source=ALL).values("day").annotate(n=Sum("active_residents"))
    }
    days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
    return {"days": days, "grams_by_methodology": by_method, "grams_by_district": districts, "active": active}
