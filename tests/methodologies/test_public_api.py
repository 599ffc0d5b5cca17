"""Public catalogue, history and calculator; seeding."""

import pytest

from backend.methodologies.catalogue import CATALOGUE
from backend.methodologies.models import Methodology, MethodologyVersion, PointsPolicyVersion
from backend.methodologies.services import methodologies_seed, points_policy_seed

pytestmark = pytest.mark.django_db


def test_seed_is_idempotent_and_complete(reference_data):
    assert methodologies_seed() == 0 and points_policy_seed() == 0  # reference_data already seeded once
    assert Methodology.objects.count() == 11 == len(CATALOGUE)
    assert MethodologyVersion.objects.filter(status="active", number=1).count() == 11
    assert all(v.sources for v in MethodologyVersion.objects.all())
    assert PointsPolicyVersion.objects.get(status="active").points_per_gram == 1


def test_public_catalogue_without_authentication(api, reference_data, django_assert_max_num_queries):
    with django_assert_max_num_queries(3):
        response = api.get("/api/v1/methodologies", {"page_size": 100})
    assert response.status_code == 200
    items = {m["code"]: m for m in response.json()["results"]}
    assert len(items) == 11
    bus = items["bus_ride"]
    assert bus["name_zh"] == "公交出行" and bus["formula_type"] == "per_distance"
    assert bus["active_version"]["parameters"]["baseline_g_per_pkm"] == {"value": "75", "unit": "g CO2e/pkm"}
    assert bus["active_version"]["daily_cap"] == {"unit": "actions", "limit": "6"}
    assert bus["active_version"]["evidence_shares"]["self_report"] == "0.5"
    assert bus["active_version"]["effective_from"].startswith("2026-01-01T00:00:00+08:00")
    assert items["recycling"]["active_version"]["parameters"]["g_per_kg"]["value"]["aluminium"] == "8100"


def test_public_history(api, reference_data, django_assert_max_num_queries):
    with django_assert_max_num_queries(4):
        response = api.get("/api/v1/methodologies/metro_ride/versions")
    assert response.status_code == 200
    [v1] = response.json()["results"]
    assert v1["number"] == 1 and v1["transitions"][0]["to_status"] == "active"
    assert api.get("/api/v1/methodologies/teleport/versions").status_code == 404


def test_calculate_needs_authentication(api, reference_data):
    assert api.post("/api/v1/methodologies/bus_ride/calculate", {"data": {}}, format="json").status_code == 401


@pytest.mark.parametrize(
    ("code", "body", "grams"),
    [
        ("bus_ride", '{"data": {"distance_km": 10}}', 300),
        ("metro_ride", '{"data": {"distance_km": 8.2, "entry_station": "A", "exit_station": "B"}}', 369),
        ("bike_ride", '{"data": {"distance_km": 1.15, "duration_s": 400}}', 46),  # JSON number, no float on the way
        ("recycling", '{"data": {"mass_kg": 1.15, "material": "paper"}}', 345),
        ("recycling", '{"data": {"mass_kg": "1", "material": "paper"}, "evidence_level": "self_report"}', 150),
    ],
)
def test_calculate(resident_client, code, body, grams):
    response = resident_client.post(f"/api/v1/methodologies/{code}/calculate", body, content_type="application/json")
    assert response.status_code == 200, response.json()
    assert response.json()["grams"] == grams and response.json()["points"] == grams
    assert response.json()["version"] == 1 and response.json()["breakdown"]["grams"] == grams


@pytest.mark.parametrize(
    ("code", "body", "attr", "error_code"),
    [
        ("bus_ride", {"data": {}}, "data.distance_km", "required"),
        ("bus_ride", {"data": {"distance_km": "-3"}}, "data.distance_km", "negative"),
        ("recycling", {"data": {"mass_kg": "1", "material": "wood"}}, "data.material", "unknown_material"),
        ("bus_ride", {"data": {"distance_km": "0.1"}}, "data", "distance_out_of_range"),
        (
            "walk_steps",
            {"data": {"steps": 100}, "evidence_level": "self_report"},
            "evidence_level",
            "evidence_level_not_accepted",
        ),
        ("bus_ride", {"data": {"distance_km": 5}, "version": 9}, "version", "version_not_found"),
    ],
)
def test_calculate_errors(resident_client, code, body, attr, error_code):
    response = resident_client.post(f"/api/v1/methodologies/{code}/calculate", body, format="json")
    assert response.status_code in (400, 404)
    assert response.json()["errors"][0]["code"] == error_code and response.json()["errors"][0]["attr"] == attr


def test_openapi_documents_every_endpoint_with_examples():
    from pathlib import Path

    import yaml

    schema = yaml.safe_load((Path(__file__).resolve().parents[2] / "api_schema" / "openapi.yaml").read_text())
    ours = {p: ops for p, ops in schema["paths"].items() if "methodolog" in p or "points-policy" in p}
    assert len(ours) == 18
    for path, operations in ours.items():
        for method, operation in operations.items():
            assert operation.get("description"), (method, path)
            success = {k: v for k, v in operation["responses"].items() if k.startswith("2")}
            documented = str(operation.get("requestBody", {})) + str(success)
            assert "examples" in documented, (method, path)
