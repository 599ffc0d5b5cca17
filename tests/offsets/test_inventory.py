"""Certification batches: who creates them, each action once ever, serial ranges, reversals and the buffer."""

import threading
from datetime import timedelta

import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from backend.actions.models import Action
from backend.offsets.inventory import certified_action_reverse, certified_kg_of
from backend.offsets.models import CertificationBatch, CertifiedAction, OffsetOrder, SerialRange
from tests.conftest import client_for, requires_postgres
from tests.offsets.helpers import assert_offsets_invariants, deliver, intent_event, refund_event

pytestmark = requires_postgres
BATCHES = "/api/v1/offsets/batches"


def credited(resident, grams, methodology="metro_ride", days_ago=1, n=1):
    when = timezone.now() - timedelta(days=days_ago)
    return Action.objects.bulk_create(
        Action(
            resident=resident,
            methodology=methodology,
            occurred_at=when,
            status="credited",
            source="self_report",
            grams=grams,
            points=1,
        )
        for _ in range(n)
    )


def period(days_ago=1):
    day = (timezone.now() - timedelta(days=days_ago)).astimezone(timezone.get_current_timezone()).date()
    return {"period_start": str(day - timedelta(days=1)), "period_end": str(day + timedelta(days=0))}


def test_certified_kilograms_round_down_after_the_buffer():
    from decimal import Decimal

    assert certified_kg_of(200_000, Decimal(5)) == 190
    assert certified_kg_of(1_052_632, Decimal(5)) == 1000
    assert certified_kg_of(1_999, Decimal(0)) == 1
    assert certified_kg_of(999, Decimal(0)) == 0


@pytest.mark.django_db
def test_reviewer_certifies_credited_actions_of_a_period_and_methodology(reviewer_client, resident):
    credited(resident, 60_000, n=3)
    credited(resident, 50_000, methodology="bus_ride")  # another methodology: not in this batch
    credited(resident, 70_000, days_ago=10)  # outside the period
    Action.objects.create(
        resident=resident,
        methodology="metro_ride",
        occurred_at=timezone.now() - timedelta(days=1),
        status="pending_review",
        needs_review=True,
        source="self_report",
        grams=90_000,
    )  # not credited
    response = reviewer_client.post(BATCHES, {"methodology": "metro_ride", **period()}, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["action_count"], body["certified_kg"], body["buffer_grams"]) == (3, 171, 9_000)
    assert list(SerialRange.objects.values_list("start", "end", "state")) == [(1, 171, "available")]
    # The same actions can never be certified again
    again = reviewer_client.post(BATCHES, {"methodology": "metro_ride", **period()}, format="json")
    assert again.status_code == 409 and again.json()["errors"][0]["code"] == "batch_empty"
    assert CertificationBatch.objects.count() == 1


@pytest.mark.django_db
def test_walk_steps_are_never_certified(reviewer_client, resident):
    credited(resident, 500_000, methodology="walk_steps")
    response = reviewer_client.post(BATCHES, {"methodology": "walk_steps", **period()}, format="json")
    assert response.status_code == 400
    assert response.json()["errors"][0]["code"] == "methodology_not_certifiable"
    assert CertifiedAction.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize(
    "payload",
    [
        {"methodology": "metro_ride", "period_start": "2026-01-02", "period_end": "2026-01-01"},
        {"methodology": "metro_ride", "period_start": "2020-01-01", "period_end": "2026-01-01"},
        {"methodology": "metro_ride", "period_start": "2099-01-01", "period_end": "2099-01-02"},
        {"methodology": "metro_ride", "period_start": "x", "period_end": "2026-01-01"},
        {"methodology": "m" * 100, "period_start": "2026-01-01", "period_end": "2026-01-01"},
    ],
)
def test_bad_batch_requests_are_4xx(reviewer_client, payload):
    assert 400 <= reviewer_client.post(BATCHES, payload, format="json").status_code < 500


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["resident", "buyer", "merchant_staff"])
def test_only_reviewers_certify(make_user, make_buyer, resident, role):
    credited(resident, 200_000)
    user = make_buyer() if role == "buyer" else make_user(role=role)
    response = client_for(user).post(BATCHES, {"methodology": "metro_ride", **period()}, format="json")
    assert response.status_code == 403


