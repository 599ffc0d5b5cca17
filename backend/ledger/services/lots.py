"""Points lots: consuming them soonest expiry first, and the default lot handler of a posting (a credit to a
resident's points account creates a lot, a debit consumes lots). Expiry dates are pure functions in
`backend.ledger.expiry`, shared with the selectors."""

from datetime import datetime

from django.utils.translation import gettext as _

from backend.core.errors import ApplicationError
from backend.ledger.expiry import lot_expires_at
from backend.ledger.models import (
    LedgerTransaction,
    LotConsumption,
    PointsLot,
)
from backend.ledger.services.accounts import AccountRow


def _lots_consume(
    *, account_id: int, points: int, txn_id: int, kind: str, now: datetime, first_from_txn: int | None = None
) -> None:
    """Take `points` out of the account's lots: lots of `first_from_txn` first (reversing a credit takes back
    its own lot), then soonest expiry first among lots not yet due. Caller holds the account row lock, which
    serialises every change to its lots (spend, expiry, reversal)."""
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
