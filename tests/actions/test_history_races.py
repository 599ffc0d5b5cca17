"""Issue 11, part 4: history rules hold under concurrency. Two batches processed at the same moment used to
both pass the history check (it read history before the crediting transaction, with no lock or constraint)."""

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from backend.actions.models import Action
from backend.actions.pipeline import actions_process
from backend.actions.services import binding_create
from tests.actions.attack_helpers import appliance, stored_action
from tests.actions.helpers import ride, signed_post
from tests.conftest import requires_postgres

REPEAT = range(3)


def process_at_once(*batches):
    """Each list of action ids processed by its own thread (own connection), released by one barrier."""
    barrier = threading.Barrier(len(batches))
    errors = []

    def run(ids):
        try:
            barrier.wait()
            actions_process(action_ids=ids)
        except Exception as exc:  # surfaced below: a race must never turn into an error
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(ids,)) for ids in batches]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def statuses(*actions):
    for a in actions:
        a.refresh_from_db()
    return sorted((a.status, a.reason) for a in actions)


@requires_postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("attempt", REPEAT)
def test_same_serial_in_two_batches_at_once_credited_once(partner_factory, make_user, attempt):
    """Before: credited twice (5 of 5 runs)."""
    shop_a = partner_factory(methodologies=["efficient_appliance"])
    shop_b = partner_factory(methodologies=["efficient_appliance"])
    binding_create(resident=make_user(), kind="merchant_receipt", identifier=f"RA-{attempt}")
    binding_create(resident=make_user(), kind="merchant_receipt", identifier=f"RB-{attempt}")
    serial = f"SN-RACE-{attempt}"
    a = stored_action(
        shop_a,
        "a",
        methodology="efficient_appliance",
        kind="merchant_receipt",
        identifier=f"RA-{attempt}",
        data=appliance(serial),
    )
    b = stored_action(
        shop_b,
        "b",
        methodology="efficient_appliance",
        kind="merchant_receipt",
        identifier=f"RB-{attempt}",
        data=appliance(serial.lower()),
    )
    process_at_once([a.id], [b.id])
    assert statuses(a, b) == [("credited", ""), ("rejected", "serial_already_credited")]


@requires_postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("attempt", REPEAT)
def test_overlapping_trips_from_two_partners_at_once_one_flagged(partner_factory, make_user, attempt):
    """Before: both credited, neither flagged."""
    bus = partner_factory(methodologies=["bus_ride"])
    metro = partner_factory(methodologies=["bus_ride"])
    resident = make_user()
    binding_create(resident=resident, kind="transit_card", identifier=f"T-{attempt}")
    binding_create(resident=resident, kind="metro_card", identifier=f"M-{attempt}")
    at = timezone.now() - timedelta(hours=2)
    a = stored_action(
        bus,
        "t",
        methodology="bus_ride",
        identifier=f"T-{attempt}",
        data={"distance_km": "10", "duration_s": "1800"},
        at=at,
    )
    b = stored_action(
        metro,
        "m",
        methodology="bus_ride",
        kind="metro_card",
        identifier=f"M-{attempt}",
        data={"distance_km": "10", "duration_s": "1800"},
        at=at + timedelta(minutes=10),
    )
    process_at_once([a.id], [b.id])
    assert [s for s, _ in statuses(a, b)] == ["credited", "flagged"]
    assert Action.objects.get(status="flagged").reason == "double_claim"


@requires_postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("attempt", REPEAT)
def test_paperless_bill_twice_in_a_month_at_once_credited_once(partner_factory, make_user, attempt):
    biller_a = partner_factory(methodologies=["paperless_bill"])
    biller_b = partner_factory(methodologies=["paperless_bill"])
    binding_create(resident=make_user(), kind="charging_account", identifier=f"BILL-{attempt}")
    at = timezone.now() - timedelta(hours=2)
    a = stored_action(
        biller_a,
        "p",
        methodology="paperless_bill",
        kind="charging_account",
        identifier=f"BILL-{attempt}",
        data={"count": "1"},
        at=at,
    )
    b = stored_action(
        biller_b,
        "q",
        methodology="paperless_bill",
        kind="charging_account",
        identifier=f"BILL-{attempt}",
        data={"count": "1"},
        at=at + timedelta(minutes=1),
    )
    process_at_once([a.id], [b.id])
    assert statuses(a, b) == [("credited", ""), ("rejected", "already_credited_this_month")]


@requires_postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("attempt", REPEAT)
def test_duplicate_weighing_at_once_credited_once(partner_factory, make_user, attempt):
    station_a = partner_factory(methodologies=["recycling"])
    station_b = partner_factory(methodologies=["recycling"])
    binding_create(resident=make_user(), kind="recycling_account", identifier=f"HH-{attempt}")
    at = timezone.now() - timedelta(hours=2)
    data = {"mass_kg": "2", "material": "paper"}
    a = stored_action(
        station_a, "w1", methodology="recycling", kind="recycling_account", identifier=f"HH-{attempt}", data=data, at=at
    )
    b = stored_action(
        station_b,
        "w2",
        methodology="recycling",
        kind="recycling_account",
        identifier=f"HH-{attempt}",
        data=data,
        at=at + timedelta(seconds=100),
    )
    process_at_once([a.id], [b.id])
    assert statuses(a, b) == [("credited", ""), ("rejected", "duplicate_weighing")]


def wait_until(predicate, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


@requires_postgres
@pytest.mark.celery_worker
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("attempt", REPEAT)
def test_same_serial_on_the_real_worker_credited_once(api, partner_factory, make_user, celery_worker, attempt):
    """Two partners' batches, each with the same serials, consumed by a real worker with two processes."""
    from backend.ledger.models import LedgerTransaction

    celery_worker.stop()
    celery_worker.start(concurrency=2)
    shops = [partner_factory(methodologies=["efficient_appliance"]) for _ in range(2)]
    for n, shop in enumerate(shops):
        binding_create(resident=make_user(), kind="merchant_receipt", identifier=f"W{n}-{attempt}")
    barrier = threading.Barrier(2)

    def submit(n, shop):
        try:
            items = [
                ride(
                    f"w{n}-{i}",
                    methodology="efficient_appliance",
                    kind="merchant_receipt",
                    identifier=f"W{n}-{attempt}",
                    minutes_ago=60 * 24 * (i % 6) + 30 + i,
                    **appliance(f"SN-W{i}"),
                )
                for i in range(6)
            ]
            barrier.wait()
            assert signed_post(api.__class__(), shop.pk, shop.secret, {"actions": items}).status_code == 202
        finally:
            connection.close()

    threads = [threading.Thread(target=submit, args=(n, s)) for n, s in enumerate(shops)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wait_until(lambda: Action.objects.count() == 12 and not Action.objects.filter(status="received").exists())
    credited = Action.objects.filter(status="credited")
    assert credited.count() == 6
    assert sorted(credited.values_list("data__serial", flat=True)) == [f"SN-W{i}" for i in range(6)]
    assert set(Action.objects.exclude(status="credited").values_list("reason", flat=True)) == {
        "serial_already_credited"
    }
    assert LedgerTransaction.objects.filter(idempotency_key__startswith="action:").count() == 6
