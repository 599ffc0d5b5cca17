"""Domain verbs on top of posting: release or reject a pending credit, spend points, reverse a transaction,
expire due lots. Each is idempotent per key and takes the posting lock order (accounts by id, then lots)."""

from datetime import datetime

from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext as _

from backend.core.errors import ApplicationError, ConflictError
from backend.ledger.expiry import lot_expires_at, lot_last_valid_day
from backend.ledger.models import (
    Account,
    LedgerTransaction,
    LotConsumption,
    PointsLot,
)
from backend.ledger.services.accounts import AccountRow, resident_account_key
from backend.ledger.services.lots import _lots_consume
from backend.ledger.services.posting import Kind, Leg, LotHandler, _post_one


def _locked_transaction(**lookup) -> LedgerTransaction:
    # Transactions are immutable, but a row lock on the original serialises release vs. reversal.
    txn = LedgerTransaction.objects.select_for_update().filter(**lookup).first()
    if txn is None:
        raise ApplicationError(_("No such ledger transaction."), code="not_found", status_code=404)
    return txn


@transaction.atomic
def pending_credit_release(*, idempotency_key: str) -> int:
    """Make a pending action credit spendable: move its carbon and points from the resident's pending accounts
    to the real ones, creating the points lot (expiry from the action's month). Idempotent; returns the
    releasing transaction id. A reversed (rejected) credit cannot be released: `pending_credit_reversed`."""
    original = _locked_transaction(idempotency_key=idempotency_key)
    release = LedgerTransaction.objects.filter(releases=original).values_list("id", flat=True).first()
    if release:
        return release
    if LedgerTransaction.objects.filter(reverses=original).exists():
        raise ConflictError(_("This pending credit was rejected."), code="pending_credit_reversed")
    legs = []
    for posting in original.postings.select_related("account"):
        acct = posting.account
        if acct.kind == Account.Kind.RESIDENT and acct.name.endswith("_pending"):
            legs += [
                Leg(acct.key, -posting.amount),
                Leg(resident_account_key(acct.owner_id, acct.name.removesuffix("_pending")), posting.amount),
            ]
    if not legs:
        raise ApplicationError(_("This credit is not pending."), code="not_pending")
    return _post_one(
        kind=Kind.PENDING_RELEASE,
        reason=original.reason,
        source_type=original.source_type,
        source_id=original.source_id,
        idempotency_key=f"release:{idempotency_key}",
        legs=legs,
        effective_at=original.effective_at,
        releases_id=original.id,
        points_expiry_months=original.lot_expiry_months or 12,
    )


@transaction.atomic
def pending_credit_reverse(*, idempotency_key: str, reason: str) -> int:
    """Reject a pending credit: a reversing transaction takes the pending carbon and points back to issuance.
    Idempotent; a released credit cannot be rejected this way (`pending_credit_released`)."""
    original = _locked_transaction(idempotency_key=idempotency_key)
    reversal = LedgerTransaction.objects.filter(reverses=original).values_list("id", flat=True).first()
    if reversal:
        return reversal
    if LedgerTransaction.objects.filter(releases=original).exists():
        raise ConflictError(_("This pending credit was already released."), code="pending_credit_released")
    return transaction_reverse(transaction_id=original.id, reason=reason, idempotency_key=f"reverse:{idempotency_key}")


def points_spend(
    *,
    resident_id: int,
    points: int,
    idempotency_key: str,
    reason: str,
    source_type: str,
    source_id: int,
    to_account: str = "redemption_hold",
    savepoint: bool = True,
    content: dict | None = None,
) -> int:
    """Spend a resident's points, consuming lots soonest expiry first (lots already due are not spendable).
    `to_account` is a system account name or a full account key. Raises `insufficient_points` when short.
    `savepoint=False` inside a transaction that is rolled back as a whole on any error (as `ledger_post`).
    `content`: what the idempotency key's content hash covers, when the caller defines it (as the database
    function `ledger_points_spend`'s callers do); by default the generic content of a posting."""
    if points <= 0:
        raise ApplicationError(_("Spend a positive number of points."), code="ledger_invalid_amount")
    target = to_account if ":" in to_account else f"system:{to_account}"
    return _post_one(
        kind=Kind.POINTS_SPEND,
        reason=reason,
        source_type=source_type,
        source_id=source_id,
        idempotency_key=idempotency_key,
        legs=[Leg(resident_account_key(resident_id, "points"), -points), Leg(target, points)],
        savepoint=savepoint,
        content=content,
    )


