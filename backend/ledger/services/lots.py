"""Points lots: consuming them soonest expiry first, and the default lot handler of a posting (a credit to a
resident's points account adds to its lot of that expiry month, a debit consumes lots). Expiry dates are pure
functions in `backend.ledger.expiry`, shared with the selectors.

One earned lot per account and expiry date while it is not expired (the partial unique index
`ledger_lot_one_per_month`): a credit adds to the month's lot instead of inserting a row per credit. The lot's
`transaction` is the credit that opened it; nothing finds a lot by transaction: a reversal takes a credit's points
back from the earned lot of the credit's expiry date first (`first_from_expiry`)."""

from datetime import datetime

from django.db import connection
from django.db.models import F
from django.utils.translation import gettext as _

from backend.core.bulk import BoundCursor
from backend.core.errors import ApplicationError
from backend.ledger.expiry import lot_expires_at
from backend.ledger.models import (
    LedgerTransaction,
    LotConsumption,
    PointsLot,
)
from backend.ledger.services.accounts import AccountRow

# Soonest expiry first, in one statement: lock the account's open lots, take what is needed from each in order,
# record each take. The caller compares what the consumptions add up to with what it asked for.
LOTS_CONSUME = (
    "WITH open AS (SELECT id, remaining, expires_at FROM ledger_pointslot"
    " WHERE account_id = %s AND expired_at IS NULL AND remaining > 0 AND expires_at > %s"
    " ORDER BY expires_at, id FOR UPDATE),"
    " take AS (SELECT id, expires_at, LEAST(remaining, %s - before)::bigint AS n FROM (SELECT id, remaining,"
    " expires_at, sum(remaining) OVER (ORDER BY expires_at, id) - remaining AS before FROM open) r"
    " WHERE before < %s),"
    " used AS (UPDATE ledger_pointslot l SET remaining = l.remaining - take.n FROM take WHERE l.id = take.id)"
    " INSERT INTO ledger_lotconsumption (lot_id, transaction_id, kind, amount)"
    " SELECT id, %s, %s, n FROM take ORDER BY expires_at, id RETURNING amount"
)


def _lots_consume(
    *,
    account_id: int,
    points: int,
    txn_id: int,
    kind: str,
    now: datetime,
    first_from_expiry: datetime | None = None,
) -> None:
    """Take `points` out of the account's lots: the earned lot expiring at `first_from_expiry` first (reversing
    a credit takes back from the lot it was added to), then soonest expiry first among lots not yet due. Caller
    holds the account row lock, which serialises every change to its lots (spend, expiry, reversal, credit)."""
    if first_from_expiry is None and connection.vendor == "postgresql":  # a spend: one round trip
        with connection.wrap_database_errors, BoundCursor() as cur:
            cur.execute(LOTS_CONSUME, [account_id, now, points, points, txn_id, str(kind)], prepare=True)
            taken = sum(row[0] for row in cur.fetchall())
        if taken != points:
            raise ApplicationError(_("Not enough spendable points."), code="insufficient_points")
        return
    lots = list(
        PointsLot.objects.select_for_update()
        .filter(account_id=account_id, expired_at__isnull=True, remaining__gt=0, expires_at__gt=now)
        .order_by("expires_at", "id")
    )
    if first_from_expiry is not None:
        # Due but not yet expired counts too: the credit's points are still there until the expiry run.
        own = list(
            PointsLot.objects.select_for_update().filter(
                account_id=account_id,
                kind=PointsLot.Kind.EARNED,
                expires_at=first_from_expiry,
                expired_at__isnull=True,
                remaining__gt=0,
            )
        )
        own_ids = {lot.id for lot in own}
        lots = own + [lot for lot in lots if lot.id not in own_ids]
    left = points
    consumptions = []
    for lot in lots:
        if left == 0:
            break
        take = min(lot.remaining, left)
        lot.remaining -= take
        left -= take
        consumptions.append(LotConsumption(lot=lot, transaction_id=txn_id, kind=kind, amount=take))
    if left:
        raise ApplicationError(_("Not enough spendable points."), code="insufficient_points")
    PointsLot.objects.bulk_update([c.lot for c in consumptions], ["remaining"])
    LotConsumption.objects.bulk_create(consumptions)


def lot_add(*, account_id: int, txn_id: int, points: int, expires_at: datetime) -> None:
    """Add earned points to the account's lot of that expiry date, opening it if there is none. Caller holds
    the account row lock (balances before lots), so two credits never open the same month's lot at once; the
    unique index `ledger_lot_one_per_month` is the backstop."""
    updated = PointsLot.objects.filter(
        account_id=account_id, kind=PointsLot.Kind.EARNED, expires_at=expires_at, expired_at__isnull=True
    ).update(amount=F("amount") + points, remaining=F("remaining") + points)
    if not updated:
        PointsLot.objects.create(
            account_id=account_id, transaction_id=txn_id, amount=points, remaining=points, expires_at=expires_at
        )


def _default_lots(txn: LedgerTransaction, acct: AccountRow, delta: int, now: datetime, months: int) -> None:
    if delta > 0:
        lot_add(account_id=acct.id, txn_id=txn.id, points=delta, expires_at=lot_expires_at(txn.effective_at, months))
    else:
        _lots_consume(account_id=acct.id, points=-delta, txn_id=txn.id, kind=LotConsumption.Kind.SPEND, now=now)
