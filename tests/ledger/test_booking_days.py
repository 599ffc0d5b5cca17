"""Booking days and sealed roots: every ledger transaction is in exactly one day's tree. Imported history
(`ledger_backfill`) is booked on its own still-open past day, so that day's root can be computed at once; a day
with a published root takes nothing more, a root is only computed for a finished day and never changes, and a
root computation waits for a backfill of its day in flight instead of missing it (real PostgreSQL)."""

import threading
from datetime import UTC, datetime, time, timedelta

import pytest
from django.db import IntegrityError, connection, connections, transaction

from backend.core.days import SHANGHAI, local_today
from backend.core.errors import ApplicationError
from backend.ledger import selectors
from backend.ledger.models import LedgerTransaction, MerkleRoot
from backend.ledger.services import action_credits_post_bulk, integrity, ledger_backfill, merkle_root_compute
from tests.conftest import requires_postgres
from tests.ledger.helpers import assert_ledger_invariants, credit
from tests.ledger.test_merkle_and_api import verify

pytestmark = [requires_postgres]


def noon(days_ago: int) -> datetime:
    return datetime.combine(local_today() - timedelta(days=days_ago), time(12), tzinfo=SHANGHAI).astimezone(UTC)


def booked(key: str):
    return LedgerTransaction.objects.get(idempotency_key=key).booked_on


def raw_transaction(booked_on) -> None:
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO ledger_ledgertransaction (kind, reason, source_type, idempotency_key, content_hash,"
            " effective_at, booked_on) VALUES ('transfer', 'raw', 'test', %s, '', now(), %s)",
            [f"raw:{booked_on}:{datetime.now().timestamp()}", booked_on],
        )


@pytest.mark.django_db
def test_ordinary_postings_are_booked_today_and_backfills_on_their_open_past_day(make_user):
    resident = make_user()
    today, two_days_ago = local_today(), local_today() - timedelta(days=2)
    action_credits_post_bulk(credits=[credit(resident.id, key="now", effective_at=noon(2))])
    with ledger_backfill():
        action_credits_post_bulk(
            credits=[credit(resident.id, key="old", effective_at=noon(2)), credit(resident.id, key="new")]
        )
    # The ordinary path books the posting day whatever the action's time; a backfill books the action's day.
    assert (booked("now"), booked("old"), booked("new")) == (today, two_days_ago, today)
    root = merkle_root_compute(day=two_days_ago)
    assert root.leaf_count == 1
    old = LedgerTransaction.objects.get(idempotency_key="old")
    proof = selectors.transaction_proof(resident_id=resident.id, transaction_id=old.id)
    assert proof["day"] == two_days_ago and verify(proof["leaf"], proof["proof"], proof["root"])
    assert_ledger_invariants()


@pytest.mark.django_db
def test_a_sealed_day_takes_no_more_transactions_and_its_root_never_changes(make_user):
    resident = make_user()
    yesterday = local_today() - timedelta(days=1)
    with ledger_backfill():
        action_credits_post_bulk(credits=[credit(resident.id, key="first", effective_at=noon(1))])
    root = merkle_root_compute(day=yesterday)
    assert root.leaf_count == 1

    # Given the day is sealed, when history for it is imported, then it is booked today instead ...
    with ledger_backfill():
        action_credits_post_bulk(credits=[credit(resident.id, key="late", effective_at=noon(1))])
    assert booked("late") == local_today()
    # ... and the database refuses a booking on it behind the services' back, as it refuses a future day.
    for day, refusal in ((yesterday, "is sealed"), (local_today() + timedelta(days=1), "has not begun")):
        with pytest.raises(IntegrityError, match=refusal), transaction.atomic():
            raw_transaction(day)
    # A recomputation reproduces the stored root; the root cannot be altered or deleted.
    assert merkle_root_compute(day=yesterday).root == root.root
    for statement in ("UPDATE ledger_merkleroot SET root = repeat('0', 64)", "DELETE FROM ledger_merkleroot"):
        with pytest.raises(Exception, match="immutable"), transaction.atomic(), connection.cursor() as cur:
            cur.execute(statement)
    assert MerkleRoot.objects.get(day=yesterday).root == root.root
    assert_ledger_invariants()


