"""Merchant settlement: what vouchers captured at counters cost the reward fund, and how merchants get paid.

    payable_create     voucher captured -> one MerchantPayable (UNIQUE per voucher), `waiting_funds`
    payables_fund      oldest first: system:reward_fund:<cur> -> merchant:<id>:money:<cur>
                       (key `payable:voucher:<voucher id>`); the fund is floored, so a short fund stops the sweep
                       and the rest wait (beat every minute, and after every capture and every offset payment)
    settlements_create weekly: a merchant's funded payables of the week just ended -> one Settlement
                       (UNIQUE merchant + week + currency; a payable's single `settlement` column is set once)
    settlement_pay     claim (`paying` with a lease, short transaction) -> provider transfer outside any
                       transaction (`transfer_group` = settlement id, idempotency key `settlement:<id>`) ->
                       finish (row lock, status guard): merchant:<id>:money -> system:payment_clearing
                       (key `settlement:<id>:payout`), `paid`. No connected account -> `manual`.

Why a settlement is paid once: two runners cannot both hold the claim (row lock + live lease); a runner that
crashed after the transfer leaves the claim to expire, and the retry asks the provider again with the same
idempotency key (and first looks the transfer up by its group, since Stripe forgets keys after 24 hours), so it
gets the same transfer; the ledger posting has its own idempotency key; `transfer_id` is UNIQUE.

Lock order: MerchantPayable rows (id order) -> Settlement -> ledger accounts (the ledger's own order).
"""

import logging
from datetime import date, datetime, time, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from backend.core.days import SHANGHAI
from backend.core.errors import ApplicationError, ConflictError
from backend.ledger.models import LedgerTransaction
from backend.ledger.services import Leg, ledger_post
from backend.offsets.models import MerchantPayable, Settlement
from backend.offsets.payouts import PayoutError, PayoutProvider, Transfer, payout_provider

logger = logging.getLogger(__name__)

PayableStatus = MerchantPayable.Status
SettlementStatus = Settlement.Status


def reward_fund_key(currency: str) -> str:
    return f"system:reward_fund:{currency}"


def merchant_money_key(merchant_id: int, currency: str) -> str:
    return f"merchant:{merchant_id}:money:{currency}"


def payouts_key(currency: str) -> str:
    # Money leaves the platform's Stripe balance through the same clearing account it came in by.
    return f"system:payment_clearing:{currency}"


def _lease() -> timedelta:
    return timedelta(seconds=settings.SETTLEMENT_PAYOUT_LEASE_SECONDS)


# --- payables ---------------------------------------------------------------------------------------------


def payable_create(*, voucher) -> MerchantPayable | None:
    """Called inside `voucher_capture`'s transaction: the voucher's face value becomes a payable to its merchant
    (none for a reward without a face value). Funding runs after the commit, oldest payables first."""
    if voucher.face_value_minor <= 0:
        return None
    payable = MerchantPayable.objects.create(
        voucher=voucher,
        merchant_id=voucher.merchant_id,
        amount_minor=voucher.face_value_minor,
        currency=voucher.currency,
    )
    payables_fund_soon()
    return payable


def payables_fund_soon() -> None:
    """Enqueue a funding sweep after the current transaction commits (a rollback enqueues nothing)."""
    from backend.offsets.tasks import payables_fund

    transaction.on_commit(payables_fund.delay)


def payables_fund(*, limit: int = 1000) -> int:
    """Fund waiting payables oldest first, per currency, while the reward fund has the money; a payable the
    fund cannot cover stops its currency's sweep (a younger, smaller one never jumps the queue). Returns how
    many were funded. Safe to run twice or in parallel: each payable is funded under its row lock, once."""
    funded = 0
    currencies = (
        MerchantPayable.objects.filter(status=PayableStatus.WAITING_FUNDS).values_list("currency", flat=True).distinct()
    )
    for currency in sorted(set(currencies)):
        while funded < limit and _fund_oldest(currency):
            funded += 1
    return funded


@transaction.atomic
def _fund_oldest(currency: str) -> bool:
    payable = (
        MerchantPayable.objects.select_for_update()
        .filter(status=PayableStatus.WAITING_FUNDS, currency=currency)
        .order_by("id")
        .first()
    )
    if payable is None:
        return False
    try:
        with transaction.atomic():  # a savepoint: a short fund leaves the payable waiting, not the sweep broken
            txn_id = ledger_post(
                kind=LedgerTransaction.Kind.TRANSFER,
                reason=f"Voucher {payable.voucher_id} captured: payable {payable.pk} to merchant {payable.merchant_id}",
                source_type="merchant_payable",
                source_id=payable.pk,
                idempotency_key=f"payable:voucher:{payable.voucher_id}",
                postings=[
                    Leg(reward_fund_key(currency), -payable.amount_minor),
                    Leg(merchant_money_key(payable.merchant_id, currency), payable.amount_minor),
                ],
            )
    except ApplicationError as exc:
        if exc.get_codes() == "insufficient_funds":
            return False
        raise
    payable.status = PayableStatus.FUNDED
    payable.funding_txn_id = txn_id
    payable.funded_at = timezone.now()
    payable.save(update_fields=["status", "funding_txn_id", "funded_at"])
    return True


