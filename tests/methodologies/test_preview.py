"""Impact preview: totals, districts, days and residents against a hand calculation; SQL equals the engine."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from backend.actions import impact
from backend.actions.impact import compute_impact
from backend.actions.models import Action
from backend.methodologies import services
from backend.methodologies.models import ImpactPreview
from tests.conftest import client_for, requires_postgres

pytestmark = pytest.mark.django_db
BASE = "/api/v1/admin/methodologies"


def action(resident, code, data, grams, *, days_ago=1, share="1", status=Action.Status.CREDITED):
    # A self-report needs no partner record behind it: the simplest credited action to feed the preview.
    return Action.objects.create(
        source=Action.Source.SELF_REPORT,
        resident=resident,
        methodology=code,
        occurred_at=timezone.now() - timedelta(days=days_ago),
        data=data,
        status=status,
        evidence_share=Decimal(share),
        grams=grams,
    )


@pytest.fixture
def bus_world(make_user):
    r1 = make_user(district="370202")
    r2 = make_user(district="370203")
    r3 = make_user(district="370202")
    action(r1, "bus_ride", {"distance_km": "10", "duration_s": "1500"}, 300, days_ago=1)
    action(r1, "bus_ride", {"distance_km": "0.95"}, 14, days_ago=2, share="0.5")  # self-report
    action(r2, "bus_ride", {"distance_km": "3.3"}, 99, days_ago=2)
    action(r2, "bus_ride", {"distance_km": "20"}, 600, days_ago=40)  # outside the 30-day window
    action(r3, "bus_ride", {"distance_km": "20"}, 0, status=Action.Status.REJECTED)  # not verified
    action(r3, "metro_ride", {"distance_km": "8.2"}, 369)  # another methodology
    return r1, r2


def bus_candidate(author):
    draft = services.methodology_version_create_draft(code="bus_ride", author=author)
    parameters = {
        "baseline_g_per_pkm": {"value": "80", "unit": "g CO2e/pkm"},
        "project_g_per_pkm": {"value": "45", "unit": "g CO2e/pkm"},
    }
    return services.methodology_version_update_draft(version_id=draft.id, actor=author, parameters=parameters)


def test_preview_matches_hand_calculation(bus_world, reviewer, django_capture_on_commit_callbacks):
    r1, r2 = bus_world
    version = bus_candidate(reviewer)
    client = client_for(reviewer)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"{BASE}/bus_ride/versions/{version.number}/preview", {"days": 30}, format="json")
    assert response.status_code == 202 and response.json()["status"] == "queued"
    preview_id = response.json()["id"]
    body = client.get(f"{BASE}/bus_ride/versions/{version.number}/previews/{preview_id}").json()
    assert body["status"] == "done" and (body["progress_done"], body["progress_total"]) == (3, 3)
    result = body["result"]
    # Under 35 g/pkm: 10 km -> 350; 0.95 km x 0.5 -> floor(16.625) = 16; 3.3 km -> floor(115.5) = 115.
    assert result["totals"] == {"actions": 3, "current_grams": 413, "preview_grams": 481, "delta_grams": 68}
    assert result["by_district"] == [
        {"district": "370202", "actions": 2, "current_grams": 314, "preview_grams": 366, "delta_grams": 52},
        {"district": "370203", "actions": 1, "current_grams": 99, "preview_grams": 115, "delta_grams": 16},
    ]
    assert sum(day["preview_grams"] for day in result["by_day"]) == 481 and len(result["by_day"]) in (2, 3)
    assert result["residents_affected"] == 2
    assert [(c["resident_id"], c["delta_grams"]) for c in result["largest_changes"]] == [(r1.id, 52), (r2.id, 16)]
    assert any("Daily caps as they were" in a for a in result["assumptions"])


def test_preview_task_is_safe_to_run_twice(bus_world, reviewer):
    version = bus_candidate(reviewer)
    preview = impact.impact_preview_request(version_id=version.id, actor=reviewer)
    first = impact.impact_preview_run(preview_id=preview.id)
    second = impact.impact_preview_run(preview_id=preview.id)
    assert first.result == second.result and second.finished_at == first.finished_at
    assert ImpactPreview.objects.filter(version=version).count() == 1


def test_preview_only_for_drafts_and_reviews(reviewer_client, reference_data):
    response = reviewer_client.post(f"{BASE}/bus_ride/versions/1/preview", {}, format="json")
    assert response.status_code == 409 and response.json()["errors"][0]["code"] == "version_not_previewable"


@pytest.mark.skipif(connection.vendor != "postgresql", reason="compares the SQL path with the engine")
def test_sql_aggregation_equals_engine_for_every_formula_type(make_user, reviewer):
    residents = [make_user(district=d) for d in ("370202", "370203", "370211")]
    samples = {
        "recycling": [
            {"mass_kg": m, "material": mat} for m, mat in [("1.15", "paper"), ("0.333", "aluminium"), ("2", "e_waste")]
        ],
        "walk_steps": [{"steps": "12345"}, {"steps": 999}],
        "efficient_appliance": [{"annual_kwh_baseline": "300.5", "annual_kwh_product": "200.25", "serial": "S1"}],
        "bike_ride": [{"distance_km": "1.15", "duration_s": "400"}, {"distance_km": 2.999, "duration_s": 900}],
        "nev_charging": [{"energy_kwh": "1.01"}],
        "reusable_cup": [{"count": "3"}],
    }
    for code, datas in samples.items():
        for index, data in enumerate(datas):
            for share in ("1", "0.5", "0.3333"):
                action(residents[index % 3], code, data, 7, days_ago=index + 1, share=share)
        version = services.methodology_version_create_draft(code=code, author=reviewer)
        start, end = timezone.now() - timedelta(days=30), timezone.now()
        sql = compute_impact(version, start, end, engine="sql")
        python = compute_impact(version, start, end, engine="python")
        assert sql["totals"]["actions"] == len(datas) * 3
        assert sql | {"engine": None} == python | {"engine": None}, code


@requires_postgres
@pytest.mark.celery_worker
@pytest.mark.django_db(transaction=True)
def test_preview_runs_on_a_real_worker_with_progress(bus_world, reviewer, celery_worker):
    """The API queues the preview on commit; a real Celery worker computes it; the API shows the result."""
    import time

    version = bus_candidate(reviewer)
    client = client_for(reviewer)
    response = client.post(f"{BASE}/bus_ride/versions/{version.number}/preview", {"days": 30}, format="json")
    assert response.status_code == 202
    url = f"{BASE}/bus_ride/versions/{version.number}/previews/{response.json()['id']}"
    deadline = time.monotonic() + 60
    body = client.get(url).json()
    while body["status"] != "done" and time.monotonic() < deadline:
        time.sleep(0.2)
        body = client.get(url).json()
    assert body["status"] == "done", body
    assert (body["progress_done"], body["progress_total"]) == (3, 3)
    assert body["result"]["totals"] == {"actions": 3, "current_grams": 413, "preview_grams": 481, "delta_grams": 68}


@pytest.mark.parametrize("engine", ["python", pytest.param("sql", marks=requires_postgres)])
def test_unchanged_draft_shows_zero_change_for_partly_capped_actions(make_user, reviewer, engine):
    """Observed: the preview compared against grams after caps but priced without them, so a draft identical to
    the active version showed deltas for every partly capped action. An unchanged draft shows zero change."""
    from backend.methodologies.engine import calculate, parse_action_data
    from backend.methodologies.models import Methodology

    resident = make_user(district="370202")
    active = Methodology.objects.get(code="walk_steps").versions.get(status="active")
    for steps, credited in (("12000", "12000"), ("9000", "3000"), ("7777", "1")):  # cap 15,000 steps a day
        data = {"steps": steps}
        priced = calculate(
            active, parse_action_data(active.methodology, data), credited_quantity=Decimal(credited)
        )
        row = action(resident, "walk_steps", data, priced.grams)
        quantity, credited = Decimal(steps), Decimal(credited)
        Action.objects.filter(pk=row.pk).update(
            quantity=quantity, credited_quantity=credited, capped_quantity=quantity - credited
        )
    draft = services.methodology_version_create_draft(code="walk_steps", author=reviewer)
    result = compute_impact(draft, timezone.now() - timedelta(days=30), timezone.now(), engine=engine)
    assert result["totals"]["actions"] == 3
    assert result["totals"]["delta_grams"] == 0, result["totals"]
    assert result["residents_affected"] == 0 and result["largest_changes"] == []
