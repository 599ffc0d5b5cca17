"""The four-eyes workflow through the API, its permissions, parameter validation codes, scheduled activation
and immutability."""

from datetime import datetime, timedelta

import pytest
from django.db import IntegrityError, InternalError, transaction
from django.utils import timezone

from backend.methodologies import services
from backend.methodologies.models import MethodologyVersion, VersionTransition
from tests.conftest import client_for

pytestmark = pytest.mark.django_db
BASE = "/api/v1/admin/methodologies/bus_ride/versions"


def new_bus_draft(client, **changes) -> int:
    response = client.post(BASE, {}, format="json")
    assert response.status_code == 201, response.json()
    number = response.json()["number"]
    if changes:
        response = client.patch(f"{BASE}/{number}", changes, format="json")
        assert response.status_code == 200, response.json()
    return number


def bus_parameters(baseline="80", project="45"):
    return {
        "baseline_g_per_pkm": {"value": baseline, "unit": "g CO2e/pkm"},
        "project_g_per_pkm": {"value": project, "unit": "g CO2e/pkm"},
    }


def error_codes(response) -> set[tuple[str, str]]:
    return {(e["attr"], e["code"]) for e in response.json()["errors"]}


def test_whole_workflow_author_cannot_approve(make_user, reviewer):
    approver = make_user(role="reviewer")
    author, other = client_for(reviewer), client_for(approver)
    start = (timezone.now() - timedelta(minutes=1)).isoformat()
    number = new_bus_draft(author, parameters=bus_parameters(), effective_from=start)
    draft = author.get(f"{BASE}/{number}").json()
    assert draft["status"] == "draft" and draft["author_id"] == reviewer.id
    assert draft["validity_rules"]["max_speed_kmh"] == "60"  # copied from the active version

    assert other.patch(f"{BASE}/{number}", {"notes": "mine"}, format="json").json()["errors"][0]["code"] == "not_author"
    assert author.post(f"{BASE}/{number}/submit", {}, format="json").json()["status"] == "in_review"
    # Immutable once submitted:
    response = author.patch(f"{BASE}/{number}", {"notes": "late edit"}, format="json")
    assert response.status_code == 409 and response.json()["errors"][0]["code"] == "version_not_draft"

    response = author.post(f"{BASE}/{number}/approve", {"note": "lgtm"}, format="json")
    assert response.status_code == 403 and response.json()["errors"][0]["code"] == "author_cannot_approve"
    response = author.post(f"{BASE}/{number}/reject", {"note": "no"}, format="json")
    assert response.status_code == 403

    response = other.post(f"{BASE}/{number}/approve", {"note": "Checked against DESNZ."}, format="json")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "active"  # effective_from already passed: activated right away
    assert [(t["from_status"], t["to_status"]) for t in body["transitions"]] == [
        ("", "draft"),
        ("draft", "in_review"),
        ("in_review", "approved"),
        ("approved", "active"),
    ]
    assert [t["actor_id"] for t in body["transitions"]] == [reviewer.id, reviewer.id, approver.id, None]
    v1 = MethodologyVersion.objects.get(methodology__code="bus_ride", number=1)
    assert v1.status == "retired" and v1.effective_to == datetime.fromisoformat(body["effective_from"])

    # Public history shows both with transitions; the calculator now uses v2 (80 - 45 = 35 g/pkm).
    history = client_for(reviewer).get("/api/v1/methodologies/bus_ride/versions").json()["results"]
    assert [(v["number"], v["status"]) for v in history] == [(2, "active"), (1, "retired")]
    calc = client_for(reviewer).post(
        "/api/v1/methodologies/bus_ride/calculate", {"data": {"distance_km": 10}}, format="json"
    )
    assert calc.json()["grams"] == 350 and calc.json()["version"] == 2
    named = client_for(reviewer).post(
        "/api/v1/methodologies/bus_ride/calculate", {"data": {"distance_km": 10}, "version": 1}, format="json"
    )
    assert named.json()["grams"] == 300 and named.json()["version"] == 1


def test_reject_needs_note_and_is_recorded(make_user, reviewer):
    author, other = client_for(reviewer), client_for(make_user(role="reviewer"))
    number = new_bus_draft(author, effective_from=(timezone.now() + timedelta(days=3)).isoformat())
    author.post(f"{BASE}/{number}/submit", {}, format="json")
    response = other.post(f"{BASE}/{number}/reject", {"note": ""}, format="json")
    assert response.status_code == 400 and response.json()["errors"][0]["code"] == "note_required"
    response = other.post(f"{BASE}/{number}/reject", {"note": "Cite a source for 80 g."}, format="json")
    assert response.json()["status"] == "rejected" and response.json()["decision_note"] == "Cite a source for 80 g."
    assert other.post(f"{BASE}/{number}/approve", {}, format="json").status_code == 409


