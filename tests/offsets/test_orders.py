"""POST /api/v1/offsets/orders and the certificate endpoints: contracts, abuse cases, no overselling."""

import threading

import pytest
import stripe
from django.db import connection
from rest_framework.test import APIClient

from backend.offsets.models import CertificationBatch, OffsetOrder, SerialRange
from backend.offsets.services import offset_amount_fen
from tests.conftest import client_for, requires_postgres
from tests.offsets.helpers import assert_offsets_invariants, deliver, intent_event

pytestmark = requires_postgres
ORDERS = "/api/v1/offsets/orders"


def codes(response):
    return [e["code"] for e in response.json()["errors"]]


def test_amount_is_rounded_down_to_the_fen_in_one_place():
    from decimal import Decimal

    assert offset_amount_fen(100, Decimal("43.50")) == 435
    assert offset_amount_fen(1, Decimal("43.50")) == 4  # 4.35 fen -> 4
    assert offset_amount_fen(999, Decimal("60.07")) == 6000  # 6000.993 -> 6000


@pytest.mark.django_db
def test_order_reserves_inventory_and_answers_with_the_payment_intent(localstripe, make_batch, buyer_client):
    batch = make_batch(grams=200_000)
    response = buyer_client.post(ORDERS, {"quantity_kg": 150}, format="json")
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"order", "payment_intent_id", "client_secret"}
    assert body["order"]["status"] == "reserved" and body["order"]["price_cny_per_t"] == "43.50"
    batch.refresh_from_db()
    assert (batch.available_kg, batch.reserved_kg) == (40, 150)
    listing = buyer_client.get(ORDERS)
    assert [o["id"] for o in listing.json()["results"]] == [body["order"]["id"]]
    assert_offsets_invariants()


@pytest.mark.django_db
def test_more_than_available_is_409_and_reserves_nothing(localstripe, make_batch, buyer_client):
    batch = make_batch(grams=200_000)
    response = buyer_client.post(ORDERS, {"quantity_kg": 191}, format="json")
    assert response.status_code == 409 and codes(response) == ["inventory_insufficient"]
    batch.refresh_from_db()
    assert (batch.available_kg, batch.reserved_kg) == (190, 0)
    assert OffsetOrder.objects.count() == 0


@pytest.mark.django_db
def test_order_spans_batches_oldest_first_when_no_batch_is_named(
    localstripe, make_batch, buyer_client, django_capture_on_commit_callbacks
):
    first, second = make_batch(grams=200_000), make_batch(grams=200_000, days_ago=2)
    response = buyer_client.post(ORDERS, {"quantity_kg": 250}, format="json")
    assert response.status_code == 201
    ranges = list(SerialRange.objects.filter(state="reserved").values_list("batch_id", "start", "end"))
    assert ranges == [(first.id, 1, 190), (second.id, 1, 60)]
    order = OffsetOrder.objects.get()
    with django_capture_on_commit_callbacks(execute=True):
        assert deliver(APIClient(), intent_event("payment_intent.succeeded", order)).status_code == 200
    cert = buyer_client.get(f"/api/v1/offsets/certificates/{order.certificate.id}").json()
    assert [(r["batch"], r["start"], r["end"]) for r in cert["serial_ranges"]] == [
        (first.code, 1, 190),
        (second.code, 1, 60),
    ]
    assert cert["methodologies"] == ["metro_ride"]
    pdf = buyer_client.get(f"/api/v1/offsets/certificates/{order.certificate.id}?format=pdf")
    assert pdf.content.startswith(b"%PDF-")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        ({}, 400, "required"),
        ({"quantity_kg": 0}, 400, "min_value"),
        ({"quantity_kg": -5}, 400, "min_value"),
        ({"quantity_kg": 10**12}, 400, "max_value"),
        ({"quantity_kg": 10**9}, 400, "order_too_large"),
        ({"quantity_kg": 1}, 400, "order_below_minimum"),
        ({"quantity_kg": "１００"}, 400, "invalid"),
        ({"quantity_kg": "1e3"}, 400, "invalid"),
        ({"quantity_kg": 100.5}, 400, "invalid"),
        ({"quantity_kg": True}, 400, "invalid"),
        ({"quantity_kg": [100]}, 400, "invalid"),
        ({"quantity_kg": {"a": 1}}, 400, "invalid"),
        ({"quantity_kg": "9" * 5000}, 400, "invalid"),
        ({"quantity_kg": 100, "batch": 999999}, 400, "batch_unknown"),
        ({"quantity_kg": 100, "batch": "x"}, 400, "invalid"),
        ({"quantity_kg": 100, "batch": 2**63}, 400, "max_value"),
    ],
)
def test_strange_order_inputs_are_4xx(localstripe, make_batch, buyer_client, payload, status, code):
    make_batch(grams=200_000)
    response = buyer_client.post(ORDERS, payload, format="json")
    assert response.status_code == status, response.json()
    assert code in codes(response)
    assert OffsetOrder.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize("raw", ["1e5000", "[" * 5000 + "]" * 5000, '{"quantity_kg": 1e5000}', "\xff"])
def test_malformed_bodies_are_400(localstripe, buyer_client, raw):
    response = buyer_client.generic(
        "POST",
        ORDERS,
        raw.encode("utf-8", "surrogateescape") if raw != "\xff" else b"\xff",
        content_type="application/json",
    )
    assert response.status_code == 400


