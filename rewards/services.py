"""Where points are spent: redemption (two-phase, like a card authorisation), capture at the counter, cancel,
expiry, and the PIPL erasure hook. Catalogue and merchant writes are in rewards/catalogue.py.

    reward_redeem    resident -> system:redemption_hold (ledger points_spend, lots soonest expiry first),
                     one item out of stock, a voucher `issued`             [authorisation]
    voucher_capture  system:redemption_hold -> merchant:<id>:points, voucher `redeemed`, and a payable of
                     the face value to the merchant (backend/offsets/settlement.py)   [capture]
    voucher_cancel / voucher_expire
                     the hold transaction reversed (points back as lots with their original expiry), the item
                     back in stock, the per-resident limit claim given back, voucher `cancelled` / `expired`

`reward_redeem` lives in rewards/redemption.py (on PostgreSQL one statement and one round trip), re-exported here
with the voucher codes and the hold's ledger key.

Ledger idempotency keys: `voucher:<id>:hold`, `voucher:<id>:capture`, `voucher:<id>:release`: each happens at
most once per voucher, whatever retries or races do. Locks follow the order of rewards/locking.py.
"""

import logging
from collections import Counter
from datetime import datetime

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from backend.core.errors import ApplicationError
from backend.ledger.models import LedgerTransaction
from backend.ledger.services import Leg, ledger_post, transaction_reverse
from backend.offsets.settlement import payable_create
from rewards import locking
from rewards.cache import catalogue_changed
from rewards.models import MerchantStaff, Voucher
from rewards.redemption import (  # the authorisation half, part of this public face
    CODE_ALPHABET,
    CODE_LENGTH,
    HOLD_ACCOUNT,
    IDEMPOTENCY_KEY_RE,
    hold_content,
    hold_key,
    request_hash,
    reward_redeem,
    voucher_code_new,
    voucher_code_normalize,
)

__all__ = [
    "CODE_ALPHABET",
    "CODE_LENGTH",
    "HOLD_ACCOUNT",
    "IDEMPOTENCY_KEY_RE",
    "hold_content",
    "hold_key",
    "request_hash",
    "reward_redeem",
    "rewards_erase_lock",
    "rewards_erase_personal_data",
    "voucher_cancel",
    "voucher_capture",
    "voucher_code_new",
    "voucher_code_normalize",
    "voucher_expire",
    "vouchers_expire_due",
]

logger = logging.getLogger(__name__)


# --- capture at the counter -------------------------------------------------------------------------------


def _refuse_closed(voucher: Voucher, now: datetime) -> None:
    if voucher.status == Voucher.Status.REDEEMED:
        raise ApplicationError(
            _("This voucher was already redeemed."), code="voucher_already_redeemed", status_code=409
        )
    if voucher.status == Voucher.Status.CANCELLED:
        raise ApplicationError(_("This voucher was cancelled."), code="voucher_cancelled", status_code=409)
    if voucher.status == Voucher.Status.EXPIRED or voucher.expires_at <= now:
        raise ApplicationError(_("This voucher has expired."), code="voucher_expired", status_code=409)


def _voucher_not_found() -> ApplicationError:
    return ApplicationError(_("No such voucher at this merchant."), code="voucher_not_found", status_code=404)


@transaction.atomic
def voucher_capture(*, staff: MerchantStaff, code: str) -> Voucher:
    """Redeem a voucher at the counter: the held points go to the merchant's redeemed-points account (gone
    from the resident for good) and the voucher is `redeemed`. Another merchant's voucher is
    `voucher_not_found`, exactly like a code that does not exist."""
    voucher = (
        Voucher.objects.select_for_update(of=("self",))
        .select_related("reward")
        .filter(code=voucher_code_normalize(code), merchant_id=staff.merchant_id)
        .first()
    )
    if voucher is None:
        raise _voucher_not_found()
    now = timezone.now()
    _refuse_closed(voucher, now)
    ledger_post(
        kind=LedgerTransaction.Kind.TRANSFER,
        reason=f"Voucher {voucher.code} redeemed: {voucher.reward.title_zh}"[:255],
        source_type="voucher",
        source_id=voucher.pk,
        idempotency_key=f"voucher:{voucher.pk}:capture",
        postings=[
            Leg(HOLD_ACCOUNT, -voucher.points_cost),
            Leg(f"merchant:{voucher.merchant_id}:points", voucher.points_cost),
        ],
        savepoint=False,
    )
    voucher.status = Voucher.Status.REDEEMED
    voucher.redeemed_at = now
    voucher.redeemed_by_id = staff.user_id
    voucher.save(update_fields=["status", "redeemed_at", "redeemed_by"])
    # What the merchant is owed for it, in the same transaction (one payable per voucher, UNIQUE).
    payable_create(voucher=voucher)
    return voucher


# --- release: cancel and expiry ---------------------------------------------------------------------------


