"""Pending credits, reversals and expiry."""

from datetime import UTC, datetime, timedelta

import pytest

from backend.core.errors import ApplicationError
from backend.ledger import tasks
from backend.ledger.models import Account, LedgerTransaction, PointsLot, Posting
from backend.ledger.selectors import wallet_get
from backend.ledger.services import (
    action_credits_post_bulk,
    pending_credit_release,
    pending_credit_reverse,
    points_spend,
    transaction_reverse,
)
from tests.conftest import requires_postgres
from tests.ledger.helpers import assert_ledger_invariants, credit

pytestmark = [pytest.mark.django_db, requires_postgres]


def spend(resident, points, key):
    return points_spend(
        resident_id=resident, points=points, idempotency_key=key, reason="voucher", source_type="voucher", source_id=1
    )


def test_pending_credit_is_visible_not_spendable_until_released():
    c = credit(21, points=40, grams=300, pending=True)
    action_credits_post_bulk(credits=[c])
    wallet = wallet_get(resident_id=21)
    assert (wallet["points_pending"], wallet["points_balance"], wallet["carbon_pending_g"]) == (40, 0, 300)
    with pytest.raises(ApplicationError):
        spend(21, 1, "p-s1")
    release = pending_credit_release(idempotency_key=c.idempotency_key)
    assert pending_credit_release(idempotency_key=c.idempotency_key) == release
    wallet = wallet_get(resident_id=21)
    assert (wallet["points_pending"], wallet["points_balance"], wallet["carbon_g"]) == (0, 40, 300)
    assert wallet["points_lifetime"] == 40
    with pytest.raises(ApplicationError) as err:
        pending_credit_reverse(idempotency_key=c.idempotency_key, reason="rejected")
    assert err.value.get_codes() == "pending_credit_released"
    assert_ledger_invariants()


def test_rejected_pending_credit_is_reversed_once_and_cannot_be_released():
    c = credit(22, points=40, pending=True)
    action_credits_post_bulk(credits=[c])
    reversal = pending_credit_reverse(idempotency_key=c.idempotency_key, reason="Rejected by review")
    assert pending_credit_reverse(idempotency_key=c.idempotency_key, reason="Rejected by review") == reversal
    assert LedgerTransaction.objects.get(id=reversal).reverses.idempotency_key == c.idempotency_key
    wallet = wallet_get(resident_id=22)
    assert (wallet["points_pending"], wallet["carbon_pending_g"], wallet["carbon_g"]) == (0, 0, 0)
    with pytest.raises(ApplicationError) as err:
        pending_credit_release(idempotency_key=c.idempotency_key)
    assert err.value.get_codes() == "pending_credit_reversed"
    assert_ledger_invariants()


def test_reversing_a_spend_restores_points_with_their_original_expiry():
    c = credit(23, points=30)
    action_credits_post_bulk(credits=[c])
    spent = spend(23, 25, "r-s1")
    reversal = transaction_reverse(transaction_id=spent, reason="order cancelled", idempotency_key="r-1")
    assert transaction_reverse(transaction_id=spent, reason="order cancelled", idempotency_key="r-1") == reversal
    restored = PointsLot.objects.get(transaction_id=reversal)
    original = PointsLot.objects.get(transaction__idempotency_key=c.idempotency_key)
    assert (restored.amount, restored.expires_at) == (25, original.expires_at)
    assert wallet_get(resident_id=23)["points_balance"] == 30
    with pytest.raises(ApplicationError) as err:
        transaction_reverse(transaction_id=spent, reason="again", idempotency_key="r-2")
    assert err.value.get_codes() == "already_reversed"
    with pytest.raises(ApplicationError) as err:
        transaction_reverse(transaction_id=reversal, reason="again", idempotency_key="r-3")
    assert err.value.get_codes() == "not_reversible"
    assert_ledger_invariants()


def test_reversing_a_credit_takes_back_its_own_lot_first():
    first, second = credit(24, points=10), credit(24, points=10, effective_at=datetime.now(UTC) - timedelta(days=62))
    ids = action_credits_post_bulk(credits=[first, second])
    transaction_reverse(transaction_id=ids[first.idempotency_key], reason="fraud", idempotency_key="rc-1")
    lots = {lot.transaction.idempotency_key: lot.remaining for lot in PointsLot.objects.filter(account__owner_id=24)}
    assert lots == {first.idempotency_key: 0, second.idempotency_key: 10}
    wallet = wallet_get(resident_id=24)
    assert (wallet["points_balance"], wallet["points_lifetime"], wallet["carbon_g"]) == (10, 10, 500)
    assert_ledger_invariants()


def test_expiry_runs_once_per_lot_however_often_the_task_runs():
    old = datetime.now(UTC) - timedelta(days=500)
    action_credits_post_bulk(credits=[credit(25, points=50, effective_at=old), credit(25, points=7)])
    spend(25, 5, "e-s1")  # the due lot is not spendable: it comes out of the fresh one
    assert tasks.points_lots_expire.delay().get() == 1
    assert tasks.points_lots_expire.delay().get() == 0
    assert Account.objects.get(key="resident:25:points").balance == 2
    expired = Posting.objects.filter(account__key="system:points_expired").values_list("amount", flat=True)
    assert list(expired) == [50]
    wallet = wallet_get(resident_id=25)
    assert (wallet["points_balance"], wallet["points_lifetime"]) == (2, 57)
    assert wallet["points_expiring"][0]["points"] == 2
    assert_ledger_invariants()


def test_reconciliation_reports_no_drift_on_a_consistent_ledger():
    action_credits_post_bulk(credits=[credit(26)])
    assert tasks.balances_reconcile.delay().get() == 0
