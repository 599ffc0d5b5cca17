"""Reviewers' statistics with CSV/XLSX exports, the admin dashboard, /me/summary, erasure."""

import csv
import io
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from openpyxl import load_workbook

from backend.core.days import local_day as shanghai_day
from backend.stats.aggregation import stats_aggregate
from backend.stats.models import DailyStat
from tests.conftest import client_for
from tests.stats.helpers import credit

pytestmark = pytest.mark.django_db


@pytest.fixture
def history(make_resident):
    now = timezone.now()
    for i in range(3):
        for code in ("370202", "370211"):
            r = make_resident(district=code)
            credit(r, at=now - timedelta(days=i), grams=10 + i, methodology="metro_ride", source="partner")
            credit(r, at=now - timedelta(days=i), grams=5, methodology="walk_steps", source="self_report")
    stats_aggregate()


def _all_pages(client, url) -> list[dict]:
    rows = []
    while url:
        body = client.get(url).json()
        rows += body["results"]
        url = body["next"]
    return rows


def _as_text(rows: list[dict]) -> list[list[str]]:
    from backend.stats.exports import COLUMNS

    return [[str(r[c]) for c in COLUMNS] for r in rows]


def test_admin_stats_csv_and_xlsx_open_and_match_the_api(reviewer_client, history):
    api_rows = _all_pages(reviewer_client, "/api/v1/admin/stats?page_size=3")
    assert len(api_rows) == DailyStat.objects.count() > 6
    response = reviewer_client.get("/api/v1/admin/stats?format=csv")
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"].startswith("text/csv")
    text = b"".join(response.streaming_content).decode("utf-8-sig")
    table = list(csv.reader(io.StringIO(text)))
    from backend.stats.exports import COLUMNS

    assert table[0] == COLUMNS
    assert table[1:] == _as_text(api_rows)
    response = reviewer_client.get("/api/v1/admin/stats?format=xlsx")
    assert response.status_code == 200 and response.streaming
    book = load_workbook(io.BytesIO(b"".join(response.streaming_content)), read_only=True)
    sheet = [[("" if v is None else str(v)) for v in row] for row in book.active.iter_rows(values_only=True)]
    assert sheet[0] == COLUMNS
    assert sheet[1:] == _as_text(api_rows)


def test_admin_stats_filters(reviewer_client, history):
    day = shanghai_day(timezone.now()).isoformat()
    rows = _all_pages(
        reviewer_client, f"/api/v1/admin/stats?date_from={day}&date_to={day}&district=370211&methodology=metro_ride"
    )
    assert [(r["grams"], r["source"], r["active_residents"]) for r in rows] == [(10, "partner", 1)]
    rows = _all_pages(reviewer_client, "/api/v1/admin/stats?source=self_report")
    assert {r["methodology"] for r in rows} == {"walk_steps"}
    rows = _all_pages(reviewer_client, "/api/v1/admin/stats?methodology=")
    assert sum(r["new_residents"] for r in rows) == 6


@pytest.mark.parametrize(
    "query",
    [
        "date_from=2026-13-01",
        "date_from=2026-02-01&date_to=2026-01-01",
        "date_from=2020-01-01&date_to=2026-01-01",
        "source=robot",
        "district=" + "9" * 100,
    ],
)
def test_admin_stats_bad_input(reviewer_client, reference_data, query):
    assert reviewer_client.get(f"/api/v1/admin/stats?{query}").status_code == 400
    response = reviewer_client.get(f"/api/v1/admin/stats?format=csv&{query}")
    assert response.status_code == 400 and response.json()["type"] == "validation_error"


def test_admin_stats_is_for_reviewers(api, resident_client, reference_data):
    assert api.get("/api/v1/admin/stats").status_code == 401
    assert resident_client.get("/api/v1/admin/stats").status_code == 403
    response = resident_client.get("/api/v1/admin/stats?format=csv")
    assert response.status_code == 403
    assert response["Content-Type"] == "application/json"
    assert response.json()["errors"][0]["code"] == "permission_denied"
    response = api.get("/api/v1/admin/stats?format=xlsx&date_from=nope")
    assert response.status_code == 401 and response.json()["type"] == "client_error"


