"""The ingest insert: COPY for a batch of new actions, INSERT ... ON CONFLICT DO NOTHING only when the COPY hits
the (partner, external_id) unique index. Exactly once either way."""

import json
import threading

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from backend.actions.models import Action
from backend.actions.services import binding_create
from backend.ledger.models import LedgerTransaction
from tests.actions.helpers import ride, signed_post
from tests.conftest import requires_postgres

pytestmark = requires_postgres


def submit(client, partner, items):
    with CaptureQueriesContext(connection) as queries:
        response = signed_post(client, partner.pk, partner.secret, {"actions": items})
    assert response.status_code == 202, response.content
    statements = [
        q["sql"].split()[0].upper() + (" ON CONFLICT" if "ON CONFLICT (partner_id" in q["sql"] else "") for q in queries
    ]
    return [(r["external_id"], r["status"]) for r in response.json()["results"]], statements


@pytest.mark.django_db
def test_new_actions_are_copied_and_a_partial_resubmission_falls_back_to_on_conflict(api, partner_factory):
    partner = partner_factory(methodologies=["bus_ride"])
    # Given a batch of new actions: one COPY, no INSERT ... ON CONFLICT into actions
    results, statements = submit(api, partner, [ride("c-1"), ride("c-2")])
    assert results == [("c-1", "accepted"), ("c-2", "accepted")]
    assert statements.count("COPY") == 1 and "INSERT ON CONFLICT" not in statements
    # When a batch repeats one of them beside a new one
    results, statements = submit(api, partner, [ride("c-2"), ride("c-3")])
    # Then the COPY hit the unique index, was rolled back to its savepoint, and ON CONFLICT sorted the batch out
    assert results == [("c-2", "duplicate"), ("c-3", "accepted")]
    assert "COPY" in statements and "INSERT ON CONFLICT" in statements
    rows = Action.objects.order_by("external_id").values_list("external_id", "batch__accepted", "batch__duplicates")
    assert list(rows) == [("c-1", 2, 0), ("c-2", 2, 0), ("c-3", 1, 1)]
    assert Action.objects.filter(external_id="c-2").count() == 1


@pytest.mark.django_db
def test_copy_keeps_strange_text_exactly_and_resolves_the_live_binding(api, partner_factory, make_user):
    partner = partner_factory(methodologies=["bus_ride"])
    resident = make_user()
    binding_create(resident=resident, kind="transit_card", identifier="CARD-\\N\t1")
    strange = "tab\there \\N back\\slash \\. new\nline\r 碳普惠 ✓"
    results, statements = submit(
        api, partner, [ride(strange, identifier="CARD-\\N\t1"), ride("unbound", identifier="NOBODY-1")]
    )
    assert results == [(strange, "accepted"), ("unbound", "accepted")]
    assert "INSERT ON CONFLICT" not in statements
    bound = Action.objects.get(external_id=strange)
    assert (bound.resident_id, bound.subject_last4, bound.data) == (
        resident.id,
        "-\\N1",  # the identifier's last four once normalised (whitespace dropped): a backslash-N, not NULL
        {"distance_km": "10", "duration_s": "1800"},
    )
    assert Action.objects.get(external_id="unbound").resident_id is None


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("attempt", range(3))
def test_simultaneous_batches_sharing_one_action_credit_it_once(partner_factory, make_user, attempt):
    # Two batches of 30 own actions each and one shared, submitted at once: the second COPY waits on the first
    # one's unique index entry, fails once it commits, and its ON CONFLICT retry lands its own 30 only.
    partner = partner_factory(methodologies=["bus_ride"])
    resident = make_user()
    binding_create(resident=resident, kind="transit_card", identifier=f"SIM-{attempt}")
    shared = ride(f"shared-{attempt}", identifier=f"SIM-{attempt}")
    batches = [
        [ride(f"{side}-{attempt}-{n}", identifier=f"SIM-{attempt}", minutes_ago=60 + n) for n in range(30)] + [shared]
        for side in ("a", "b")
    ]
    barrier = threading.Barrier(2)
    outcomes, lock = [], threading.Lock()

    def post(items):
        client = APIClient()
        body = json.dumps({"actions": items}).encode()
        barrier.wait()
        try:
            response = signed_post(client, partner.pk, partner.secret, body)
            with lock:
                outcomes.append([(r["external_id"], r["status"]) for r in response.json()["results"]])
        finally:
            connection.close()

    threads = [threading.Thread(target=post, args=(items,)) for items in batches]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    shared_statuses = sorted(dict(o)[shared["external_id"]] for o in outcomes)
    assert shared_statuses == ["accepted", "duplicate"]
    assert all(status == "accepted" for o in outcomes for eid, status in o if eid != shared["external_id"])
    assert Action.objects.filter(partner=partner).count() == 61
    credited = Action.objects.filter(partner=partner)
    keys = [f"action:{pk}" for pk in credited.values_list("id", flat=True)]
    assert LedgerTransaction.objects.filter(idempotency_key__in=keys).count() == credited.exclude(grams=0).count()


@pytest.mark.django_db
def test_an_external_id_postgresql_cannot_store_is_that_items_error_not_a_500(api, partner_factory):
    # Failed before: a NUL failed the whole batch's insert with a 500 (before COPY too: psycopg refused it).
    partner = partner_factory(methodologies=["bus_ride"])
    body = json.dumps({"actions": [ride("nul\x00id"), ride("fine")]}).encode()
    response = signed_post(api, partner.pk, partner.secret, body)
    assert response.status_code == 202
    results = [(r["status"], (r["error"] or {}).get("code")) for r in response.json()["results"]]
    assert results == [("rejected", "invalid_external_id"), ("accepted", None)]
    assert list(Action.objects.values_list("external_id", flat=True)) == ["fine"]


@pytest.mark.django_db
def test_a_card_number_postgresql_cannot_store_is_that_items_error_not_a_500(api, partner_factory):
    # Failed before: a NUL in subject.identifier reached the stored last 4 characters and failed the whole
    # batch's insert with a 500 (the external_id check above did not cover the subject).
    partner = partner_factory(methodologies=["bus_ride"])
    bad = ride("bad")
    bad["subject"] = {**bad["subject"], "identifier": "12\x0034"}
    response = signed_post(api, partner.pk, partner.secret, json.dumps({"actions": [bad, ride("fine")]}).encode())
    assert response.status_code == 202
    results = [(r["status"], (r["error"] or {}).get("code")) for r in response.json()["results"]]
    assert results == [("rejected", "invalid_subject"), ("accepted", None)]
    assert list(Action.objects.values_list("external_id", flat=True)) == ["fine"]
