"""Reservation expiry (beat, once), the buyer role and its command, erasure, the admin screens, payouts."""

import json
import threading
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import Client
from django.utils import timezone

from backend.offsets.models import Buyer, OffsetOrder
from backend.offsets.services import reservations_expire, uscc_valid
from tests.conftest import PASSWORD, client_for, next_phone, requires_postgres
from tests.offsets.conftest import uscc
from tests.offsets.helpers import assert_offsets_invariants, deliver, intent_event

pytestmark = requires_postgres


def _order(client, kg=100):
    response = client.post("/api/v1/offsets/orders", {"quantity_kg": kg}, format="json")
    assert response.status_code == 201, response.json()
    return OffsetOrder.objects.get(id=response.json()["order"]["id"])


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("round_", range(2))
def test_unpaid_reservation_is_released_once_after_30_minutes(localstripe, make_batch, buyer_client, round_):
    batch = make_batch(grams=200_000)
    order = _order(buyer_client)
    assert order.reserved_until - order.created_at == timedelta(minutes=30)
    assert reservations_expire() == 0  # not due yet
    later = timezone.now() + timedelta(minutes=31)
    results = []
    barrier = threading.Barrier(3)

    def run():
        try:
            barrier.wait()
            results.append(reservations_expire(now=later))
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [0, 0, 1]  # three beats at once: released once
    assert reservations_expire(now=later) == 0
    order.refresh_from_db()
    assert (order.status, order.release_reason) == (OffsetOrder.Status.RELEASED, "expired")
    assert localstripe.intent(order.payment_intent_id).status == "canceled"
    batch.refresh_from_db()
    assert (batch.available_kg, batch.reserved_kg) == (190, 0)
    assert_offsets_invariants()


@pytest.mark.django_db(transaction=True)
def test_a_reservation_whose_payment_went_through_is_not_released(localstripe, make_batch, buyer_client, api):
    make_batch(grams=200_000)
    order = _order(buyer_client)
    localstripe.confirm(order.payment_intent_id)  # paid at Stripe; the webhook has not arrived yet
    assert reservations_expire(now=timezone.now() + timedelta(minutes=31)) == 0
    order.refresh_from_db()
    assert order.status == OffsetOrder.Status.RESERVED
    assert deliver(api, intent_event("payment_intent.succeeded", order)).status_code == 200
    order.refresh_from_db()
    assert order.status == OffsetOrder.Status.PAID
    assert_offsets_invariants()


@pytest.mark.django_db(transaction=True)
def test_paid_after_expiry_is_fulfilled_again_or_flagged(localstripe, make_batch, buyer_client, make_buyer, api):
    make_batch(grams=200_000)
    order = _order(buyer_client, kg=150)
    reservations_expire(now=timezone.now() + timedelta(minutes=31))
    _order(client_for(make_buyer()), kg=100)  # someone else takes most of the batch meanwhile
    assert deliver(api, intent_event("payment_intent.succeeded", order)).status_code == 200
    order.refresh_from_db()
    assert order.status == OffsetOrder.Status.PAID_UNFULFILLED
    assert_offsets_invariants()


def test_unified_social_credit_code_check_character():
    assert uscc_valid("91350100M000100Y43")  # a published example
    assert not uscc_valid("91350100M000100Y44")
    assert not uscc_valid("91350100M000100Y4")
    assert not uscc_valid("９１350100M000100Y43")
    assert uscc_valid(uscc(7))


@pytest.mark.django_db
def test_create_user_command_makes_a_buyer(reference_data):
    out = StringIO()
    tax_id = uscc(424242)
    call_command(
        "create_user",
        "--role",
        "buyer",
        "--phone",
        "13900000001",
        "--password",
        PASSWORD,
        "--company",
        "青岛碳买家有限公司",
        "--tax-id",
        tax_id,
        stdout=out,
    )
    user_id = json.loads(out.getvalue())["user_id"]
    buyer = Buyer.objects.select_related("user").get(user_id=user_id)
    assert (buyer.user.role, buyer.company_name, buyer.tax_id) == ("buyer", "青岛碳买家有限公司", tax_id)
    client = Client()
    assert client.login(username="13900000001", password=PASSWORD) is True
    with pytest.raises(CommandError):
        call_command(
            "create_user",
            "--role",
            "buyer",
            "--phone",
            "13900000002",
            "--password",
            PASSWORD,
            "--company",
            "X",
            "--tax-id",
            "123",
        )
    with pytest.raises(CommandError):  # the same company twice
        call_command(
            "create_user",
            "--role",
            "buyer",
            "--phone",
            "13900000003",
            "--password",
            PASSWORD,
            "--company",
            "Y",
            "--tax-id",
            tax_id,
        )
    with pytest.raises(CommandError):  # company details without the buyer role
        call_command(
            "create_user",
            "--role",
            "resident",
            "--phone",
            "13900000004",
            "--password",
            PASSWORD,
            "--company",
            "Y",
            "--tax-id",
            uscc(5),
        )
    with pytest.raises(CommandError):
        call_command("create_user", "--role", "buyer", "--phone", next_phone(), "--password", PASSWORD)