# --- settlements ------------------------------------------------------------------------------------------


def week_just_ended(now: datetime | None = None) -> tuple[date, date, datetime]:
    """The last full Monday-Sunday week in Asia/Shanghai: (first day, last day, the instant it ended)."""
    today = timezone.localtime(now or timezone.now(), SHANGHAI).date()
    monday = today - timedelta(days=today.weekday())
    return monday - timedelta(days=7), monday - timedelta(days=1), datetime.combine(monday, time(), tzinfo=SHANGHAI)


def settlements_create(*, now: datetime | None = None) -> list[int]:
    """Group funded, unsettled payables captured before the end of the week just ended into one settlement per
    merchant and currency. A second run of the same week creates nothing; payables funded after a merchant's
    settlement of the week was made go into the next week's."""
    start, end, cutoff = week_just_ended(now)
    groups = (
        MerchantPayable.objects.filter(status=PayableStatus.FUNDED, settlement__isnull=True, created_at__lt=cutoff)
        .values_list("merchant_id", "currency")
        .distinct()
    )
    created = []
    for merchant_id, currency in sorted(set(groups)):
        settlement_id = _settlement_create_one(merchant_id, currency, start, end, cutoff)
        if settlement_id is not None:
            created.append(settlement_id)
    return created


@transaction.atomic
def _settlement_create_one(merchant_id: int, currency: str, start: date, end: date, cutoff: datetime) -> int | None:
    # Lock the payables first: a parallel run waits here and then finds them settled (no rows).
    rows = list(
        MerchantPayable.objects.select_for_update()
        .filter(
            merchant_id=merchant_id,
            currency=currency,
            status=PayableStatus.FUNDED,
            settlement__isnull=True,
            created_at__lt=cutoff,
        )
        .order_by("id")
        .values_list("id", "amount_minor")
    )
    if not rows:
        return None
    try:
        with transaction.atomic():
            settlement = Settlement.objects.create(
                merchant_id=merchant_id,
                period_start=start,
                period_end=end,
                currency=currency,
                amount_minor=sum(amount for _, amount in rows),
                payable_count=len(rows),
            )
    except IntegrityError:
        return None  # this merchant's settlement of the week exists already: the rest goes into next week's
    moved = MerchantPayable.objects.filter(
        id__in=[pk for pk, _ in rows], status=PayableStatus.FUNDED, settlement__isnull=True
    ).update(settlement=settlement, status=PayableStatus.SETTLED)
    if moved != len(rows):  # impossible under the row locks; refuse rather than pay a wrong total
        raise ConflictError(_("Payables changed while being settled."), code="settlement_conflict")
    return settlement.pk


def settlement_pay(*, settlement_id: int, provider: PayoutProvider | None = None, now: datetime | None = None) -> str:
    """Pay one settlement once. Returns the outcome: `paid`, `manual`, `already_paid`, `in_progress` (another
    runner holds a live claim). A provider error releases the claim and is raised (transient ones are retried
    by the next run)."""
    claim = _claim(settlement_id, now or timezone.now())
    if isinstance(claim, str):
        return claim
    provider = provider or payout_provider()
    try:
        transfer = None
        finder = getattr(provider, "find_transfer", None)
        if claim.attempts > 1 and finder is not None:
            transfer = finder(transfer_group=str(claim.pk))
        if transfer is None:
            transfer = provider.transfer(
                amount=claim.amount_minor,
                currency=claim.currency,
                destination=claim.destination,
                transfer_group=str(claim.pk),
                idempotency_key=f"settlement:{claim.pk}",
                metadata={"settlement": claim.pk, "merchant": claim.merchant_id, "period": str(claim.period_start)},
            )
    except PayoutError as exc:
        _release(settlement_id, str(exc))
        raise
    return _finish(settlement_id, transfer)


@transaction.atomic
def _claim(settlement_id: int, now: datetime) -> Settlement | str:
    settlement = Settlement.objects.select_for_update(of=("self",)).select_related("merchant").get(pk=settlement_id)
    if settlement.status == SettlementStatus.PAID:
        return "already_paid"
    if settlement.status == SettlementStatus.MANUAL:
        return "manual"
    if settlement.status == SettlementStatus.PAYING and settlement.claimed_until and settlement.claimed_until > now:
        return "in_progress"
    if not settlement.destination:
        # The destination is fixed at the first claim: a retry sends the very same request under the same key.
        if not settlement.merchant.stripe_account_id:
            settlement.status = SettlementStatus.MANUAL
            settlement.save(update_fields=["status"])
            return "manual"
        settlement.destination = settlement.merchant.stripe_account_id
    settlement.status = SettlementStatus.PAYING
    settlement.attempts += 1
    settlement.claimed_until = now + _lease()
    settlement.save(update_fields=["status", "destination", "attempts", "claimed_until"])
    return settlement


@transaction.atomic
def _release(settlement_id: int, error: str) -> None:
    settlement = Settlement.objects.select_for_update().get(pk=settlement_id)
    if settlement.status == SettlementStatus.PAYING:
        settlement.status = SettlementStatus.PENDING
        settlement.claimed_until = None
        settlement.last_error = error[:500]
        settlement.save(update_fields=["status", "claimed_until", "last_error"])