def _release(voucher: Voucher, status: str, reason: str, now: datetime, *, stock: bool = True) -> None:
    """Give everything back, once: caller holds the voucher row lock and has checked it is `issued`.
    `stock=False`: the caller returns the item itself, after the ledger of every voucher it releases (erasure:
    reward rows come last in the lock order, each reward once and in id order)."""
    if voucher.limit_period_key:
        locking.limit_release(
            reward_id=voucher.reward_id, resident_id=voucher.resident_id, period_key=voucher.limit_period_key
        )
    hold = LedgerTransaction.objects.filter(idempotency_key=hold_key(voucher.pk)).values_list("id", flat=True).get()
    transaction_reverse(transaction_id=hold, reason=reason[:255], idempotency_key=f"voucher:{voucher.pk}:release")
    if voucher.stock_taken and stock:
        locking.stock_return(reward_id=voucher.reward_id)
        catalogue_changed()
    voucher.status = status
    voucher.closed_at = now
    voucher.save(update_fields=["status", "closed_at"])


@transaction.atomic
def voucher_cancel(*, resident, code: str) -> Voucher:
    """The resident gives an unused voucher back: points return to their lots' original expiry, the item to
    stock, the limit claim is freed. Someone else's voucher is 404 `voucher_not_found`."""
    voucher = (
        Voucher.objects.select_for_update(of=("self",))
        .select_related("reward", "merchant")
        .filter(code=voucher_code_normalize(code), resident_id=resident.pk)
        .first()
    )
    if voucher is None:
        raise ApplicationError(_("No such voucher."), code="voucher_not_found", status_code=404)
    now = timezone.now()
    if voucher.status != Voucher.Status.ISSUED or voucher.expires_at > now:
        _refuse_closed(voucher, now)
    _release(voucher, Voucher.Status.CANCELLED, f"Voucher {voucher.code} cancelled", now)
    return voucher


@transaction.atomic
def voucher_expire(*, voucher_id: int, now: datetime | None = None) -> bool:
    """Expire one due voucher (give everything back). False when it is not issued or not due: safe to run
    any number of times, from any number of workers."""
    now = now or timezone.now()
    voucher = Voucher.objects.select_for_update().filter(pk=voucher_id).first()
    if voucher is None or voucher.status != Voucher.Status.ISSUED or voucher.expires_at > now:
        return False
    _release(voucher, Voucher.Status.EXPIRED, f"Voucher {voucher.code} expired unused", now)
    return True


def vouchers_expire_due(*, now: datetime | None = None, batch: int = 500) -> int:
    """Expire every issued voucher past `expires_at`, each in its own short transaction. Returns how many this
    run expired (a second run, or a concurrent one, finds nothing left to do)."""
    now = now or timezone.now()
    expired, after_id = 0, 0
    while True:
        ids = list(
            Voucher.objects.filter(status=Voucher.Status.ISSUED, expires_at__lte=now, id__gt=after_id)
            .order_by("id")
            .values_list("id", flat=True)[:batch]
        )
        if not ids:
            return expired
        for voucher_id in ids:
            try:
                expired += voucher_expire(voucher_id=voucher_id, now=now)
            except Exception:  # one broken voucher must not keep the others held: logged, retried next run
                logger.exception("could not expire voucher %s", voucher_id)
        after_id = ids[-1]


# --- PIPL erasure -----------------------------------------------------------------------------------------


# Every foreign key of this app to the user, and what erasure does with it (for the erasure declaration).


def rewards_erase_lock(*, user, context: dict) -> None:
    """Erasure step, before any step that writes the ledger: lock the resident's live vouchers (id order) and
    their limit-usage rows, the first two places of the lock order (rewards/locking.py). Cancelling them
    (`rewards_erase_personal_data`, later) takes ledger accounts and reward rows; had the actions step taken the
    resident's accounts first, a voucher or limit row locked after them would reverse the order of a concurrent
    redemption of the same resident (limit row, then accounts) and deadlock with it."""
    live = list(Voucher.objects.select_for_update().filter(resident=user, status=Voucher.Status.ISSUED).order_by("id"))
    locking.limit_rows_lock(
        resident_id=user.pk, keys=[(v.reward_id, v.limit_period_key) for v in live if v.limit_period_key]
    )
    context["rewards_live_vouchers"] = live


@transaction.atomic
def rewards_erase_personal_data(*, user, context: dict | None = None) -> None:
    """Erasure step (backend/accounts/erasure.py declares what is left, column by column). Vouchers are
    settlement records (what a merchant is paid for) and stay, pointing at the anonymised user row; they hold no
    personal data of their own beyond that link. A resident's live (`issued`) vouchers are cancelled first: the
    held points go back to the resident's (anonymous) points account and the items back to stock, so nobody can
    use a code of an erased person. A member of merchant staff loses the merchant link.

    The vouchers are those `rewards_erase_lock` locked (or locked here when this step runs alone); the items go
    back last, one UPDATE per reward in id order, so two erasures returning items of the same rewards never wait
    on each other in a cycle."""
    context = {} if context is None else context
    if "rewards_live_vouchers" not in context:
        rewards_erase_lock(user=user, context=context)
    now, returned = timezone.now(), Counter()
    for voucher in context.pop("rewards_live_vouchers"):
        _release(voucher, Voucher.Status.CANCELLED, "Voucher cancelled: account erased", now, stock=False)
        if voucher.stock_taken:
            returned[voucher.reward_id] += 1
    for reward_id in sorted(returned):
        locking.stock_return(reward_id=reward_id, items=returned[reward_id])
    if returned:
        catalogue_changed()
    MerchantStaff.objects.filter(user=user).delete()
