"""Exact query counts of the offsets list endpoints, with two or more of every related row."""

import pytest

from backend.offsets.models import OffsetOrder
from tests.conftest import requires_postgres
from tests.offsets.helpers import deliver, intent_event

pytestmark = requires_postgres


@pytest.mark.django_db(transaction=True)
def test_order_list_is_a_constant_number_of_queries(
    localstripe, make_batch, buyer_client, api, django_assert_num_queries
):
    make_batch(grams=600_000)
    for _ in range(3):
        created = buyer_client.post("/api/v1/offsets/orders", {"quantity_kg": 100}, format="json").json()
        order = OffsetOrder.objects.get(id=created["order"]["id"])
        deliver(api, intent_event("payment_intent.succeeded", order))
    buyer_client.post("/api/v1/offsets/orders", {"quantity_kg": 100}, format="json")  # one unpaid
    # the page of orders joined with their certificates (the buyer's row is in the auth cache by now)
    with django_assert_num_queries(1):
        response = buyer_client.get("/api/v1/offsets/orders")
    assert len(response.json()["results"]) == 4
    assert sum(1 for o in response.json()["results"] if o["certificate"]) == 3


@pytest.mark.django_db
def test_batch_list_is_a_constant_number_of_queries(localstripe, make_batch, buyer_client, django_assert_num_queries):
    make_batch(grams=200_000)
    make_batch(grams=300_000, days_ago=2)
    with django_assert_num_queries(2):
        response = buyer_client.get("/api/v1/offsets/batches")
    assert len(response.json()["results"]) == 2


def test_beat_runs_reservation_expiry_every_minute():
    from backend.celery import app

    entry = app.conf.beat_schedule["offsets-expire-reservations"]
    assert (entry["task"], entry["schedule"]) == ("offsets.reservations_expire", 60.0)
    assert app.conf.beat_schedule["offsets-stripe-events-retry"]["task"] == "offsets.stripe_events_retry"
