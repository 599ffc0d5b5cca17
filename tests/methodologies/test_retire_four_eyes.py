"""Retirement takes two reviewers, like approval: one alone cannot stop a methodology or the points policy."""

import pytest

from backend.methodologies.models import MethodologyVersion, PointsPolicyVersion, VersionTransition
from tests.conftest import client_for

pytestmark = pytest.mark.django_db
BUS = "/api/v1/admin/methodologies/bus_ride/versions"
POINTS = "/api/v1/admin/points-policy/versions"


@pytest.mark.parametrize(
    ("url", "model", "lookup"),
    [
        (f"{BUS}/1/retire", MethodologyVersion, {"methodology__code": "bus_ride", "number": 1}),
        (f"{POINTS}/1/retire", PointsPolicyVersion, {"number": 1}),
    ],
)
def test_retirement_needs_a_second_reviewer(make_user, url, model, lookup):
    first, second = client_for(make_user(role="reviewer")), client_for(make_user(role="reviewer"))

    # Given one reviewer asks to retire the active version
    response = first.post(url, {"note": "Partner contract ends."}, format="json")
    assert response.status_code == 202, response.json()
    assert response.json()["status"] == "retire_requested"
    assert model.objects.get(**lookup).status == "active"  # still pricing actions

    # When the same reviewer confirms, four eyes refuse
    again = first.post(url, {}, format="json")
    assert again.status_code == 403 and again.json()["errors"][0]["code"] == "four_eyes_required"
    assert model.objects.get(**lookup).status == "active"

    # Then a different reviewer retires it
    done = second.post(url, {"note": "Confirmed."}, format="json")
    assert done.status_code == 200, done.json()
    assert done.json()["status"] == "retired"
    version = model.objects.get(**lookup)
    key = "methodology_version" if model is MethodologyVersion else "points_policy_version"
    steps = list(
        VersionTransition.objects.filter(**{key: version}).order_by("at", "id").values_list("from_status", "to_status")
    )
    assert steps[-2:] == [("active", "retire_requested"), ("active", "retired")]