@pytest.mark.django_db
def test_a_3mb_body_is_413(localstripe, buyer_client):
    response = buyer_client.generic(
        "POST", ORDERS, b'{"quantity_kg": 100, "x": "' + b"a" * 3_000_000 + b'"}', content_type="application/json"
    )
    assert response.status_code == 413 and codes(response) == ["request_too_large"]


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["resident", "reviewer", "merchant_staff", "admin"])
def test_only_buyers_can_order(localstripe, make_batch, make_user, role):
    make_batch(grams=200_000)
    response = client_for(make_user(role=role)).post(ORDERS, {"quantity_kg": 100}, format="json")
    assert response.status_code == 403
    assert OffsetOrder.objects.count() == 0


@pytest.mark.django_db
def test_anonymous_cannot_order(api, localstripe):
    assert api.post(ORDERS, {"quantity_kg": 100}, format="json").status_code == 401


@pytest.mark.django_db
def test_same_idempotency_key_returns_the_same_order(localstripe, make_batch, buyer_client):
    make_batch(grams=200_000)
    first = buyer_client.post(ORDERS, {"quantity_kg": 100}, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    again = buyer_client.post(ORDERS, {"quantity_kg": 100}, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert first.status_code == again.status_code == 201
    assert first.json()["payment_intent_id"] == again.json()["payment_intent_id"]
    other = buyer_client.post(ORDERS, {"quantity_kg": 120}, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert other.status_code == 409 and codes(other) == ["idempotency_conflict"]
    bad = buyer_client.post(ORDERS, {"quantity_kg": 100}, format="json", HTTP_IDEMPOTENCY_KEY="k" * 65)
    assert bad.status_code == 400
    assert OffsetOrder.objects.count() == 1


@pytest.mark.django_db
def test_stripe_unreachable_is_503_and_the_reservation_is_released(localstripe, make_batch, buyer_client, settings):
    batch = make_batch(grams=200_000)
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"  # nothing listens there
    response = buyer_client.post(ORDERS, {"quantity_kg": 100}, format="json")
    assert response.status_code == 503 and codes(response) == ["payment_provider_unavailable"]
    batch.refresh_from_db()
    assert (batch.available_kg, batch.reserved_kg) == (190, 0)
    assert OffsetOrder.objects.get().status == OffsetOrder.Status.RELEASED
    assert_offsets_invariants()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("round_", range(3))
def test_parallel_orders_never_oversell(localstripe, make_batch, make_buyer, round_):
    # 1,000 kg certified (1,052,632 g with a 5 % buffer); 16 buyers want 100 kg each at the same moment.
    batch = make_batch(grams=1_052_632)
    assert batch.certified_kg == 1000
    clients = [client_for(make_buyer()) for _ in range(16)]
    barrier = threading.Barrier(len(clients))
    results = []

    def order(client):
        try:
            barrier.wait()
            r = client.post(ORDERS, {"quantity_kg": 100, "batch": batch.id}, format="json")
            results.append((r.status_code, r.json()))
        finally:
            connection.close()

    threads = [threading.Thread(target=order, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    statuses = sorted(s for s, _ in results)
    assert statuses == [201] * 10 + [409] * 6, results
    batch.refresh_from_db()
    assert (batch.available_kg, batch.reserved_kg) == (0, 1000)
    assert_offsets_invariants()


@pytest.mark.django_db
def test_the_database_refuses_an_oversold_batch(localstripe, make_batch):
    from django.db import IntegrityError, transaction

    batch = make_batch(grams=200_000)
    with pytest.raises(IntegrityError), transaction.atomic():
        CertificationBatch.objects.filter(id=batch.id).update(available_kg=-1, reserved_kg=191)


@pytest.mark.django_db(transaction=True)
def test_certificate_json_and_pdf_for_its_buyer_only(api, localstripe, make_batch, buyer, make_buyer):
    batch = make_batch(grams=200_000)
    client = client_for(buyer)
    created = client.post(ORDERS, {"quantity_kg": 100}, format="json").json()
    order = OffsetOrder.objects.get(id=created["order"]["id"])
    assert deliver(api, intent_event("payment_intent.succeeded", order)).status_code == 200
    cert_id = client.get(ORDERS).json()["results"][0]["certificate"]
    assert client.get(f"/api/v1/offsets/certificates/{cert_id}").json()["quantity_kg"] == 100
    pdf = client.get(f"/api/v1/offsets/certificates/{cert_id}", HTTP_ACCEPT="application/pdf")
    assert pdf.status_code == 200 and pdf.content[:5] == b"%PDF-"
    # Another buyer, a resident, nobody: 404 / 403 / 401, never the certificate
    other = client_for(make_buyer(company="别的公司"))
    assert other.get(f"/api/v1/offsets/certificates/{cert_id}").status_code == 404
    assert other.get(f"/api/v1/offsets/certificates/{cert_id}?format=pdf").status_code == 404
    assert api.get(f"/api/v1/offsets/certificates/{cert_id}").status_code == 401
    assert client.get("/api/v1/offsets/certificates/999999").status_code == 404
    assert batch.id


@pytest.mark.django_db
@pytest.mark.parametrize("code", ["NOPE", "x" * 500, "%00", "../../etc"])
def test_unknown_verification_code_is_404(api, code):
    assert api.get(f"/api/v1/offsets/certificates/verify/{code}").status_code == 404


@pytest.mark.django_db
def test_batch_list_is_for_signed_in_users(api, buyer_client, localstripe, make_batch):
    make_batch(grams=200_000)
    assert api.get("/api/v1/offsets/batches").status_code == 401
    listing = buyer_client.get("/api/v1/offsets/batches").json()["results"]
    assert [b["available_kg"] for b in listing] == [190]


def test_stripe_client_points_at_the_configured_base(settings):
    settings.STRIPE_API_BASE = "http://127.0.0.1:1234"
    from backend.offsets.gateway import stripe_client

    assert isinstance(stripe_client(), stripe.StripeClient)
