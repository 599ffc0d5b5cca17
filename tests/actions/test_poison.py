"""Issue 11, part 2: one poison item never blocks anything (observed attacks, each failed before the fix)."""

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from backend.actions.models import Action
from backend.actions.pipeline import actions_process
from backend.actions.services import actions_reconcile, binding_create
from tests.actions.attack_helpers import stored_action
from tests.actions.helpers import ride, signed_post
from tests.actions.test_self_report import PNG
from tests.conftest import client_for

HUGE = "100000000000000"


def submit(api, partner, items):
    response = signed_post(api, partner.pk, partner.secret, {"actions": items})
    assert response.status_code == 202, response.content
    return response.json()["results"]


def codes(results):
    return [(r["status"], (r["error"] or {}).get("code"), (r["error"] or {}).get("attr")) for r in results]


@pytest.mark.django_db
def test_huge_duration_refused_at_submission_the_rest_accepted(api, partner, resident):
    """Before: accepted, then `timedelta` overflowed in the pipeline and the batch stayed `received`."""
    binding_create(resident=resident, kind="bike_account", identifier="BIKE-P1")
    results = submit(
        api,
        partner,
        [
            ride(
                "poison",
                methodology="bike_ride",
                kind="bike_account",
                identifier="BIKE-P1",
                distance_km="3",
                duration_s=HUGE,
            ),
            ride(
                "bike-1e11",
                methodology="bike_ride",
                kind="bike_account",
                identifier="BIKE-P1",
                distance_km=1e11,
                duration_s=900,
            ),
            ride(
                "good",
                methodology="bike_ride",
                kind="bike_account",
                identifier="BIKE-P1",
                distance_km="3",
                duration_s=900,
            ),
        ],
    )
    assert codes(results) == [
        ("rejected", "invalid_data", "data.duration_s"),
        ("rejected", "invalid_data", "data.distance_km"),
        ("accepted", None, None),
    ]
    assert Action.objects.get(external_id="good").status == "credited"


@pytest.mark.django_db
@pytest.mark.parametrize("occurred_at", ["2026-13-45T08:00:00+08:00", "2026-11-24T08:00:00+99:00"])
def test_bad_occurred_at_is_per_item_the_rest_accepted(api, partner, occurred_at):
    """Before: 500 for the whole request."""
    results = submit(api, partner, [{**ride("bad-date"), "occurred_at": occurred_at}, ride("fine")])
    assert codes(results) == [("rejected", "invalid_occurred_at", "occurred_at"), ("accepted", None, None)]


@pytest.mark.django_db
@pytest.mark.parametrize("number", ["1e300", "1e-28", "1E+2", "1.5e3"])
def test_exponent_notation_refused_at_submission(api, partner, number):
    """Before: a JSON number 1e300 parsed through float into Decimal('1E+300') and was accepted."""
    body = json.dumps({"actions": [ride("exp", distance_km="__N__", duration_s=900)]}).replace('"__N__"', number)
    response = signed_post(api, partner.pk, partner.secret, body.encode())
    assert response.status_code == 202, response.content
    assert codes(response.json()["results"]) == [("rejected", "invalid_data", "data.distance_km")]


@pytest.mark.django_db
def test_poison_stored_action_is_isolated_in_its_batch(partner, resident):
    """Before: OverflowError out of actions_process; no action of the batch was processed."""
    binding_create(resident=resident, kind="bike_account", identifier="BIKE-P2")
    at = timezone.now() - timedelta(hours=3)
    poison = stored_action(
        partner,
        "p-1",
        methodology="bike_ride",
        kind="bike_account",
        identifier="BIKE-P2",
        data={"distance_km": "3", "duration_s": HUGE},
        at=at,
    )
    good = stored_action(
        partner,
        "p-2",
        methodology="bike_ride",
        kind="bike_account",
        identifier="BIKE-P2",
        data={"distance_km": "3", "duration_s": "900"},
        at=at + timedelta(hours=1),
    )
    actions_process(action_ids=[poison.id, good.id])
    poison.refresh_from_db()
    good.refresh_from_db()
    assert poison.status == "rejected"
    assert poison.reason in ("implausible_amount", "processing_error")
    assert good.status == "credited"


@pytest.mark.django_db
def test_reconciler_moves_past_a_poison_action(partner, resident):
    """Before: actions_reconcile raised on every run, so nothing after the poison chunk was reached."""
    binding_create(resident=resident, kind="bike_account", identifier="BIKE-P3")
    at = timezone.now() - timedelta(hours=3)
    stored_action(
        partner,
        "r-1",
        methodology="bike_ride",
        kind="bike_account",
        identifier="BIKE-P3",
        data={"distance_km": 1e11, "duration_s": "900"},
        at=at,
    )
    stored_action(
        partner,
        "r-2",
        methodology="bike_ride",
        kind="bike_account",
        identifier="BIKE-P3",
        data={"distance_km": "3", "duration_s": HUGE},
        at=at + timedelta(minutes=30),
    )
    good = stored_action(
        partner,
        "r-3",
        methodology="bike_ride",
        kind="bike_account",
        identifier="BIKE-P3",
        data={"distance_km": "3", "duration_s": "900"},
        at=at + timedelta(hours=1),
    )
    assert actions_reconcile(older_than=timedelta(seconds=-60)) == 3
    good.refresh_from_db()
    assert good.status == "credited"
    assert not Action.objects.filter(status="received").exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("data", "attr"),
    [
        ({"distance_km": "3", "duration_s": HUGE}, "data.duration_s"),
        ({"distance_km": 1e11, "duration_s": 900}, "data.distance_km"),
        ({"distance_km": 1e300, "duration_s": 900}, "data.distance_km"),
    ],
)
def test_self_report_with_poison_is_400(seeded, resident, settings, tmp_path, data, attr):
    """Before: 500 (the same overflow, inside the self-report request)."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    settings.MEDIA_ROOT = tmp_path
    response = client_for(resident).post(
        "/api/v1/me/actions",
        {
            "methodology": "bike_ride",
            "occurred_at": (timezone.now() - timedelta(hours=1)).isoformat(),
            "data": json.dumps(data),
            "evidence": SimpleUploadedFile("p.png", PNG, content_type="image/png"),
        },
        format="multipart",
    )
    assert response.status_code == 400, response.content
    error = response.json()["errors"][0]
    assert (error["code"], error["attr"]) == ("invalid_data", attr)
    assert not Action.objects.exists()
