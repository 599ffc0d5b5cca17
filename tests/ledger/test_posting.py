from datetime import UTC, datetime

import pytest
from django.db import DatabaseError, IntegrityError, connection, transaction

from backend.core.errors import ApplicationError
from backend.ledger.models import Account, LedgerTransaction, PointsLot, Posting
from backend.ledger.selectors import wallet_get
from backend.ledger.services import (
    SHANGHAI,
    Leg,
    action_credits_post_bulk,
    ledger_post,
    lot_expires_at,
    points_spend,
)
from tests.conftest import requires_postgres
from tests.ledger.helpers import assert_ledger_invariants, credit

pytestmark = [pytest.mark.django_db, requires_postgres]


def test_lot_expiry_is_end_of_twelfth_month_after_earning_in_shanghai():
    # 2026-11-30 20:00 UTC is already December 1st in Shanghai.
    assert lot_expires_at(datetime(2026, 11, 24, 3, tzinfo=UTC)).isoformat() == "2027-12-01T00:00:00+08:00"
    assert lot_expires_at(datetime(2026, 11, 30, 20, tzinfo=UTC)).isoformat() == "2028-01-01T00:00:00+08:00"
    assert lot_expires_at(datetime(2026, 1, 5, tzinfo=UTC), 1).isoformat() == "2026-03-01T00:00:00+08:00"


def test_bulk_credit_posts_balanced_transactions_lots_and_balances():
    credits = [credit(1, points=10), credit(2, points=20), credit(1, points=5, grams=0), credit(3, points=0, grams=0)]
    result = action_credits_post_bulk(credits=credits)
    assert set(result) == {c.idempotency_key for c in credits[:3]}  # zero credit skipped
    points1 = Account.objects.get(key="resident:1:points")
    assert points1.balance == 15
    assert Posting.objects.filter(transaction_id=result[credits[2].idempotency_key]).count() == 2
    # Both credits of resident 1 expire on the same date: one lot holds them.
    assert list(PointsLot.objects.filter(account=points1).values_list("amount", "remaining")) == [(15, 15)]
    assert wallet_get(resident_id=1)["carbon_g"] == 500
    assert_ledger_invariants()


def test_bulk_credit_uses_a_constant_number_of_queries(django_assert_max_num_queries):
    action_credits_post_bulk(credits=[credit(9, points=1)])  # system accounts exist now
    for size in (10, 300):
        with django_assert_max_num_queries(12):
            action_credits_post_bulk(credits=[credit(1000 + i) for i in range(size)])
    assert_ledger_invariants()


def test_bulk_credit_is_idempotent_and_detects_conflicts():
    c = credit(5, points=7)
    first = action_credits_post_bulk(credits=[c])
    again = action_credits_post_bulk(credits=[c, credit(6)])
    assert again[c.idempotency_key] == first[c.idempotency_key]
    assert Account.objects.get(key="resident:5:points").balance == 7
    changed = credit(5, points=8, key=c.idempotency_key)
    with pytest.raises(ApplicationError) as err:
        action_credits_post_bulk(credits=[changed])
    assert err.value.get_codes() == "idempotency_conflict"


def test_single_post_is_idempotent_and_conflicts_on_different_content():
    legs = [Leg("system:points_issuance", -3), Leg("resident:7:points", 3)]
    kw = dict(kind="transfer", reason="bonus", source_type="test", source_id=1, idempotency_key="k1")
    first = ledger_post(postings=legs, **kw)
    assert ledger_post(postings=legs, **kw) == first
    with pytest.raises(ApplicationError) as err:
        ledger_post(postings=[Leg("system:points_issuance", -4), Leg("resident:7:points", 4)], **kw)
    assert err.value.get_codes() == "idempotency_conflict"


def test_service_refuses_unbalanced_postings_and_money_needs_matching_currency():
    with pytest.raises(ApplicationError) as err:
        ledger_post(
            kind="transfer",
            reason="x",
            source_type="t",
            source_id=1,
            idempotency_key="u1",
            postings=[Leg("merchant:1:money:CNY", 100), Leg("system:payment_clearing:USD", -100)],
        )
    assert err.value.get_codes() == "ledger_unbalanced"
    txn = ledger_post(
        kind="transfer",
        reason="order 1",
        source_type="order",
        source_id=1,
        idempotency_key="u2",
        postings=[Leg("merchant:1:money:CNY", 1200), Leg("system:payment_clearing:CNY", -1200)],
    )
    assert Account.objects.get(key="merchant:1:money:CNY").balance == 1200
    assert {p.currency for p in Posting.objects.filter(transaction_id=txn)} == {"CNY"}


