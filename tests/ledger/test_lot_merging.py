"""One earned points lot per account and expiry date: credits add to it, reversals find it by expiry date,
spending and expiry keep working on merged lots."""

from datetime import UTC, datetime, timedelta

import pytest

from backend.ledger.expiry import lot_expires_at
from backend.ledger.models import LedgerTransaction, LotConsumption, PointsLot, Posting
from backend.ledger.selectors import wallet_get
from backend.ledger.services import (
    action_credits_post_bulk,
    pending_credit_release,
    points_lots_expire,
    points_spend,
    transaction_reverse,
)
from tests.conftest import requires_postgres
from tests.ledger.helpers import assert_ledger_invariants, credit

pytestmark = [pytest.mark.django_db, requires_postgres]


def lots_of(resident_id):
    return list(
        PointsLot.objects.filter(account__key=f"resident:{resident_id}:points")
        .order_by("expires_at", "id")
        .values_list("kind", "amount", "remaining", "expires_at", "expired_at")
    )


def spend(resident_id, points, key):
    return points_spend(
        resident_id=resident_id, points=points, idempotency_key=key, reason="r", source_type="t", source_id=1
    )


def test_credits_of_one_month_share_one_lot_across_batches_and_single_posts():
    now = datetime.now(UTC)
    action_credits_post_bulk(credits=[credit(301, points=10, effective_at=now), credit(301, points=5)])
    action_credits_post_bulk(credits=[credit(301, points=7)])
    pending = credit(301, points=3, pending=True)
    action_credits_post_bulk(credits=[pending])
    pending_credit_release(idempotency_key=pending.idempotency_key)  # the single-transaction path (`_post_one`)
    expiry = lot_expires_at(now)
    assert lots_of(301) == [("earned", 25, 25, expiry, None)]
    assert wallet_get(resident_id=301)["points_balance"] == 25
    assert_ledger_invariants()


def test_reversing_a_later_credit_takes_back_from_its_months_lot_first():
    # Given a lot opened by one credit and grown by another of the same month, and an older month's lot
    now = datetime.now(UTC)
    older = credit(302, points=40, effective_at=now - timedelta(days=62))
    first, second = credit(302, points=10, effective_at=now), credit(302, points=20, effective_at=now)
    ids = action_credits_post_bulk(credits=[older, first])
    ids |= action_credits_post_bulk(credits=[second])
    month_lot = PointsLot.objects.get(account__owner_id=302, expires_at=lot_expires_at(now))
    assert month_lot.transaction_id == ids[first.idempotency_key]  # the lot names the credit that opened it
    # When the second credit (not the lot's transaction) is reversed
    reversal = transaction_reverse(transaction_id=ids[second.idempotency_key], reason="fraud", idempotency_key="m-r1")
    # Then its points come out of its month's lot, not the older (sooner expiring) one
    taken = LotConsumption.objects.filter(transaction_id=reversal).values_list("lot_id", "amount", "kind")
    assert list(taken) == [(month_lot.id, 20, "reversal")]
    assert [(amount, remaining) for _, amount, remaining, _, _ in lots_of(302)] == [(40, 40), (30, 10)]
    wallet = wallet_get(resident_id=302)
    assert (wallet["points_balance"], wallet["points_lifetime"]) == (50, 50)
    assert_ledger_invariants()


def test_reversing_a_credit_whose_month_was_partly_spent_takes_soonest_expiry_next():
    now = datetime.now(UTC)
    older = credit(303, points=40, effective_at=now - timedelta(days=62))
    fresh = credit(303, points=10, effective_at=now)
    ids = action_credits_post_bulk(credits=[older, fresh])
    spend(303, 45, "m-s1")  # all of the older lot, 5 of the fresh one
    action_credits_post_bulk(credits=[credit(303, points=20, effective_at=now - timedelta(days=62))])  # older: 20
    transaction_reverse(transaction_id=ids[fresh.idempotency_key], reason="fraud", idempotency_key="m-r2")
    # 5 from its own month's lot, the other 5 from the soonest expiring one
    assert [(amount, remaining) for _, amount, remaining, _, _ in lots_of(303)] == [(60, 15), (10, 0)]
    assert wallet_get(resident_id=303)["points_balance"] == 15
    assert_ledger_invariants()


def test_reversal_finds_the_lot_of_a_credit_with_a_non_default_expiry_policy():
    now = datetime.now(UTC)
    six, twelve = credit(304, points=10, months=6), credit(304, points=10)
    ids = action_credits_post_bulk(credits=[six, twelve])
    assert LedgerTransaction.objects.get(id=ids[six.idempotency_key]).lot_expiry_months == 6
    assert LedgerTransaction.objects.get(id=ids[twelve.idempotency_key]).lot_expiry_months is None  # 12: default
    transaction_reverse(transaction_id=ids[twelve.idempotency_key], reason="fraud", idempotency_key="m-r3")
    left = {expires_at: remaining for _, _, remaining, expires_at, _ in lots_of(304)}
    # The 6-month lot expires first and would be taken first by a spend; the reversal took the 12-month one.
    assert left == {lot_expires_at(now, 6): 10, lot_expires_at(now, 12): 0}
    assert_ledger_invariants()


