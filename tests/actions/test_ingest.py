"""The batch endpoint: one result per item, in order; bad items never block good ones; exactly once."""

import json
import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from backend.actions.models import Action
from tests.actions.helpers import ride, signed_get, signed_post
from tests.conftest import requires_postgres


@pytest.mark.django_db
def test_results_in_order_with_codes(api, partner_factory):
    partner = partner_factory(methodologies=["bus_ride"])
    now = timezone.now()
    items = [
        ride("ok-1"),
        {**ride("bad-meth"), "methodology": "teleport"},
        {**ride("not-allowed"), "methodology": "metro_ride"},
        {**ride("no-distance"), "data": {"duration_s": 600}},
        {**ride("future"), "occurred_at": (now + timedelta(hours=1)).isoformat()},
        {**ride("old"), "occurred_at": (now - timedelta(days=8)).isoformat()},
        {**ride("naive"), "occurred_at": "2026-11-24T08:00:00"},
        {**ride("bad-subject"), "subject": {"kind": "passport", "identifier": "x"}},
        ride("ok-1"),
        ride("ok-2", distance_km=3.5, duration_s="900"),
        "not an object",
    ]
    response = signed_post(api, partner.pk, partner.secret, {"actions": items})
    assert response.status_code == 202
    results = response.json()["results"]
    assert [(r["external_id"], r["status"], (r["error"] or {}).get("code")) for r in results] == [
        ("ok-1", "accepted", None),
        ("bad-meth", "rejected", "unknown_methodology"),
        ("not-allowed", "rejected", "methodology_not_allowed"),
        ("no-distance", "rejected", "invalid_data"),
        ("future", "rejected", "occurred_in_future"),
        ("old", "rejected", "too_old"),
        ("naive", "rejected", "invalid_occurred_at"),
        ("bad-subject", "rejected", "invalid_subject"),
        ("ok-1", "duplicate", None),
        ("ok-2", "accepted", None),
        (None, "rejected", "invalid_item"),
    ]
    assert results[3]["error"]["attr"] == "data.distance_km"
    assert set(Action.objects.values_list("external_id", flat=True)) == {"ok-1", "ok-2"}
    # Numbers are kept exactly as decimal strings, never through float.
    assert Action.objects.get(external_id="ok-2").data["distance_km"] == "3.5"


@pytest.mark.django_db
def test_resubmission_is_duplicate(api, partner):
    assert (
        signed_post(api, partner.pk, partner.secret, {"actions": [ride("r-1")]}).json()["results"][0]["status"]
        == "accepted"
    )
    again = signed_post(api, partner.pk, partner.secret, {"actions": [ride("r-1")]}).json()["results"][0]
    assert again["status"] == "duplicate"
    assert Action.objects.filter(external_id="r-1").count() == 1


@pytest.mark.django_db
def test_too_many_actions(api, partner):
    response = signed_post(api, partner.pk, partner.secret, {"actions": [ride(f"m-{i}") for i in range(1001)]})
    assert response.status_code == 400
    assert response.json()["type"] == "validation_error"
    assert not Action.objects.exists()


@pytest.mark.django_db
def test_status_endpoint(api, partner, resident):
    signed_post(api, partner.pk, partner.secret, {"actions": [ride("s-1")]})
    response = signed_get(api, partner.pk, partner.secret, "/api/v1/partner/actions/s-1")
    assert response.status_code == 200
    assert response.json()["status"] == "unclaimed"  # nobody bound CARD-0001
    missing = signed_get(api, partner.pk, partner.secret, "/api/v1/partner/actions/nope")
    assert missing.status_code == 404


@pytest.mark.django_db
def test_other_partners_cannot_read_status(api, partner, partner_factory):
    signed_post(api, partner.pk, partner.secret, {"actions": [ride("mine")]})
    other = partner_factory()
    assert signed_get(api, other.pk, other.secret, "/api/v1/partner/actions/mine").status_code == 404


@requires_postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("attempt", range(2))
def test_100_parallel_identical_submissions_credit_once(partner_factory, make_user, attempt):
    from backend.actions.services import binding_create
    from backend.ledger.models import LedgerTransaction

    partner = partner_factory(methodologies=["bus_ride"])
    resident = make_user()
    binding_create(resident=resident, kind="transit_card", identifier=f"PAR-{attempt}")
    payload = json.dumps({"actions": [ride(f"dup-{attempt}", identifier=f"PAR-{attempt}")]}).encode()
    barrier = threading.Barrier(100)
    statuses, lock = [], threading.Lock()

    def submit():
        client = APIClient()
        barrier.wait()
        try:
            response = signed_post(client, partner.pk, partner.secret, payload)
            with lock:
                statuses.append((response.status_code, response.json()["results"][0]["status"]))
        finally:
            connection.close()

    threads = [threading.Thread(target=submit) for _ in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert statuses.count((202, "accepted")) == 1
    assert statuses.count((202, "duplicate")) == 99
    action = Action.objects.get(external_id=f"dup-{attempt}")
    assert action.status == "credited"  # tasks ran in-process on commit
    assert LedgerTransaction.objects.filter(idempotency_key=f"action:{action.id}").count() == 1
    assert action.grams == 300