@pytest.mark.django_db
def test_an_action_in_two_batches_is_refused_by_the_database(reviewer, resident):
    from backend.offsets.inventory import batch_create

    credited(resident, 200_000)
    day = timezone.localdate() - timedelta(days=1)
    batch = batch_create(methodology="metro_ride", period_start=day, period_end=day, created_by=reviewer)
    other = CertificationBatch.objects.create(methodology="metro_ride", period_start=day, period_end=day)
    action_id = CertifiedAction.objects.get(batch=batch).action_id
    with pytest.raises(IntegrityError), transaction.atomic():
        CertifiedAction.objects.create(action_id=action_id, batch=other, grams=1)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("round_", range(2))
def test_two_reviewers_certifying_at_once_never_certify_an_action_twice(make_user, resident, round_):
    from backend.offsets.inventory import batch_create

    credited(resident, 10_000, n=40)
    reviewers = [make_user(role="reviewer") for _ in range(4)]
    day = timezone.localdate() - timedelta(days=1)
    barrier = threading.Barrier(len(reviewers))
    outcomes = []

    def certify(reviewer):
        try:
            barrier.wait()
            batch = batch_create(methodology="metro_ride", period_start=day, period_end=day, created_by=reviewer)
            outcomes.append(batch.action_count)
        except Exception as exc:  # the losers find nothing left
            outcomes.append(getattr(exc, "default_code", type(exc).__name__))
        finally:
            connection.close()

    threads = [threading.Thread(target=certify, args=(r,)) for r in reviewers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert CertifiedAction.objects.count() == 40
    assert sum(o for o in outcomes if isinstance(o, int)) == 40
    total = sum(CertificationBatch.objects.values_list("total_grams", flat=True))
    assert total == 400_000


@pytest.mark.django_db(transaction=True)
def test_reversed_actions_come_out_of_the_buffer_then_unsold_serials_never_sold_ones(
    api, localstripe, make_batch, buyer_client
):
    # 4 actions of 50 kg: 190 kg certified, 10 kg buffer
    batch = make_batch(grams=200_000, actions=4)
    actions = list(CertifiedAction.objects.filter(batch=batch).values_list("action_id", flat=True))
    created = buyer_client.post("/api/v1/offsets/orders", {"quantity_kg": 150}, format="json").json()
    order = OffsetOrder.objects.get(id=created["order"]["id"])
    assert deliver(api, intent_event("payment_intent.succeeded", order)).status_code == 200

    # A reversal of 50 kg: 10 kg from the buffer, 40 kg voided from the top of the unsold 40
    certified_action_reverse(action_id=actions[0], reason="review overturned")
    certified_action_reverse(action_id=actions[0], reason="twice is once")
    batch.refresh_from_db()
    assert (batch.available_kg, batch.sold_kg, batch.void_kg, batch.shortfall_kg) == (0, 150, 40, 0)
    assert list(SerialRange.objects.filter(batch=batch).values_list("start", "end", "state")) == [
        (1, 150, "sold"),
        (151, 190, "void"),
    ]
    # Another 50 kg reversed with nothing unsold left: the sold serials stay; the batch is 50 kg short
    certified_action_reverse(action_id=actions[1], reason="receipt refunded")
    batch.refresh_from_db()
    assert (batch.sold_kg, batch.void_kg, batch.shortfall_kg) == (150, 40, 50)
    # The buyer is refunded: 150 serials come back, 50 of them are voided to cover the shortfall
    assert deliver(api, refund_event(order)).status_code == 200
    batch.refresh_from_db()
    assert (batch.available_kg, batch.sold_kg, batch.void_kg, batch.shortfall_kg) == (100, 0, 90, 0)
    assert assert_offsets_invariants() is None
    assert certified_action_reverse(action_id=10**12, reason="never certified") is None