@pytest.mark.parametrize("role", ["resident", "merchant_staff"])
def test_residents_and_merchant_staff_cannot_reach_admin(make_user, role):
    client = client_for(make_user(role=role))
    assert client.get(BASE).status_code == 403
    assert client.post(BASE, {}, format="json").status_code == 403
    assert client.post(f"{BASE}/1/approve", {}, format="json").status_code == 403
    assert client.post(f"{BASE}/1/preview", {}, format="json").status_code == 403
    assert client.post("/api/v1/admin/points-policy/versions", {}, format="json").status_code == 403
    assert MethodologyVersion.objects.filter(methodology__code="bus_ride").count() == 1


def test_anonymous_gets_401_on_admin(api, reference_data):
    assert api.post(BASE, {}, format="json").status_code == 401


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {"parameters": {**bus_parameters(), "bonus": {"value": "1", "unit": "g"}}},
            {("parameters.bonus", "unknown_parameter")},
        ),
        (
            {"parameters": {"baseline_g_per_pkm": {"value": "75", "unit": "g CO2e/pkm"}}},
            {("parameters.project_g_per_pkm", "missing_parameter")},
        ),
        (
            {"parameters": bus_parameters(baseline="75", project="-1")},
            {("parameters.project_g_per_pkm.value", "negative_factor")},
        ),
        ({"parameters": bus_parameters(baseline="lots")}, {("parameters.baseline_g_per_pkm.value", "invalid_number")}),
        (
            {"parameters": bus_parameters(baseline="40", project="45")},
            {("parameters.project_g_per_pkm", "project_exceeds_baseline")},
        ),
        (
            {
                "parameters": {
                    "baseline_g_per_pkm": {"value": "75"},
                    "project_g_per_pkm": {"value": "45", "unit": "kg/km"},
                }
            },
            {
                ("parameters.baseline_g_per_pkm.unit", "unit_missing"),
                ("parameters.project_g_per_pkm.unit", "unit_mismatch"),
            },
        ),
        ({"validity_rules": {"max_speed_kmh": "fast"}}, {("validity_rules.max_speed_kmh", "invalid_rule")}),
        ({"validity_rules": {"teleport": True}}, {("validity_rules.teleport", "unknown_validity_rule")}),
        ({"daily_cap": {"unit": "steps", "limit": "6"}}, {("daily_cap.unit", "invalid_cap_unit")}),
        ({"daily_cap": {"unit": "actions", "limit": "0"}}, {("daily_cap.limit", "invalid_cap_limit")}),
        ({"evidence_shares": {"partner": "1.5", "self_report": "0.5"}}, {("evidence_shares.partner", "invalid_share")}),
        (
            {"evidence_shares": {"partner": "1", "rumour": "1"}},
            {
                ("evidence_shares.rumour", "unknown_evidence_level"),
                ("evidence_shares.self_report", "self_report_share_missing"),
            },
        ),
        ({"sources": [{"url": "x"}]}, {("sources.0", "invalid_source")}),
    ],
)
def test_parameter_validation_codes(reviewer_client, changes, expected):
    number = new_bus_draft(reviewer_client)
    response = reviewer_client.patch(f"{BASE}/{number}", changes, format="json")
    assert response.status_code == 400
    assert response.json()["type"] == "validation_error"
    assert error_codes(response) == expected
    assert MethodologyVersion.objects.get(methodology__code="bus_ride", number=number).parameters == bus_parameters(
        "75"
    )


def test_recycling_materials_must_all_be_named(reviewer_client):
    base = "/api/v1/admin/methodologies/recycling/versions"
    number = reviewer_client.post(base, {}, format="json").json()["number"]
    factors = {"paper": "300", "glass": "500", "": "1"}
    response = reviewer_client.patch(
        f"{base}/{number}", {"parameters": {"g_per_kg": {"value": factors, "unit": "g CO2e/kg"}}}, format="json"
    )
    codes = error_codes(response)
    assert ("parameters.g_per_kg.value", "material_unnamed") in codes
    assert ("parameters.g_per_kg.value.aluminium", "material_missing") in codes
    response = reviewer_client.patch(
        f"{base}/{number}", {"parameters": {"g_per_kg": {"value": "300", "unit": "g CO2e/kg"}}}, format="json"
    )
    assert error_codes(response) == {("parameters.g_per_kg.value", "material_missing")}


def test_submit_requires_effective_from_and_forward_only(reviewer_client):
    number = new_bus_draft(reviewer_client)
    response = reviewer_client.post(f"{BASE}/{number}/submit", {}, format="json")
    assert response.json()["errors"][0]["code"] == "effective_from_required"
    reviewer_client.patch(f"{BASE}/{number}", {"effective_from": "2025-06-01T00:00:00+08:00"}, format="json")
    response = reviewer_client.post(f"{BASE}/{number}/submit", {}, format="json")
    assert response.status_code == 409 and response.json()["errors"][0]["code"] == "effective_from_not_after_active"