@pytest.mark.django_db(transaction=True)
def test_erasing_a_buyer_keeps_the_public_record_and_releases_reservations(localstripe, make_batch, buyer, api):
    from backend.accounts.services import user_erase
    from backend.offsets.models import Certificate

    make_batch(grams=300_000)
    client = client_for(buyer)
    paid = _order(client)
    deliver(api, intent_event("payment_intent.succeeded", paid))
    open_order = _order(client, kg=92)
    user_erase(user=buyer)
    open_order.refresh_from_db()
    assert open_order.status == OffsetOrder.Status.RELEASED
    cert = Certificate.objects.get(order=paid)
    assert cert.status == "issued" and cert.company_name == "青岛海风科技有限公司"
    assert api.get(f"/api/v1/offsets/certificates/verify/{cert.code}").status_code == 200
    assert_offsets_invariants()


@pytest.mark.django_db(transaction=True)
def test_offsets_admin_screens_render_read_only(localstripe, make_batch, buyer_client, api, make_user):
    make_batch(grams=200_000)
    order = _order(buyer_client)
    deliver(api, intent_event("payment_intent.succeeded", order))
    admin = make_user(role="admin")
    client = Client()
    assert client.login(username=admin.raw_phone, password=PASSWORD)
    orders = client.get("/admin/offsets/offsetorder/")
    assert orders.status_code == 200
    html = orders.content.decode()
    assert "奖励基金" in html and "435 分" in html and "<svg" in html
    for name in ("certificationbatch", "certificate", "stripeevent", "buyer"):
        assert client.get(f"/admin/offsets/{name}/").status_code == 200
        assert client.get(f"/admin/offsets/{name}/add/").status_code == 403
    assert client.get(f"/admin/offsets/offsetorder/{order.id}/change/").status_code == 200
    assert client.post(f"/admin/offsets/offsetorder/{order.id}/delete/").status_code == 403


@pytest.mark.django_db
def test_admin_certifies_and_closes_batches_through_the_services(make_user, resident):
    from backend.actions.models import Action
    from backend.offsets.models import CertificationBatch

    day = timezone.localdate() - timedelta(days=1)
    Action.objects.create(
        resident=resident,
        methodology="bus_ride",
        status="credited",
        source="self_report",
        grams=100_000,
        occurred_at=timezone.now() - timedelta(days=1),
    )
    admin = make_user(role="admin")
    client = Client()
    assert client.login(username=admin.raw_phone, password=PASSWORD)
    assert client.get("/admin/offsets/certificationbatch/certify/").status_code == 200
    refused = client.post(
        "/admin/offsets/certificationbatch/certify/",
        {"methodology": "walk_steps", "period_start": day, "period_end": day},
    )
    assert refused.status_code == 200 and CertificationBatch.objects.count() == 0
    done = client.post(
        "/admin/offsets/certificationbatch/certify/",
        {"methodology": "bus_ride", "period_start": day, "period_end": day},
    )
    assert done.status_code == 302
    batch = CertificationBatch.objects.get()
    assert batch.certified_kg == 95
    client.post("/admin/offsets/certificationbatch/", {"action": "close_batches", "_selected_action": [batch.id]})
    batch.refresh_from_db()
    assert batch.status == "closed"
    assert client.get(f"/admin/offsets/certificationbatch/{batch.id}/change/").status_code == 200


@pytest.mark.django_db(transaction=True)
def test_an_event_whose_enqueue_was_lost_is_retried(localstripe, make_batch, buyer_client):
    from backend.offsets.models import StripeEvent
    from backend.offsets.services import stripe_events_retry
    from tests.offsets.helpers import intent_event as make_event

    make_batch(grams=200_000)
    order = _order(buyer_client)
    evt = make_event("payment_intent.succeeded", order)
    StripeEvent.objects.create(
        event_id=evt["id"], type=evt["type"], payload=evt, received_at=timezone.now() - timedelta(minutes=5)
    )
    assert stripe_events_retry() == 1  # eager here: processed at once
    order.refresh_from_db()
    assert order.status == OffsetOrder.Status.PAID
    assert stripe_events_retry() == 0
