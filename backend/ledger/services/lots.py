"""Points lots: consuming them soonest expiry first, and the default lot handler of a posting (a credit to a
resident's points account creates a lot, a debit consumes lots). Expiry dates are pure functions in
`backend.ledger.expiry`, shared with the selectors."""

from datetime import datetime

from django.db import connection
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
    " WHERE account_id = %s AND remaining > 0 AND expires_at > %s ORDER BY expires_at, id FOR UPDATE),"
    " take AS (SELECT id, expires_at, LEAST(remaining, %s - before)::bigint AS n FROM (SELECT id, remaining,"
    " expires_at, sum(remaining) OVER (ORDER BY expires_at, id) - remaining AS before FROM open) r"
    " WHERE before < %s),"
    " used AS (UPDATE ledger_pointslot l SET remaining = l.remaining - take.n FROM take WHERE l.id = take.id)"
    " INSERT INTO ledger_lotconsumption (lot_id, transaction_id, kind, amount)"
    " SELECT id, %s, %s, n FROM take ORDER BY expires_at, id RETURNING amount"
)


def _lots_consume(
    *, account_id: int, points: int, txn_id: int, kind: str, now: datetime, first_from_txn: int | None = None
) -> None:
    """Take `points` out of the account's lots: lots of `first_from_txn` first (reversing a credit takes back
    its own lot), then soonest expiry first among lots not yet due. Caller holds the account row lock, which
    serialises every change to its lots (spend, expiry, reversal)."""
    if first_from_txn is None and connection.vendor == "postgresql":  # a spend: one round trip
        with connection.wrap_database_errors, BoundCursor() as cur:
            cur.execute(LOTS_CONSUME, [account_id, now, points, points, txn_id, str(kind)], prepare=True)
            taken = sum(row[0] for row in cur.fetchall())
        if taken != points:
            raise ApplicationError(_("Not enough spendable points."), code="insufficient_points")
        return
    lots = list(
        PointsLot.objects.select_for_update()
        .filter(account_id=account_id, remaining__gt=0, expires_at__gt=now)
        .order_by("expires_at", "id")
    )
    if first_from_txn is not None:
        own = list(
            PointsLot.objects.select_for_update()
            .filter(account_id=account_id, remaining__gt=0, transaction_id=first_from_txn)
            .order_by("expires_at", "id")
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


def _default_lots(txn: LedgerTransaction, acct: AccountRow, delta: int, now: datetime, months: int) -> None:
    if delta > 0:
        PointsLot.objects.create(
            account_id=acct.id,
            transaction=txn,
            amount=delta,
            remaining=delta,
            expires_at=lot_expires_at(txn.effective_at, months),
        )
    else:
        _lots_consume(account_id=acct.id, points=-delta, txn_id=txn.id, kind=LotConsumption.Kind.SPEND, now=now)