def test_admin_stats_query_count(reviewer_client, history, django_assert_num_queries):
    with django_assert_num_queries(2):  # the reviewer, one page of rows
        body = reviewer_client.get("/api/v1/admin/stats?page_size=5").json()
    assert len(body["results"]) == 5
    with django_assert_num_queries(1):  # the rows (the reviewer's row is in the auth cache now)
        response = reviewer_client.get("/api/v1/admin/stats?format=csv")
        b"".join(response.streaming_content)


def test_dashboard_renders_a_year_of_daily_aggregates(make_user, reference_data, django_assert_max_num_queries):
    # Given a year of daily aggregates: 365 days x 10 districts x 4 methodologies (+ the all-methodology rows)
    from backend.accounts.models import District

    today = shanghai_day(timezone.now())
    codes = list(District.objects.values_list("code", flat=True))
    rows = []
    for i in range(365):
        day = today - timedelta(days=i)
        for code in codes:
            for m in ("bus_ride", "metro_ride", "bike_ride", "walk_steps"):
                rows.append(
                    DailyStat(
                        day=day,
                        district=code,
                        methodology=m,
                        source="partner",
                        grams=i * 10 + 1,
                        actions=3,
                        active_residents=2,
                    )
                )
            rows.append(DailyStat(day=day, district=code, active_residents=5, new_residents=1))
    DailyStat.objects.bulk_create(rows, batch_size=5000)
    admin = make_user(role="admin")
    from django.test import Client

    client = Client()
    client.force_login(admin)
    with django_assert_max_num_queries(12):
        response = client.get("/admin/stats/dashboard/")
    assert response.status_code == 200
    html = response.content.decode()
    assert html.count('role="img"') == 3 and "polyline" in html
    assert "not the city&#x27;s official statistic" in html
    assert "cdn" not in html.lower() and '<script src="http' not in html


def test_dashboard_needs_staff(client, resident):
    client.force_login(resident)
    assert client.get("/admin/stats/dashboard/").status_code == 302


def test_me_summary(make_resident, api):
    now = timezone.now()
    me = make_resident(district="370202")
    others = [make_resident(district="370202") for _ in range(2)]
    credit(me, at=now - timedelta(minutes=1), grams=17_800)
    credit(others[0], at=now - timedelta(minutes=1), grams=50_000)
    credit(others[1], at=now - timedelta(minutes=1), grams=100)
    body = client_for(me).get("/api/v1/me/summary").json()  # before any aggregation: the ledger tail counts
    assert body["month"]["grams"] == 17_800 and body["year"]["grams"] == 17_800
    assert body["month"]["equivalents"] == {"km_not_driven": "100.0", "trees_yearly_uptake": "0.8"}
    factors = {f["equivalent"]: f for f in body["factors"]}
    assert factors["km_not_driven"]["grams_per_unit"] == "178.000" and "DESNZ" in factors["km_not_driven"]["source"]
    assert "European Environment Agency" in factors["trees_yearly_uptake"]["source"]
    assert body["district"] == "370202" and body["district_rank_this_month"] == 2
    stats_aggregate()
    assert client_for(me).get("/api/v1/me/summary").json()["year"]["grams"] == 17_800  # not counted twice
    assert api.get("/api/v1/me/summary").status_code == 401


def test_me_summary_query_count(make_resident, django_assert_num_queries, settings):
    if not settings.REDIS_URL or connection.vendor != "postgresql":
        pytest.skip("counted against PostgreSQL and Redis (make test)")
    me = make_resident(district="370202")
    credit(me, at=timezone.now() - timedelta(minutes=1), grams=10)
    client = client_for(me)
    with django_assert_num_queries(8):
        assert client.get("/api/v1/me/summary").status_code == 200


def test_erasure_declaration_keeps_only_pseudonymous_sums(make_resident):
    from backend.stats.models import LeaderboardPreference, ResidentDay
    from backend.stats.services import leaderboard_listing_set, stats_erase_personal_data

    r = make_resident()
    credit(r, at=timezone.now(), grams=10)
    stats_aggregate()
    leaderboard_listing_set(user=r, listed=False)
    result = stats_erase_personal_data(user=r)
    assert result["preferences_deleted"] == 1
    assert not LeaderboardPreference.objects.filter(user=r).exists()
    assert ResidentDay.objects.filter(resident=r).exists()  # kept: sums keyed by id only
