"""The admin dashboard page: grams per day by methodology, districts side by side, active residents per day,
and the plan panel, drawn server-side as SVG from DailyStat (a year is ~4,000 rows: a few milliseconds)."""

from datetime import timedelta

from django.contrib.admin.views.decorators import staff_member_required
from django.shortcuts import render
from django.utils.safestring import mark_safe
from django.utils.translation import gettext

from backend.stats import charts, selectors
from backend.stats.leaderboards import now_shanghai


def dashboard_context(*, days: int = 365) -> dict:
    from backend.accounts.models import District

    end = now_shanghai().date()
    start = end - timedelta(days=days - 1)
    data = selectors.dashboard_series(start=start, end=end)
    labels = [d.strftime("%m-%d") for d in data["days"]]
    methods = {m: [per_day.get(d, 0) for d in data["days"]] for m, per_day in data["grams_by_methodology"].items()}
    names = dict(District.objects.values_list("code", "name_zh"))
    bars = [(names.get(code, code or "—"), grams) for code, grams in data["grams_by_district"].items()]
    active = {gettext("active residents"): [data["active"].get(d, 0) for d in data["days"]]}
    district_title = gettext("Grams CO2e by district since %(month)s") % {"month": f"{start:%Y-%m}"}
    return {
        "start": start,
        "end": end,
        "grams_chart": mark_safe(charts.line_chart(gettext("Grams CO2e per day by methodology"), labels, methods)),  # noqa: S308 (escaped in charts)
        "district_chart": mark_safe(charts.bar_chart(district_title, bars)),  # noqa: S308
        "active_chart": mark_safe(charts.line_chart(gettext("Active residents per day"), labels, active)),  # noqa: S308
        "plan": selectors.plan_panel(year=end.year),
        "as_of": selectors.as_of(),
    }


@staff_member_required
def dashboard_view(request):
    context = {**dashboard_context(), "title": gettext("Statistics dashboard"), "site_header": "青碳行"}
    return render(request, "stats/dashboard.html", context)