@transaction.atomic
def transaction_reverse(*, transaction_id: int, reason: str, idempotency_key: str) -> int:
    """Post the exact opposite of a transaction, referencing it. Points taken back from a resident come out of
    the credit's own lot first (then soonest expiry); points given back by reversing a spend or an expiry
    return as lots with their original expiry. Each transaction is reversed at most once (`already_reversed`);
    reversals themselves are not reversible."""
    original = _locked_transaction(id=transaction_id)
    if original.kind == Kind.REVERSAL:
        raise ApplicationError(_("A reversal cannot be reversed."), code="not_reversible")
    if original.kind == Kind.ACTION_CREDIT and LedgerTransaction.objects.filter(releases=original).exists():
        raise ConflictError(
            _("This pending credit was released: reverse the release first."), code="pending_credit_released"
        )
    postings = list(original.postings.select_related("account").order_by("id"))
    legs = [Leg(p.account.key, -p.amount) for p in postings]

    def lots(txn: LedgerTransaction, acct: AccountRow, delta: int, now: datetime, _months: int) -> None:
        if delta < 0:
            _lots_consume(
                account_id=acct.id,
                points=-delta,
                txn_id=txn.id,
                kind=LotConsumption.Kind.REVERSAL,
                now=now,
                # The credit's points were added to its account's earned lot of this expiry date.
                first_from_expiry=lot_expires_at(original.effective_at, original.lot_expiry_months or 12),
            )
            return
        consumed = LotConsumption.objects.filter(transaction=original, lot__account_id=acct.id).select_related("lot")
        restored = [
            PointsLot(
                account_id=acct.id,
                transaction=txn,
                kind=PointsLot.Kind.RESTORED,
                amount=c.amount,
                remaining=c.amount,
                expires_at=c.lot.expires_at,
            )
            for c in consumed
        ]
        if sum(lot.amount for lot in restored) != delta:
            raise ApplicationError(_("Lots do not explain this transaction."), code="ledger_inconsistent")
        PointsLot.objects.bulk_create(restored)

    return _post_one(
        kind=Kind.REVERSAL,
        reason=reason,
        source_type=original.source_type,
        source_id=original.source_id,
        idempotency_key=idempotency_key,
        legs=legs,
        effective_at=timezone.now(),
        content={"reverses": original.id, "reason": reason},
        reverses_id=original.id,
        lot_handler=lots,
    )


def points_lots_expire(*, now: datetime | None = None) -> int:
    """Expire what is left of every due lot: one transaction per lot (key `expiry:lot:<id>`, so once per lot
    however often this runs), moving the points to system:points_expired. A due lot already spent out is only
    marked expired: it leaves the due index, and a late credit of its month opens a new lot. Takes the same
    locks as spending (the account row, then its lots). Returns how many lots were expired by this run."""
    now = now or timezone.now()
    due_lots = PointsLot.objects.filter(expired_at__isnull=True, expires_at__lte=now)
    account_ids = sorted(set(due_lots.values_list("account_id", flat=True)))
    expired = 0
    for account_id in account_ids:
        with transaction.atomic():
            account = Account.objects.select_for_update().get(id=account_id)
            due = list(due_lots.select_for_update().filter(account_id=account_id).order_by("expires_at", "id"))
            spent_out = [lot.id for lot in due if lot.remaining == 0]
            if spent_out:
                PointsLot.objects.filter(id__in=spent_out).update(expired_at=now)
            for lot in due:
                if lot.remaining == 0:
                    continue
                _post_one(
                    kind=Kind.POINTS_EXPIRY,
                    reason=f"Points expired (valid through {lot_last_valid_day(lot.expires_at).isoformat()})",
                    source_type="points_lot",
                    source_id=lot.id,
                    idempotency_key=f"expiry:lot:{lot.id}",
                    legs=[Leg(account.key, -lot.remaining), Leg("system:points_expired", lot.remaining)],
                    effective_at=lot.expires_at,
                    lot_handler=_expire_lot(lot, now),
                )
                expired += 1
    return expired


def _expire_lot(lot: PointsLot, now: datetime) -> LotHandler:
    def handler(txn: LedgerTransaction, acct: AccountRow, delta: int, _now: datetime, _months: int) -> None:
        LotConsumption.objects.create(lot=lot, transaction=txn, kind=LotConsumption.Kind.EXPIRY, amount=-delta)
        PointsLot.objects.filter(id=lot.id).update(remaining=F("remaining") + delta, expired_at=now)

    return handler