@transaction.atomic
def _finish(settlement_id: int, transfer: Transfer) -> str:
    settlement = Settlement.objects.select_for_update().get(pk=settlement_id)
    if settlement.status == SettlementStatus.PAID:
        return "already_paid"  # a runner whose claim had expired finished first, with the same transfer
    if transfer.amount != settlement.amount_minor:
        logger.error("settlement %s: transfer %s of %s", settlement.pk, transfer.id, transfer.amount)
        raise ConflictError(_("The transfer does not match the settlement."), code="settlement_transfer_mismatch")
    _payout_post(settlement, reference=transfer.id)
    settlement.transfer_id = transfer.id
    settlement.save(update_fields=["transfer_id"])
    return "paid"


def _payout_post(settlement: Settlement, *, reference: str) -> None:
    settlement.payout_txn_id = ledger_post(
        kind=LedgerTransaction.Kind.TRANSFER,
        reason=f"Settlement {settlement.pk} of merchant {settlement.merchant_id} paid ({reference})"[:255],
        source_type="settlement",
        source_id=settlement.pk,
        idempotency_key=f"settlement:{settlement.pk}:payout",
        postings=[
            Leg(merchant_money_key(settlement.merchant_id, settlement.currency), -settlement.amount_minor),
            Leg(payouts_key(settlement.currency), settlement.amount_minor),
        ],
    )
    settlement.status = SettlementStatus.PAID
    settlement.paid_at = timezone.now()
    settlement.claimed_until = None
    settlement.last_error = ""
    settlement.save(update_fields=["payout_txn_id", "status", "paid_at", "claimed_until", "last_error"])


@transaction.atomic
def settlement_mark_paid_manually(*, settlement_id: int, reference: str, by) -> Settlement:
    """A `manual` settlement was paid outside Stripe (bank transfer): record it with its reference (required)."""
    reference = (reference or "").strip()
    if not reference:
        raise ApplicationError(_("A payment reference is required."), code="reference_required", attr="reference")
    settlement = Settlement.objects.select_for_update().get(pk=settlement_id)
    if settlement.status != SettlementStatus.MANUAL:
        raise ConflictError(_("Only a settlement to pay by hand can be marked paid."), code="settlement_not_manual")
    settlement.manual_reference = reference[:255]
    settlement.manual_paid_by = by
    settlement.save(update_fields=["manual_reference", "manual_paid_by"])
    _payout_post(settlement, reference=f"manual: {reference}"[:80])
    return settlement


def settlements_pay_due(*, provider: PayoutProvider | None = None, now: datetime | None = None) -> dict[str, int]:
    """Pay every settlement still to pay (new ones, ones a provider error released, claims that expired)."""
    now = now or timezone.now()
    due = Settlement.objects.filter(status__in=[SettlementStatus.PENDING, SettlementStatus.PAYING]).order_by("id")
    outcomes: dict[str, int] = {}
    for settlement_id in due.values_list("id", flat=True):
        try:
            outcome = settlement_pay(settlement_id=settlement_id, provider=provider, now=now)
        except PayoutError as exc:
            logger.warning("settlement %s not paid: %s", settlement_id, exc)
            outcome = "failed"
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    return outcomes


def settlements_run(*, provider: PayoutProvider | None = None, now: datetime | None = None) -> dict[str, int]:
    """The weekly run: settle the week just ended, then pay whatever is due. Safe to run twice or in parallel."""
    created = settlements_create(now=now)
    return {"created": len(created), **settlements_pay_due(provider=provider, now=now)}


# --- admin -------------------------------------------------------------------------------------------------


def stripe_account_validate(value: str) -> str:
    """A connected account id (`acct_` and letters/digits) or blank; anything else is `stripe_account_invalid`."""
    value = (value or "").strip()
    if value and (not value.startswith("acct_") or len(value) > 255 or not value[5:].isalnum() or not value.isascii()):
        raise ApplicationError(_("Not a Stripe account id (acct_...)."), code="stripe_account_invalid")
    return value


def merchant_stripe_account_set(*, merchant_id: int, stripe_account_id: str):
    """Connect a merchant's Stripe account (acct_...) or disconnect it (blank). Settlements already claimed keep
    the destination they were first sent to."""
    from rewards.models import Merchant

    value = stripe_account_validate(stripe_account_id)
    updated = Merchant.objects.filter(pk=merchant_id).update(stripe_account_id=value)
    if not updated:
        raise ApplicationError(_("No such merchant."), code="merchant_not_found", status_code=404)


def outstanding_payables(*, currency: str = "CNY") -> dict[str, int]:
    """What merchants are owed and not yet paid, in minor units: waiting for funds, funded, in unpaid settlements."""
    rows = (
        MerchantPayable.objects.filter(currency=currency)
        .exclude(settlement__status=SettlementStatus.PAID)
        .values_list("status")
        .annotate(total=Sum("amount_minor"))
    )
    return {status: total or 0 for status, total in rows}
