"""The whole purchase against localstripe: order -> PaymentIntent -> confirmed -> localstripe's signed webhook
to a live server -> the real Celery worker applies it -> certificate (JSON, PDF, public page); then a refund
revokes it. Ledger and inventory invariants after all of it."""

import time

import pytest
import requests

from backend.offsets.models import Certificate, CertificationBatch, OffsetOrder, StripeEvent
from tests.conftest import requires_postgres
from tests.offsets.helpers import assert_offsets_invariants, fund_balance, refund_event, signed

pytestmark = [requires_postgres, pytest.mark.celery_worker]


def wait_for(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError("timed out waiting")


@pytest.mark.django_db(transaction=True)
def test_purchase_end_to_end_with_real_webhook_and_worker_then_refund(
    localstripe, live_server, celery_worker, make_batch, buyer_client
):
    # Given a batch of 200 kg of credited reductions (190 kg certified, 5 % buffer) on sale
    batch = make_batch(grams=200_000)
    assert batch.certified_kg == 190
    localstripe.webhook(live_server.url + "/api/v1/stripe/webhook")

    # When the buyer orders 100 kg and confirms the PaymentIntent (what Stripe.js does in the browser)
    response = buyer_client.post("/api/v1/offsets/orders", {"quantity_kg": 100, "batch": batch.id}, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    intent_id = body["payment_intent_id"]
    assert body["client_secret"].startswith(intent_id + "_secret_")
    assert body["order"]["amount_fen"] == 435  # 100 kg at 43.50 CNY/t
    intent = localstripe.intent(intent_id)
    assert (intent.amount, intent.currency, intent.metadata["order_id"]) == (435, "cny", str(body["order"]["id"]))
    localstripe.confirm(intent_id)

    # Then localstripe's signed payment_intent.succeeded reaches the endpoint and the worker issues a certificate
    order = OffsetOrder.objects.get(id=body["order"]["id"])
    wait_for(lambda: Certificate.objects.filter(order=order).exists())
    order.refresh_from_db()
    assert order.status == OffsetOrder.Status.PAID
    assert StripeEvent.objects.get(type="payment_intent.succeeded").outcome == "paid"
    assert fund_balance() == 435
    batch.refresh_from_db()
    assert (batch.available_kg, batch.reserved_kg, batch.sold_kg) == (90, 0, 100)

    cert = Certificate.objects.get(order=order)
    detail = buyer_client.get(f"/api/v1/offsets/certificates/{cert.id}")
    assert detail.status_code == 200
    assert detail.json()["serial_ranges"] == [
        {
            "batch": batch.code,
            "methodology": "metro_ride",
            "start": 1,
            "end": 100,
            "kg": 100,
            "label": f"{batch.code}-000000001..000000100",
        }
    ]
    pdf = buyer_client.get(f"/api/v1/offsets/certificates/{cert.id}?format=pdf")
    assert pdf.status_code == 200 and pdf["Content-Type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF-")
    public = requests.get(f"{live_server.url}/api/v1/offsets/certificates/verify/{cert.code}", timeout=5).json()
    assert public["status"] == "issued" and public["buyer"] == "青岛海风科技有限公司" and public["quantity_kg"] == 100

    # When Stripe reports a full refund (localstripe never sends charge.refunded: forged, signed, delivered live)
    body, header = signed(refund_event(order))
    answer = requests.post(
        f"{live_server.url}/api/v1/stripe/webhook", data=body, headers={"Stripe-Signature": header}, timeout=5
    )
    assert answer.status_code == 200

    # Then the certificate is revoked, the serials are back on sale and the money is reversed
    wait_for(lambda: Certificate.objects.get(id=cert.id).status == Certificate.Status.REVOKED)
    public = requests.get(f"{live_server.url}/api/v1/offsets/certificates/verify/{cert.code}", timeout=5).json()
    assert public["status"] == "revoked" and public["revoked"] is True
    order.refresh_from_db()
    assert order.status == OffsetOrder.Status.REFUNDED
    batch = CertificationBatch.objects.get(id=batch.id)
    assert (batch.available_kg, batch.sold_kg) == (190, 0)
    assert fund_balance() == 0
    assert_offsets_invariants()
