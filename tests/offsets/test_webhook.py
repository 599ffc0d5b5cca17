"""POST /api/v1/stripe/webhook: signatures, duplicates (also in parallel), disorder, strange bodies."""

import threading
import time

import pytest
import requests
from django.db import connection

from backend.offsets.models import Certificate, CertificationBatch, OffsetOrder, StripeEvent
from backend.offsets.services import stripe_event_process
from tests.conftest import requires_postgres
from tests.offsets.helpers import (
    assert_offsets_invariants,
    deliver,
    fund_balance,
    intent_event,
    refund_event,
    signed,
)

pytestmark = requires_postgres


@pytest.fixture
def order(localstripe, make_batch, buyer_client):
    batch = make_batch(grams=200_000)
    response = buyer_client.post("/api/v1/offsets/orders", {"quantity_kg": 100, "batch": batch.id}, format="json")
    assert response.status_code == 201
    return OffsetOrder.objects.get(id=response.json()["order"]["id"])


def state(order):
    """Everything an event can change, for comparing end states."""
    order.refresh_from_db()
    cert = Certificate.objects.filter(order=order).values_list("status", flat=True).first()
    b = CertificationBatch.objects.get(id=order.batch_id)
    return order.status, cert, fund_balance(), (b.available_kg, b.reserved_kg, b.sold_kg)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "header",
    [
        "t=1,v1=deadbeef",
        "",
        "garbage",
        "t=abc,v1=",
    ],
)
def test_forged_signatures_are_400_and_change_nothing(api, order, header):
    body, _ = signed(intent_event("payment_intent.succeeded", order))
    response = api.post(
        "/api/v1/stripe/webhook", data=body, content_type="application/json", HTTP_STRIPE_SIGNATURE=header
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["code"] == "signature_invalid"
    assert StripeEvent.objects.count() == 0
    assert state(order)[0] == OffsetOrder.Status.RESERVED


@pytest.mark.django_db(transaction=True)
def test_wrong_secret_and_stale_signature_are_400_and_change_nothing(api, order):
    evt = intent_event("payment_intent.succeeded", order)
    assert deliver(api, evt, secret="whsec_attacker").status_code == 400
    stale = deliver(api, evt, timestamp=int(time.time()) - 301)
    assert stale.status_code == 400 and stale.json()["errors"][0]["code"] == "signature_invalid"
    # A body changed after signing
    body, header = signed(evt)
    tampered = body.replace(str(order.amount_fen), "1")
    response = api.post(
        "/api/v1/stripe/webhook", data=tampered, content_type="application/json", HTTP_STRIPE_SIGNATURE=header
    )
    assert response.status_code == 400
    assert StripeEvent.objects.count() == 0
    assert state(order) == (OffsetOrder.Status.RESERVED, None, 0, (90, 100, 0))
    # Within the tolerance it is accepted
    assert deliver(api, evt, timestamp=int(time.time()) - 290).status_code == 200
    assert state(order)[0] == OffsetOrder.Status.PAID


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "body",
    [
        "not json",
        "[]",
        '{"id": 1, "type": "payment_intent.succeeded"}',
        '{"id": "evt_1", "type": "x", "data": 3}',
        "[" * 100_000 + "]" * 100_000,
        '{"id": "' + "e" * 300 + '", "type": "charge.refunded", "data": {"object": {}}}',
    ],
)
def test_signed_but_strange_bodies_are_4xx_never_500(api, localstripe, body):
    from stripe import WebhookSignature

    from tests.offsets.conftest import WEBHOOK_SECRET

    header = WebhookSignature.generate_signature_header(body, WEBHOOK_SECRET)
    response = api.post(
        "/api/v1/stripe/webhook", data=body, content_type="application/json", HTTP_STRIPE_SIGNATURE=header
    )
    assert response.status_code == 400
    assert StripeEvent.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_huge_body_is_413(api, localstripe):
    body = '{"pad": "' + "x" * 300_000 + '"}'
    response = api.post(
        "/api/v1/stripe/webhook", data=body, content_type="application/json", HTTP_STRIPE_SIGNATURE="t=1,v1=x"
    )
    assert response.status_code == 413


@pytest.mark.django_db(transaction=True)
def test_event_of_a_type_we_do_not_handle_is_acknowledged_and_not_stored(api, order):
    evt = intent_event("payment_intent.created", order)
    assert deliver(api, evt).status_code == 200
    assert StripeEvent.objects.count() == 0


