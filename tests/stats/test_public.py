"""Public statistics: figures, per capita, trend, and small-cell suppression that filters cannot bypass."""

from datetime import timedelta

import pytest
from django.utils import timezone

from backend.core.days import SHANGHAI
from backend.stats.aggregation import stats_aggregate
from backend.stats.reference import CITY_POPULATION_2020, POPULATION_2020
from tests.stats.helpers import credit

pytestmark = pytest.mark.django_db


@pytest.fixture
def town(make_resident):
    """12 residents riding buses in Shinan this month, and one lone walker in Shibei."""
    now = timezone.now()
    crowd = [make_resident(district="370202") for _ in range(12)]
    for i, r in enumerate(crowd):
        credit(r, at=now - timedelta(minutes=5), grams=100 + i, methodology="bus_ride", run_hooks=False)
    loner = make_resident(district="370203")
    credit(loner, at=now - timedelta(minutes=5), grams=4321, methodology="walk_steps", run_hooks=False)
    stats_aggregate()
    return {"crowd_grams": sum(100 + i for i in range(12)), "loner": loner}


def month() -> str:
    return timezone.now().astimezone(SHANGHAI).strftime("%Y-%m")


def test_city_figures_count_only_published_cells(api, town):
    body = api.get("/api/v1/stats/city").json()
    assert body["totals"]["grams"] == town["crowd_grams"]
    assert body["totals"]["active_residents"] == 12
    assert body["totals"]["partial"] is True  # the lone walker's cell was left out
    methods = {m["methodology"]: m for m in body["by_methodology"]}
    assert methods["bus_ride"]["grams"] == town["crowd_grams"]
    assert methods["walk_steps"] == {
        "methodology": "walk_steps",
        "suppressed": True,
        "partial": True,
        "active_residents": None,
        "actions": None,
        "grams": None,
        "points_issued": None,
        "quantity": None,
    }
    this_month = next(m for m in body["by_month"] if m["month"] == month())
    assert this_month["grams"] == town["crowd_grams"]
    assert body["population"] == CITY_POPULATION_2020
    assert body["per_capita_grams"]["value"] == "0.000"  # 1,266 g over ten million people
    assert len(body["by_month"]) == 12


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/stats/districts/370203",
        "/api/v1/stats/districts/370203?methodology=walk_steps",
        "/api/v1/stats/districts/370203?from_month={m}&to_month={m}",
        "/api/v1/stats/districts/370203?from_month={m}&to_month={m}&methodology=walk_steps",
        "/api/v1/stats/city?methodology=walk_steps",
        "/api/v1/stats/city?from_month={m}&to_month={m}&methodology=walk_steps",
    ],
)
def test_narrowing_filters_never_singles_out_one_resident(api, town, url):
    body = api.get(url.format(m=month())).json()
    text = str(body)
    assert "4321" not in text  # the loner's grams appear nowhere
    assert body["totals"]["suppressed"] is True
    assert body["totals"]["grams"] is None and body["totals"]["active_residents"] is None
    assert body["per_capita_grams"] == {"suppressed": True, "value": None}
    assert all(m["grams"] is None for m in body["by_month"])


def test_differencing_two_answers_reveals_nothing(api, town):
    m = month()
    city = api.get(f"/api/v1/stats/city?from_month={m}&to_month={m}").json()
    districts = [
        api.get(f"/api/v1/stats/districts/{code}?from_month={m}&to_month={m}").json() for code in POPULATION_2020
    ]
    published = sum(d["totals"]["grams"] or 0 for d in districts)
    # the city total minus every district's total is zero: the suppressed cell is in neither
    assert city["totals"]["grams"] - published == 0
    city_methods = sum(x["grams"] or 0 for x in city["by_methodology"])
    assert city["totals"]["grams"] - city_methods == 0
    months = sum(x["grams"] or 0 for x in city["by_month"])
    assert city["totals"]["grams"] - months == 0