def test_scheduled_activation_by_the_beat_task(make_user, reviewer):
    from backend.celery import app
    from backend.methodologies.tasks import activate_due_versions_task

    assert app.conf.beat_schedule["methodologies-activate-due"]["task"] == "methodologies.activate_due_versions"
    approver = make_user(role="reviewer")
    start = timezone.now() + timedelta(hours=2)
    draft = services.methodology_version_create_draft(code="bus_ride", author=reviewer)
    services.methodology_version_update_draft(version_id=draft.id, actor=reviewer, effective_from=start)
    services.methodology_version_submit(version_id=draft.id, actor=reviewer)
    services.methodology_version_approve(version_id=draft.id, actor=approver, note="ok")
    draft.refresh_from_db()
    assert draft.status == "approved"
    assert activate_due_versions_task.delay().get() == []  # not due yet
    assert MethodologyVersion.objects.get(methodology__code="bus_ride", status="active").number == 1

    activated = services.versions_activate_due(now=start + timedelta(seconds=1))
    assert activated == [draft.id]
    assert services.versions_activate_due(now=start + timedelta(seconds=2)) == []  # safe to run twice
    old = MethodologyVersion.objects.get(methodology__code="bus_ride", number=1)
    draft.refresh_from_db()
    assert (old.status, old.effective_to, draft.status) == ("retired", start, "active")
    transitions = VersionTransition.objects.filter(methodology_version=old).values_list("to_status", "actor")
    assert list(transitions)[-1] == ("retired", None)


def test_points_policy_goes_through_the_same_review(make_user, reviewer):
    author, other = client_for(reviewer), client_for(make_user(role="reviewer"))
    base = "/api/v1/admin/points-policy/versions"
    number = author.post(base, {}, format="json").json()["number"]
    author.patch(
        f"{base}/{number}", {"points_per_gram": "2", "effective_from": timezone.now().isoformat()}, format="json"
    )
    author.post(f"{base}/{number}/submit", {}, format="json")
    assert author.post(f"{base}/{number}/approve", {}, format="json").status_code == 403
    assert other.post(f"{base}/{number}/approve", {}, format="json").json()["status"] == "active"
    calc = author.post("/api/v1/methodologies/bus_ride/calculate", {"data": {"distance_km": "10"}}, format="json")
    assert calc.json() | {"breakdown": None} == {"grams": 300, "points": 600, "version": 1, "breakdown": None}
    assert [v["status"] for v in author.get("/api/v1/points-policy/versions").json()["results"]] == [
        "active",
        "retired",
    ]


def test_retire_active_version(make_user, reviewer_client):
    requested = reviewer_client.post(f"{BASE}/1/retire", {"note": "Bus data partner gone."}, format="json")
    assert requested.status_code == 202 and requested.json()["status"] == "retire_requested"
    second = client_for(make_user(role="reviewer"))
    response = second.post(f"{BASE}/1/retire", {"note": "Confirmed."}, format="json")
    assert response.json()["status"] == "retired" and response.json()["effective_to"] is not None
    calc = reviewer_client.post(
        "/api/v1/methodologies/bus_ride/calculate", {"data": {"distance_km": 10}}, format="json"
    )
    assert calc.status_code == 400 and calc.json()["errors"][0]["code"] == "no_active_version"


def test_database_refuses_two_active_versions(reviewer):
    draft = services.methodology_version_create_draft(code="bus_ride", author=reviewer)
    MethodologyVersion.objects.filter(pk=draft.pk).update(effective_from=timezone.now())
    with pytest.raises(IntegrityError), transaction.atomic():
        MethodologyVersion.objects.filter(pk=draft.pk).update(status="active")


@pytest.mark.usefixtures("reference_data")
def test_database_trigger_keeps_submitted_versions_immutable(settings):
    from tests.conftest import requires_postgres  # noqa: F401

    if not settings.DATABASES["default"]["ENGINE"].endswith("postgresql"):
        pytest.skip("trigger is PostgreSQL only")
    with pytest.raises((IntegrityError, InternalError)), transaction.atomic():
        MethodologyVersion.objects.filter(methodology__code="bus_ride", number=1).update(
            parameters=bus_parameters(baseline="1000")
        )
    with pytest.raises((IntegrityError, InternalError)), transaction.atomic():
        MethodologyVersion.objects.filter(methodology__code="bus_ride", number=1).delete()
    # Workflow fields still move:
    MethodologyVersion.objects.filter(methodology__code="bus_ride", number=1).update(decision_note="x")


@pytest.mark.parametrize(
    ("base", "patch"),
    [
        (BASE, {"parameters": bus_parameters(), "effective_from": "2099-01-01T00:00:00+08:00"}),
        (
            "/api/v1/admin/points-policy/versions",
            {"points_per_gram": "2", "effective_from": "2099-01-01T00:00:00+08:00"},
        ),
    ],
)
def test_submit_keeps_the_authors_note_in_the_history(reviewer_client, base, patch):
    """The schema's example sends a note with submit: it is recorded on the transition, not dropped."""
    number = reviewer_client.post(base, {}, format="json").json()["number"]
    assert reviewer_client.patch(f"{base}/{number}", patch, format="json").status_code == 200
    note = "Bus factors updated from the 2025 operator survey."
    assert reviewer_client.post(f"{base}/{number}/submit", {"note": note}, format="json").status_code == 200
    transition = VersionTransition.objects.filter(to_status="in_review").latest("id")
    assert (transition.from_status, transition.note) == ("draft", note)