def test_reversing_a_spend_from_a_merged_lot_restores_a_lot_with_its_expiry():
    now = datetime.now(UTC)
    action_credits_post_bulk(credits=[credit(305, points=10), credit(305, points=10)])
    spent = spend(305, 15, "m-s2")
    reversal = transaction_reverse(transaction_id=spent, reason="cancelled", idempotency_key="m-r4")
    assert lots_of(305) == [
        ("earned", 20, 5, lot_expires_at(now), None),
        ("restored", 15, 15, lot_expires_at(now), None),
    ]
    assert PointsLot.objects.get(kind="restored", account__owner_id=305).transaction_id == reversal
    # Spending again takes the month's points whichever lot holds them
    spend(305, 20, "m-s3")
    assert [remaining for _, _, remaining, _, _ in lots_of(305)] == [0, 0]
    assert_ledger_invariants()


def test_a_merged_lot_expires_once_and_a_late_credit_of_its_month_opens_a_new_lot():
    # Given two credits of a month whose points are now due
    old = datetime.now(UTC) - timedelta(days=500)
    action_credits_post_bulk(
        credits=[credit(306, points=30, effective_at=old), credit(306, points=20, effective_at=old)]
    )
    # When expiry runs (twice)
    assert points_lots_expire() == 1
    assert points_lots_expire() == 0
    expired = Posting.objects.filter(account__key="system:points_expired")
    assert list(expired.values_list("amount", flat=True)) == [50]
    # Then a credit of that month arriving late is a lot of its own, expired by the next run with its own key
    action_credits_post_bulk(credits=[credit(306, points=5, effective_at=old)])
    lots = lots_of(306)
    assert [(amount, remaining, expired_at is None) for _, amount, remaining, _, expired_at in lots] == [
        (50, 0, False),
        (5, 5, True),
    ]
    assert points_lots_expire() == 1
    assert (
        LedgerTransaction.objects.filter(kind="points_expiry", idempotency_key__startswith="expiry:lot:").count() == 2
    )
    assert wallet_get(resident_id=306)["points_balance"] == 0
    assert_ledger_invariants()


def test_a_due_lot_spent_out_is_marked_expired_without_a_transaction():
    old = datetime.now(UTC) - timedelta(days=300)  # not due yet: spendable
    action_credits_post_bulk(credits=[credit(307, points=10, effective_at=old)])
    spend(307, 10, "m-s4")
    later = lot_expires_at(old) + timedelta(days=1)
    assert points_lots_expire(now=later) == 0
    assert lots_of(307)[0][4] == later  # out of the due index; a late credit of the month opens a new lot
    assert not LedgerTransaction.objects.filter(kind="points_expiry", reason__contains="expired").exists()
    assert_ledger_invariants()


def test_migration_merges_the_lots_of_one_account_and_expiry_and_moves_their_consumptions():
    from importlib import import_module

    from django.apps import apps
    from django.db import connection

    merge_lots = import_module("backend.ledger.migrations.0008_one_lot_per_month").merge_lots
    # Given lots as ledger 0007 wrote them: one per credit (the unique index dropped inside this test's transaction)
    now = datetime.now(UTC)
    ids = action_credits_post_bulk(credits=[credit(308, points=10), credit(309, points=4)])
    with connection.cursor() as cur:
        cur.execute("DROP INDEX ledger_lot_one_per_month")
    first = PointsLot.objects.get(account__owner_id=308)
    txn = ids[next(iter(ids))]
    second = PointsLot.objects.create(
        account_id=first.account_id, transaction_id=txn, amount=20, remaining=20, expires_at=first.expires_at
    )
    spend(308, 5, "m-s5")  # soonest expiry, then id: out of the first lot
    spent_lot = LotConsumption.objects.get(transaction__idempotency_key="m-s5").lot_id
    # When the migration's merge runs
    merge_lots(apps, connection.schema_editor())
    # Then one lot holds both, with the consumption moved to it; the other resident's lot is untouched
    lot = PointsLot.objects.get(account__owner_id=308)
    assert (lot.id, lot.amount, lot.remaining, lot.expires_at) == (first.id, 30, 25, lot_expires_at(now))
    assert spent_lot == first.id
    assert not PointsLot.objects.filter(id=second.id).exists()
    assert LotConsumption.objects.get(transaction__idempotency_key="m-s5").lot_id == lot.id
    assert PointsLot.objects.get(account__owner_id=309).amount == 4
    with connection.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM ledger_pointslot l LEFT JOIN (SELECT lot_id, sum(amount) s"
            " FROM ledger_lotconsumption GROUP BY lot_id) c ON c.lot_id = l.id"
            " WHERE l.amount <> l.remaining + coalesce(c.s, 0)"
        )
        assert cur.fetchone()[0] == 0