@pytest.mark.django_db
def test_a_root_published_after_the_services_check_still_refuses_the_booking(make_user, monkeypatch):
    """The race the trigger closes: the day looked open to `_booking_day`, its root was published before the
    insert. The poster gets a clear 409 `ledger_day_sealed` (a retry books today), nothing is written."""
    from backend.ledger.services import posting

    resident = make_user()
    yesterday = local_today() - timedelta(days=1)
    merkle_root_compute(day=yesterday)
    monkeypatch.setattr(posting, "_booking_day", lambda effective_at: yesterday)  # the check ran before the root
    with ledger_backfill(), pytest.raises(ApplicationError) as refused:
        action_credits_post_bulk(credits=[credit(resident.id, key="raced", effective_at=noon(1))])
    assert refused.value.get_codes() == "ledger_day_sealed" and refused.value.status_code == 409
    assert not LedgerTransaction.objects.filter(idempotency_key="raced").exists()
    monkeypatch.undo()
    with ledger_backfill():
        action_credits_post_bulk(credits=[credit(resident.id, key="raced", effective_at=noon(1))])
    assert booked("raced") == local_today()
    assert_ledger_invariants()


@pytest.mark.django_db
def test_no_root_for_a_day_that_is_not_over_even_behind_the_services_back():
    with pytest.raises(ApplicationError) as refused:
        merkle_root_compute(day=local_today())
    assert refused.value.get_codes() == "day_not_finished"
    with pytest.raises(IntegrityError, match="not over"), transaction.atomic():
        MerkleRoot.objects.create(day=local_today(), root="00" * 32, leaf_count=0)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("attempt", range(3))
def test_a_root_waits_for_a_backfill_of_its_day_in_flight_and_includes_it(make_user, attempt):
    """Without the day's lock the root would read the day before the backfill commits: the backfilled
    transaction would then be in no day's tree."""
    resident = make_user()
    yesterday = local_today() - timedelta(days=1)
    posted, release = threading.Event(), threading.Event()
    errors = []

    def backfill():
        try:
            with transaction.atomic(), ledger_backfill():
                action_credits_post_bulk(credits=[credit(resident.id, key=f"inflight-{attempt}", effective_at=noon(1))])
                posted.set()
                release.wait(10)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
            posted.set()
        finally:
            connection.close()

    def compute():
        try:
            merkle_root_compute(day=yesterday)
        finally:
            connection.close()

    poster = threading.Thread(target=backfill)
    poster.start()
    assert posted.wait(10) and not errors
    computer = threading.Thread(target=compute)
    computer.start()
    computer.join(1)
    assert computer.is_alive()  # waiting for the day's lock the backfill holds
    release.set()
    poster.join(10)
    computer.join(10)
    assert not errors and not computer.is_alive()
    root = MerkleRoot.objects.get(day=yesterday)
    txn = LedgerTransaction.objects.get(idempotency_key=f"inflight-{attempt}")
    assert txn.booked_on == yesterday and root.leaf_count == 1
    assert selectors.transaction_proof(resident_id=resident.id, transaction_id=txn.id)["root"] == root.root


@pytest.mark.django_db(transaction=True)
def test_a_root_waits_until_no_transaction_begun_on_its_day_is_open(monkeypatch):
    """A database transaction begun on the day books its postings on that day and may still commit: the root
    refuses (`day_not_settled`, the beat task retries) rather than miss it. Another session's open transaction
    stands in for one begun before midnight (the day's end is moved past it)."""
    other = connections.create_connection("default")
    try:
        with other.cursor() as cur:
            cur.execute("BEGIN")
            cur.execute("SELECT 1")
        assert integrity.open_transactions_begun_before(datetime.now(UTC) + timedelta(minutes=1)) >= 1
        yesterday = local_today() - timedelta(days=1)
        monkeypatch.setattr(integrity, "day_bounds", lambda day: (None, datetime.now(UTC) + timedelta(minutes=1)))
        with pytest.raises(ApplicationError) as refused:
            merkle_root_compute(day=yesterday)
        assert refused.value.get_codes() == "day_not_settled"
        assert not MerkleRoot.objects.filter(day=yesterday).exists()
        with other.cursor() as cur:
            cur.execute("ROLLBACK")
        assert merkle_root_compute(day=yesterday).leaf_count == 0
    finally:
        other.close()