def test_spend_is_fifo_by_expiry_and_refuses_overdraft():
    old, new = datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 6, 1, tzinfo=UTC)
    action_credits_post_bulk(credits=[credit(11, points=50, effective_at=new), credit(11, points=30, effective_at=old)])
    points_spend(resident_id=11, points=40, idempotency_key="s1", reason="coffee", source_type="voucher", source_id=1)
    lots = PointsLot.objects.filter(account__key="resident:11:points")
    lots = {lot.expires_at.astimezone(SHANGHAI).month: lot.remaining for lot in lots}
    assert lots == {4: 0, 7: 40}  # the March lot (expiring first) was emptied first
    with pytest.raises(ApplicationError) as err:
        points_spend(resident_id=11, points=41, idempotency_key="s2", reason="x", source_type="voucher", source_id=2)
    assert err.value.get_codes() == "insufficient_points"
    assert wallet_get(resident_id=11)["points_balance"] == 40
    assert_ledger_invariants()


def _raw_txn(cur, key):
    cur.execute(
        "INSERT INTO ledger_ledgertransaction (kind, reason, source_type, idempotency_key, content_hash, effective_at)"
        " VALUES ('transfer', 'raw', 'test', %s, '', now()) RETURNING id",
        [key],
    )
    return cur.fetchone()[0]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("amounts", [(100, -99), (100,), ()])
def test_database_refuses_unbalanced_transaction_when_service_is_bypassed(amounts):
    a = Account.objects.create(key="resident:1:points", kind="resident", owner_id=1, name="points", unit="points")
    b = Account.objects.create(key="system:points_issuance", kind="system", name="points_issuance", unit="points")

    def post_raw():
        with transaction.atomic(), connection.cursor() as cur:
            txn = _raw_txn(cur, "raw-1")
            for account, amount in zip((a, b), amounts, strict=False):
                cur.execute(
                    "INSERT INTO ledger_posting (transaction_id, account_id, unit, currency, amount)"
                    " VALUES (%s, %s, 'points', '', %s)",
                    [txn, account.id, amount],
                )

    with pytest.raises(IntegrityError, match="ledger transaction"):
        post_raw()
    assert not LedgerTransaction.objects.exists()
    # A balanced one commits; appending to it later is refused too.
    with transaction.atomic(), connection.cursor() as cur:
        txn = _raw_txn(cur, "raw-2")
        cur.execute(
            "INSERT INTO ledger_posting (transaction_id, account_id, unit, currency, amount)"
            " VALUES (%s, %s, 'points', '', 5), (%s, %s, 'points', '', -5)",
            [txn, a.id, txn, b.id],
        )
    with pytest.raises(IntegrityError, match="closed"), transaction.atomic(), connection.cursor() as cur:
        cur.execute(
            "INSERT INTO ledger_posting (transaction_id, account_id, unit, currency, amount)"
            " VALUES (%s, %s, 'points', '', 1), (%s, %s, 'points', '', -1)",
            [txn, a.id, txn, b.id],
        )


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("late", ["posting", "empty_transaction"])
def test_zero_sum_check_cannot_be_skipped_after_an_early_check(late):
    """The check runs once per commit; forcing it early (SET CONSTRAINTS IMMEDIATE) and then adding an
    unbalanced posting, or a transaction without postings, must still fail at commit."""
    a = Account.objects.create(key="resident:2:points", kind="resident", owner_id=2, name="points", unit="points")
    b = Account.objects.create(key="system:points_issuance", kind="system", name="points_issuance", unit="points")

    def early_check_then_late_write():
        with transaction.atomic(), connection.cursor() as cur:
            txn = _raw_txn(cur, "early-1")
            cur.execute(
                "INSERT INTO ledger_posting (transaction_id, account_id, unit, currency, amount)"
                " VALUES (%s, %s, 'points', '', 5), (%s, %s, 'points', '', -5)",
                [txn, a.id, txn, b.id],
            )
            cur.execute("SET CONSTRAINTS ALL IMMEDIATE")  # the check runs now, and passes
            cur.execute("SET CONSTRAINTS ALL DEFERRED")
            if late == "posting":
                cur.execute(
                    "INSERT INTO ledger_posting (transaction_id, account_id, unit, currency, amount)"
                    " VALUES (%s, %s, 'points', '', 7)",
                    [txn, a.id],
                )
            else:
                _raw_txn(cur, "early-2")

    with pytest.raises(IntegrityError, match="ledger transaction"):
        early_check_then_late_write()
    assert not LedgerTransaction.objects.exists()


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE ledger_posting SET amount = amount + 1",
        "DELETE FROM ledger_posting",
        "UPDATE ledger_ledgertransaction SET reason = 'x'",
        "DELETE FROM ledger_ledgertransaction",
    ],
)
def test_postings_and_transactions_refuse_update_and_delete(statement):
    action_credits_post_bulk(credits=[credit(1)])
    with pytest.raises(DatabaseError, match="immutable"), transaction.atomic(), connection.cursor() as cur:
        cur.execute(statement)
    assert Posting.objects.count() == 4
