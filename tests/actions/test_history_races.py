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
from backend.core.days import SHANGHAI
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


# --- the claims alone (PostgreSQL and SQLite): the read-based rules switched off, the database decides ------


@pytest.fixture
def reads_miss(monkeypatch):
    """As if the history read had run before the other batch committed (what a race looks like)."""
    from backend.actions.pipeline import evaluate, rules

    monkeypatch.setattr(rules, "HISTORY_RULES", {key: (lambda outcomes: None) for key in rules.HISTORY_RULES})
    monkeypatch.setattr(evaluate.rules, "double_claims", lambda outcomes: None)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("methodology", "kind", "data_a", "data_b", "gap", "expected"),
    [
        (
            "efficient_appliance",
            "merchant_receipt",
            appliance("SN-1"),
            appliance(" sn-1"),
            -86400,  # a day earlier: the daily cap of one appliance does not bite
            ("rejected", "serial_already_credited"),
        ),
        (
            "paperless_bill",
            "charging_account",
            {"count": "1"},
            {"count": "1"},
            60,
            ("rejected", "already_credited_this_month"),
        ),
        (
            "recycling",
            "recycling_account",
            {"mass_kg": "2", "material": "pet"},
            {"mass_kg": "3", "material": "PET"},
            299,
            ("rejected", "duplicate_weighing"),
        ),
        (
            "bus_ride",
            "metro_card",
            {"distance_km": "10", "duration_s": "1800"},
            {"distance_km": "10", "duration_s": "1800"},
            1799,
            ("flagged", "double_claim"),
        ),
    ],
)
def test_claims_decide_when_the_history_read_misses(
    partner_factory, make_user, reads_miss, methodology, kind, data_a, data_b, gap, expected
):
    first = partner_factory(methodologies=[methodology])
    second = partner_factory(methodologies=[methodology])
    resident = make_user()
    binding_create(resident=resident, kind=kind, identifier="SUBJ-1")
    binding_create(resident=resident, kind="transit_card", identifier="SUBJ-2")
    at = timezone.now() - timedelta(hours=3)
    a = stored_action(first, "a", methodology=methodology, kind=kind, identifier="SUBJ-1", data=data_a, at=at)
    actions_process(action_ids=[a.id])
    other_kind = "transit_card" if methodology == "bus_ride" else kind
    other_id = "SUBJ-2" if methodology == "bus_ride" else "SUBJ-1"
    b = stored_action(
        second,
        "b",
        methodology=methodology,
        kind=other_kind,
        identifier=other_id,
        data=data_b,
        at=at + timedelta(seconds=gap),
    )
    actions_process(action_ids=[b.id])
    a.refresh_from_db()
    b.refresh_from_db()
    assert a.status == "credited"
    assert (b.status, b.reason) == expected
    if expected[0] == "rejected":
        assert (b.grams, b.points) == (0, 0)


@pytest.mark.django_db
def test_weighings_a_window_apart_both_count(partner_factory, make_user, reads_miss):
    station = partner_factory(methodologies=["recycling"])
    binding_create(resident=make_user(), kind="recycling_account", identifier="HH-W")
    at = timezone.now() - timedelta(hours=3)
    data = {"mass_kg": "2", "material": "glass"}
    a = stored_action(
        station, "a", methodology="recycling", kind="recycling_account", identifier="HH-W", data=data, at=at
    )
    b = stored_action(
        station,
        "b",
        methodology="recycling",
        kind="recycling_account",
        identifier="HH-W",
        data=data,
        at=at + timedelta(seconds=300),
    )
    actions_process(action_ids=[a.id])
    actions_process(action_ids=[b.id])
    assert statuses(a, b) == [("credited", ""), ("credited", "")]


@pytest.mark.django_db
def test_a_rejected_review_frees_the_claim(partner_factory, make_user, reviewer, reads_miss):
    """A flagged appliance rejected on review gives its serial back: the genuine purchase can still earn."""
    from backend.actions.models import HistoryClaim
    from backend.actions.services import review_reject

    shop = partner_factory(methodologies=["efficient_appliance"])
    binding_create(resident=make_user(), kind="merchant_receipt", identifier="R-REV")
    a = stored_action(
        shop,
        "a",
        methodology="efficient_appliance",
        kind="merchant_receipt",
        identifier="R-REV",
        data=appliance("SN-REV"),
    )
    actions_process(action_ids=[a.id])
    Action.objects.filter(pk=a.pk).update(status="flagged", needs_review=True)
    assert HistoryClaim.objects.filter(action_id=a.id).exists()
    review_reject(action_id=a.id, reviewer=reviewer, note="fake receipt")
    assert not HistoryClaim.objects.filter(action_id=a.id).exists()
    b = stored_action(
        shop,
        "b",
        methodology="efficient_appliance",
        kind="merchant_receipt",
        identifier="R-REV",
        data=appliance("SN-REV"),
        at=timezone.now() - timedelta(days=1, hours=1),
    )
    actions_process(action_ids=[b.id])
    b.refresh_from_db()
    assert b.status == "credited"


@pytest.mark.django_db
def test_a_failing_chunk_does_not_block_the_chunks_after_it(partner, resident, monkeypatch):
    from backend.actions import services

    binding_create(resident=resident, kind="transit_card", identifier="CHUNK-1")
    at = timezone.now() - timedelta(hours=5)
    ids = [
        stored_action(
            partner,
            f"c-{i}",
            methodology="bus_ride",
            identifier="CHUNK-1",
            data={"distance_km": "5", "duration_s": "600"},
            at=at + timedelta(minutes=20 * i),
        ).id
        for i in range(3)
    ]
    real = services.actions_process

    def flaky(*, action_ids):
        if ids[0] in action_ids:
            raise RuntimeError("a bug no isolation caught")
        return real(action_ids=action_ids)

    monkeypatch.setattr(services, "RECONCILE_CHUNK", 1)
    monkeypatch.setattr(services, "actions_process", flaky)
    assert services.actions_reconcile(older_than=timedelta(seconds=-60)) == 3
    assert dict(Action.objects.values_list("id", "status")) == {
        ids[0]: "received",
        ids[1]: "credited",
        ids[2]: "credited",
    }


@requires_postgres  # SQLite (make run) posts ledger credits one by one
@pytest.mark.django_db
def test_claims_cost_the_same_number_of_queries_for_2_or_8_actions(partner_factory, make_user):
    """Weighings (window claims) and appliances (serial claims): a batch's queries do not grow with its size."""
    from django.test.utils import CaptureQueriesContext

    station = partner_factory(methodologies=["recycling"])
    binding_create(resident=make_user(), kind="recycling_account", identifier="HH-Q")
    # Each batch on a day of its own, in the morning (Asia/Shanghai), whatever the time the suite runs: a batch
    # that shares a day with an earlier one finds its cap row made and would cost one query less.
    start = (timezone.now() - timedelta(days=4)).astimezone(SHANGHAI).replace(hour=9, minute=0, second=0, microsecond=0)

    def run(prefix, n, offset):
        ids = [
            stored_action(
                station,
                f"{prefix}-{i}",
                methodology="recycling",
                kind="recycling_account",
                identifier="HH-Q",
                data={"mass_kg": "1", "material": "paper"},
                at=start + timedelta(hours=offset, seconds=400 * i),
            ).id
            for i in range(n)
        ]
        with CaptureQueriesContext(connection) as ctx:
            counts = actions_process(action_ids=ids)
        assert counts == {"credited": n}
        return len(ctx.captured_queries)

    run("warm-up", 1, -24)  # first credit of the resident creates their ledger accounts
    assert run("small", 2, 0) == run("large", 8, 24)