@pytest.mark.celery_worker
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("round_", range(2))
def test_one_event_delivered_five_times_in_parallel_is_applied_once(order, live_server, celery_worker, round_):
    evt = intent_event("payment_intent.succeeded", order)
    body, header = signed(evt)
    barrier = threading.Barrier(5)
    statuses = []

    def post():
        barrier.wait()
        r = requests.post(
            f"{live_server.url}/api/v1/stripe/webhook",
            data=body,
            headers={"Stripe-Signature": header, "Content-Type": "application/json"},
            timeout=30,
        )
        statuses.append(r.status_code)

    threads = [threading.Thread(target=post) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200] * 5
    deadline = time.monotonic() + 30
    while StripeEvent.objects.filter(processed_at__isnull=True).exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert StripeEvent.objects.filter(event_id=evt["id"], outcome="paid").count() == 1
    assert Certificate.objects.filter(order=order).count() == 1
    assert fund_balance() == order.amount_fen
    assert_offsets_invariants()


@pytest.mark.django_db(transaction=True)
def test_processing_the_same_event_in_five_threads_at_once_applies_it_once(api, order, settings):
    # Recorded but not yet processed (as if the enqueue was lost), then five workers race to apply it.
    evt = intent_event("payment_intent.succeeded", order)
    StripeEvent.objects.create(event_id=evt["id"], type=evt["type"], payload=evt)
    barrier = threading.Barrier(5)
    outcomes = []

    def work():
        try:
            barrier.wait()
            outcomes.append(stripe_event_process(event_id=evt["id"]))
        finally:
            connection.close()

    threads = [threading.Thread(target=work) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes == ["paid"] * 5  # the later ones return the recorded outcome without applying it again
    assert fund_balance() == order.amount_fen
    assert Certificate.objects.filter(order=order).count() == 1
    assert_offsets_invariants()


REFUNDED_END = (OffsetOrder.Status.REFUNDED, Certificate.Status.REVOKED, 0, (190, 0, 0))
PAID_END = (OffsetOrder.Status.PAID, Certificate.Status.ISSUED, 435, (90, 0, 100))


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("sequence", "end"),
    [
        (["succeeded", "refunded"], REFUNDED_END),
        (["refunded", "succeeded"], REFUNDED_END),
        (["refunded", "succeeded", "refunded", "succeeded"], REFUNDED_END),
        (["succeeded", "failed"], PAID_END),
        (["succeeded", "canceled", "succeeded"], PAID_END),
        (["failed", "succeeded"], PAID_END),  # a declined first card, then a good one
        (["canceled", "canceled"], (OffsetOrder.Status.RELEASED, None, 0, (190, 0, 0))),
        (["succeeded", "partial_refund"], PAID_END),
    ],
)
def test_events_twice_or_out_of_order_reach_the_same_end_state(api, order, sequence, end):
    make = {
        "succeeded": lambda: intent_event("payment_intent.succeeded", order),
        "failed": lambda: intent_event("payment_intent.payment_failed", order),
        "canceled": lambda: intent_event("payment_intent.canceled", order),
        "refunded": lambda: refund_event(order),
        "partial_refund": lambda: refund_event(order, amount_refunded=100),
    }
    for name in sequence:
        assert deliver(api, make[name]()).status_code == 200
    assert state(order) == end
    assert_offsets_invariants()


@pytest.mark.django_db(transaction=True)
def test_succeeded_with_a_different_amount_changes_nothing(api, order):
    evt = intent_event("payment_intent.succeeded", order)
    evt["data"]["object"]["amount"] = 1
    assert deliver(api, evt).status_code == 200
    assert StripeEvent.objects.get(event_id=evt["id"]).outcome == "amount_mismatch"
    assert state(order)[0] == OffsetOrder.Status.RESERVED


@pytest.mark.django_db(transaction=True)
def test_events_for_unknown_intents_are_recorded_and_ignored(api, localstripe):
    evt = {
        "id": "evt_x1",
        "type": "payment_intent.succeeded",
        "data": {"object": {"id": "pi_unknown", "amount": 1, "currency": "cny", "metadata": {"order_id": "999999"}}},
    }
    assert deliver(api, evt).status_code == 200
    assert StripeEvent.objects.get(event_id="evt_x1").outcome == "ignored_unknown_order"