def test_district_figures_per_capita_and_trend(api, make_resident):
    now = timezone.now()
    residents = [make_resident(district="370202") for _ in range(10)]
    for r in residents:
        credit(r, at=now - timedelta(minutes=1), grams=48_664, run_hooks=False)
    stats_aggregate()
    body = api.get("/api/v1/stats/districts/370202").json()
    assert body["totals"]["grams"] == 486_640
    assert body["totals"]["suppressed"] is False and body["totals"]["partial"] is False
    assert body["per_capita_grams"]["value"] == "0.999"  # 486,640 / 486,643, rounded down
    assert body["trend"]["previous_grams"] is None and body["trend"]["suppressed"] is True
    assert body["population_source"].startswith("青岛市第七次全国人口普查公报")


@pytest.mark.parametrize(
    ("query", "attr"),
    [
        ("from_month=2026-13", "from_month"),
        ("from_month=0001-01&to_month=0001-01", "from_month"),
        ("to_month=9999-12", "to_month"),
        ("from_month=２０２６-01", "from_month"),
        ("to_month=" + "9" * 5000, "to_month"),
        ("from_month=2020-01&to_month=2026-01", "from_month"),
        ("from_month=2026-05&to_month=2026-01", "from_month"),
        ("methodology=../../etc", "methodology"),
    ],
)
def test_bad_filters_are_400(api, query, attr):
    response = api.get(f"/api/v1/stats/city?{query}")
    assert response.status_code == 400
    assert response.json()["errors"][0]["attr"] == attr


def test_unknown_district_is_404(api, reference_data):
    assert api.get("/api/v1/stats/districts/999999").status_code == 404
    assert api.get("/api/v1/stats/districts/%27%3B--").status_code == 404


def test_plan_panel_labels_the_platform_share(api, town):
    body = api.get("/api/v1/stats/plan").json()
    assert "not the city's official statistic" in body["label"]
    travel = {(t["district"], t["methodology"]): t for t in body["green_travel"]}
    assert travel[("370202", "bus_ride")]["trips"] == 12
    assert travel[("370202", "bus_ride")]["kilometres"] == "18.000000"
    assert ("370203", "walk_steps") not in travel  # suppressed
    shinan = next(d for d in body["districts"] if d["code"] == "370202")
    assert shinan["co2_intensity_target_pct"] == "20.5"
    assert shinan["platform_grams"] == town["crowd_grams"]


def test_public_stats_query_counts(api, town, django_assert_num_queries):
    with django_assert_num_queries(5):  # cells, 3 distinct counts, as_of
        assert api.get("/api/v1/stats/city").status_code == 200
    with django_assert_num_queries(0):  # cached
        assert api.get("/api/v1/stats/city").status_code == 200
    with django_assert_num_queries(5):
        assert api.get("/api/v1/stats/districts/370202?methodology=bus_ride").status_code == 200
    with django_assert_num_queries(3):  # cells, districts, as_of
        assert api.get("/api/v1/stats/plan").status_code == 200
    with django_assert_num_queries(2):  # week's figures, districts
        assert api.get("/api/v1/leaderboards/districts").status_code == 200


def test_district_ranking_per_capita_with_suppression(api, make_resident):
    now = timezone.now()
    for code, n, grams in [("370202", 10, 1000), ("370211", 11, 1000), ("370203", 3, 99999)]:
        for _ in range(n):
            credit(make_resident(district=code), at=now - timedelta(minutes=1), grams=grams, run_hooks=False)
    stats_aggregate()
    rows = api.get("/api/v1/leaderboards/districts").json()["districts"]
    assert [r["code"] for r in rows[:2]] == ["370202", "370211"]  # 10,000 g / 486,643 beats 11,000 / 1,903,595
    assert rows[0]["rank"] == 1 and rows[0]["per_capita_grams"] == "0.020"
    shibei = next(r for r in rows if r["code"] == "370203")
    assert shibei["suppressed"] is True and shibei["grams"] is None and shibei["rank"] is None
