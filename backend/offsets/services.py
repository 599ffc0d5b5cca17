"""Every write of the offsets domain: buyers, orders, Stripe events, certificates, reservation expiry.

Lock order (the one order every path uses, so nothing deadlocks): StripeEvent -> OffsetOrder ->
CertificationBatch by id (inventory.batches_lock) -> SerialRange -> reward fund and deficit accounts (fund.py)
-> ledger accounts (ledger services).
Money: integer fen; `offset_amount_fen` is the one place a price is rounded (down).
Ledger (fund.py): a payment posts payment clearing -> reward fund (`system:payment_clearing:CNY` ->
`system:reward_fund:CNY`), repaying the reward fund deficit first; a refund always completes, out of the fund as
far as it goes and the rest to the deficit (`system:reward_fund_deficit:CNY`, the order's `refund_shortfall_fen`).
Events: an attempt that raises is counted; after STRIPE_EVENT_MAX_ATTEMPTS the event is `failed` (admin).
"""

import logging
import re
import secrets
from datetime import timedelta
from decimal import ROUND_DOWN, Decimal

import stripe
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from rest_framework.exceptions import ValidationError

from backend.core.errors import ApplicationError, ConflictError
from backend.offsets import fund, gateway, inventory
from backend.offsets.models import Buyer, Certificate, OffsetOrder, StripeEvent
from backend.offsets.settlement import payables_fund_soon

logger = logging.getLogger(__name__)
Status = OffsetOrder.Status
# Stripe's largest amount for a charge in most currencies (99,999,999 minor units).
MAX_AMOUNT_FEN = 99_999_999
HANDLED_EVENTS = frozenset(
    {"payment_intent.succeeded", "payment_intent.payment_failed", "payment_intent.canceled", "charge.refunded"}
)


clearing_key = fund.clearing_key
reward_fund_key = fund.reward_fund_key


# ------------------------------------------------------------------------------------------------ buyers

USCC_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)


def uscc_check_char(body: str) -> str:
    """The check character of a unified social credit code's first 17 characters (GB 32100-2015, mod 31)."""
    total = sum(USCC_CHARS.index(c) * w for c, w in zip(body, USCC_WEIGHTS, strict=True))
    return USCC_CHARS[(31 - total % 31) % 31]


def uscc_valid(code: str) -> bool:
    """Unified social credit code: 18 characters of its alphabet, the last the check character."""
    if not re.fullmatch(f"[{USCC_CHARS}]{{18}}", code or ""):
        return False
    return uscc_check_char(code[:17]) == code[17]


@transaction.atomic
def buyer_create(*, phone: str, password: str, company_name: str, tax_id: str):
    """A company buyer: a `buyer` user plus its company (name, unified social credit code, unique)."""
    from backend.accounts.services import user_create

    company_name = (company_name or "").strip()
    tax_id = (tax_id or "").strip().upper()
    if not company_name or len(company_name) > 200:
        raise ValidationError({"company": [_("A company name of 1 to 200 characters.")]}, code="company_invalid")
    if not uscc_valid(tax_id):
        raise ValidationError({"tax_id": [_("Not a valid unified social credit code.")]}, code="tax_id_invalid")
    user = user_create(phone=phone, password=password, role="buyer", display_name=company_name[:64])
    try:
        with transaction.atomic():
            Buyer.objects.create(user=user, company_name=company_name, tax_id=tax_id)
    except IntegrityError:
        raise ConflictError(_("This company is already registered."), code="tax_id_taken", attr="tax_id") from None
    return user


# What the offsets domain keeps of a user on erasure, per foreign key to the user (the erasure declaration).


def offsets_erase_personal_data(*, user, context: dict | None = None) -> None:
    """PIPL erasure step (backend/accounts/erasure.py declares what is left). A buyer is a company, not a
    person: its name and credit code, its orders and its certificates (public records of retired reductions) are
    kept. The person's phone and login are erased by accounts; here only what could still act for them goes:
    unpaid reservations are released."""
    for order_id in OffsetOrder.objects.filter(buyer=user, status=Status.RESERVED).values_list("id", flat=True):
        order_release(order_id=order_id, reason="account_erased", cancel_intent=False)


# ------------------------------------------------------------------------------------------------ orders


def offset_amount_fen(quantity_kg: int, price_cny_per_t: Decimal) -> int:
    """The one rounding rule for money: kg x CNY/t -> fen, rounded down."""
    fen = Decimal(quantity_kg) * price_cny_per_t * Decimal(100) / Decimal(1000)
    return int(fen.to_integral_value(rounding=ROUND_DOWN))


def order_create(*, buyer, quantity_kg: int, batch_id: int | None = None, idempotency_key: str = "") -> OffsetOrder:
    """Reserve certified inventory at the configured price and create the Stripe PaymentIntent.

    Two short steps: (1) a transaction that creates the order and reserves serials under batch locks
    (409 `inventory_insufficient` when short, nothing kept); (2) outside any transaction, the PaymentIntent with
    an idempotency key derived from the order. If Stripe fails, the reservation is released at once (503);
    if this process dies in between, the expiry releases it after OFFSET_RESERVATION_MINUTES.
    The same `Idempotency-Key` from the same buyer returns the first order."""
    if not Buyer.objects.filter(user=buyer).exists():
        raise ApplicationError(_("Only company buyers can order."), code="permission_denied", status_code=403)
    price = Decimal(settings.OFFSET_PRICE_CNY_PER_T)
    amount = offset_amount_fen(quantity_kg, price)
    if amount < settings.OFFSET_MIN_AMOUNT_FEN:
        raise ApplicationError(
            _("The order is below the minimum amount."), code="order_below_minimum", attr="quantity_kg"
        )
    if amount > MAX_AMOUNT_FEN:
        raise ApplicationError(
            _("The order is above the largest single payment."), code="order_too_large", attr="quantity_kg"
        )
    if idempotency_key:
        existing = OffsetOrder.objects.filter(buyer=buyer, idempotency_key=idempotency_key).first()
        if existing is not None:
            return _replay(existing, quantity_kg, batch_id)
    now = timezone.now()
    try:
        with transaction.atomic():
            order = OffsetOrder.objects.create(
                created_at=now,
                buyer=buyer,
                batch_id=batch_id,
                quantity_kg=quantity_kg,
                price_cny_per_t=price,
                amount_fen=amount,
                currency=settings.OFFSET_CURRENCY,
                idempotency_key=idempotency_key,
                reserved_until=now + timedelta(minutes=settings.OFFSET_RESERVATION_MINUTES),
            )
            inventory.reserve(order=order, batch_id=batch_id)
    except IntegrityError:
        existing = OffsetOrder.objects.filter(buyer=buyer, idempotency_key=idempotency_key).first()
        if existing is None or not idempotency_key:
            raise
        return _replay(existing, quantity_kg, batch_id)
    try:
        intent = gateway.payment_intent_create(
            order_id=order.id, amount_fen=amount, currency=order.currency, buyer_id=buyer.id
        )
    except stripe.StripeError as exc:
        logger.warning("PaymentIntent for order %s failed: %s", order.id, exc)
        order_release(order_id=order.id, reason="payment_provider_error", cancel_intent=False)
        raise ApplicationError(
            _("The payment provider is unavailable; nothing was reserved. Try again."),
            code="payment_provider_unavailable",
            status_code=503,
        ) from None
    with transaction.atomic():
        order = OffsetOrder.objects.select_for_update().get(id=order.id)
        order.payment_intent_id = intent.id
        order.client_secret = intent.client_secret
        order.save(update_fields=["payment_intent_id", "client_secret"])
    return order


def _replay(order: OffsetOrder, quantity_kg: int, batch_id: int | None) -> OffsetOrder:
    if order.quantity_kg != quantity_kg or order.batch_id != batch_id:
        raise ConflictError(_("This Idempotency-Key was used for a different order."), code="idempotency_conflict")
    if not order.payment_intent_id:
        raise ConflictError(_("This order is still being created."), code="order_in_progress")
    return order


def order_release(*, order_id: int, reason: str, cancel_intent: bool = True) -> bool:
    """Release an unpaid order's reservation (once: only a reserved order is released; True when this call
    released it). With `cancel_intent`, the PaymentIntent is canceled at Stripe first, outside the transaction;
    if Stripe says it already succeeded, nothing is released and its webhook decides."""
    order = OffsetOrder.objects.get(id=order_id)
    if order.status != Status.RESERVED:
        return False
    if cancel_intent and order.payment_intent_id:
        if not gateway.payment_intent_cancel(payment_intent_id=order.payment_intent_id):
            logger.info("order %s not released: its PaymentIntent can no longer be canceled", order_id)
            return False
    with transaction.atomic():
        order = OffsetOrder.objects.select_for_update().get(id=order_id)
        if order.status != Status.RESERVED:
            return False
        inventory.release(order=order)
        order.status = Status.RELEASED
        order.released_at = timezone.now()
        order.release_reason = reason
        order.save(update_fields=["status", "released_at", "release_reason"])
    return True


def reservations_expire(*, now=None) -> int:
    """Release every reservation past its time (beat, every minute). Each order is released once, however
    often or concurrently this runs (status checked under the order's row lock). Returns how many."""
    now = now or timezone.now()
    due = OffsetOrder.objects.filter(status=Status.RESERVED, reserved_until__lte=now).order_by("id")
    released = 0
    for order_id in due.values_list("id", flat=True)[:500]:
        try:
            released += order_release(order_id=order_id, reason="expired")
        except stripe.StripeError as exc:  # Stripe unreachable: try again on the next run
            logger.warning("could not cancel the PaymentIntent of order %s: %s", order_id, exc)
    return released


# ------------------------------------------------------------------------------------------------ events


def stripe_event_record(*, event: dict) -> tuple[StripeEvent | None, bool]:
    """Store a verified event once (its id is the primary key) and enqueue its processing after commit.
    Returns (event or None when its type is not ours, created). A repeated delivery of an event not processed
    yet is enqueued again: processing is idempotent, so a lost task cannot lose an event."""
    from backend.offsets.tasks import stripe_event_process as task

    if event["type"] not in HANDLED_EVENTS:
        return None, False
    with transaction.atomic():
        row, created = StripeEvent.objects.get_or_create(
            event_id=event["id"], defaults={"type": event["type"], "payload": event}
        )
        if row.processed_at is None and row.failed_at is None:  # a failed event is retried from the admin only
            transaction.on_commit(lambda: _enqueue(task, row.event_id))
    return row, created


def _enqueue(task, event_id: str) -> None:
    try:
        task.delay(event_id=event_id)
    except Exception:  # broker down: the event is stored; stripe_events_retry (beat) enqueues it later
        logger.warning("could not enqueue Stripe event %s", event_id, exc_info=True)


def stripe_events_retry(*, older_than=timedelta(minutes=2)) -> int:
    """Enqueue events recorded but still unprocessed after a while (an enqueue lost to a crash, an attempt that
    failed). Events that failed STRIPE_EVENT_MAX_ATTEMPTS times are left to the admin."""
    from backend.offsets.tasks import stripe_event_process as task

    ids = list(
        StripeEvent.objects.filter(
            processed_at__isnull=True, failed_at__isnull=True, received_at__lte=timezone.now() - older_than
        )
        .order_by("received_at")
        .values_list("event_id", flat=True)[:500]
    )
    for event_id in ids:
        task.delay(event_id=event_id)
    return len(ids)


def stripe_event_process(*, event_id: str) -> str:
    """Apply one recorded event, once: the event row is locked and marked processed in the same transaction as
    its effect. Events may arrive twice, in parallel or out of order; the final state is the same. An attempt
    that raises rolls back, is counted in a transaction of its own and is raised again; the event ends `failed`
    after STRIPE_EVENT_MAX_ATTEMPTS of them (never retried silently forever)."""
    try:
        return _event_apply(event_id)
    except Exception as exc:
        try:
            _event_failure_record(event_id, exc)
        except Exception:  # the database is gone too: the event stays unprocessed, the sweep retries it
            logger.exception("could not record the failure of Stripe event %s", event_id)
        raise


@transaction.atomic
def _event_failure_record(event_id: str, exc: Exception) -> None:
    event = StripeEvent.objects.select_for_update().filter(event_id=event_id).first()
    if event is None or event.processed_at is not None or event.failed_at is not None:
        return
    event.failed_attempts += 1
    event.last_error = f"{type(exc).__name__}: {exc}"[:500]
    fields = ["failed_attempts", "last_error"]
    if event.failed_attempts >= settings.STRIPE_EVENT_MAX_ATTEMPTS:
        event.failed_at = timezone.now()
        event.outcome = "failed"
        fields += ["failed_at", "outcome"]
        logger.error(
            "Stripe event %s (%s) failed %d times, left to the admin: %s",
            event_id,
            event.type,
            event.failed_attempts,
            event.last_error,
        )
    else:
        logger.warning("Stripe event %s attempt %d failed: %s", event_id, event.failed_attempts, event.last_error)
    event.save(update_fields=fields)


def stripe_event_retry_failed(*, event_id: str) -> bool:
    """The admin retries a `failed` event (its cause fixed): attempts start again from zero and it is enqueued
    after the commit. True when the event was failed and is now queued; anything else is left alone."""
    from backend.offsets.tasks import stripe_event_process as task

    with transaction.atomic():
        event = StripeEvent.objects.select_for_update().filter(event_id=event_id).first()
        if event is None or event.failed_at is None or event.processed_at is not None:
            return False
        event.failed_at = None
        event.failed_attempts = 0
        event.outcome = ""
        event.save(update_fields=["failed_at", "failed_attempts", "outcome"])
        transaction.on_commit(lambda: _enqueue(task, event_id))
    return True


@transaction.atomic
def _event_apply(event_id: str) -> str:
    event = StripeEvent.objects.select_for_update().filter(event_id=event_id).first()
    if event is None:
        return "unknown_event"
    if event.processed_at is not None or event.failed_at is not None:
        return event.outcome
    obj = (event.payload.get("data") or {}).get("object") or {}
    outcome = _apply(event.type, obj if isinstance(obj, dict) else {})
    event.processed_at = timezone.now()
    event.outcome = outcome
    event.save(update_fields=["processed_at", "outcome"])
    return outcome


def _order_for(intent_id, metadata) -> OffsetOrder | None:
    order = None
    if isinstance(intent_id, str) and intent_id:
        order = OffsetOrder.objects.select_for_update().filter(payment_intent_id=intent_id).first()
    if order is None and isinstance(metadata, dict) and str(metadata.get("order_id", "")).isdigit():
        # The PaymentIntent was created but its id never saved (a crash in between): find the order by metadata.
        order = OffsetOrder.objects.select_for_update().filter(id=int(metadata["order_id"])).first()
        if order is not None and order.payment_intent_id not in (None, intent_id):
            return None
        if order is not None and order.payment_intent_id is None and isinstance(intent_id, str):
            order.payment_intent_id = intent_id
            order.save(update_fields=["payment_intent_id"])
    return order


def _apply(kind: str, obj: dict) -> str:
    if kind == "charge.refunded":
        order = _order_for(obj.get("payment_intent"), obj.get("metadata"))
        if order is None:
            return "ignored_unknown_order"
        return _on_refund(order, obj)
    order = _order_for(obj.get("id"), obj.get("metadata"))
    if order is None:
        return "ignored_unknown_order"
    if kind == "payment_intent.succeeded":
        if obj.get("amount") != order.amount_fen or str(obj.get("currency", "")).upper() != order.currency:
            logger.error("PaymentIntent %s does not match order %s", obj.get("id"), order.id)
            return "amount_mismatch"
        return _on_paid(order)
    # payment_failed / canceled: only a reservation is released; a paid order is not touched by a stale event.
    if order.status != Status.RESERVED:
        return "ignored_" + order.status
    inventory.release(order=order)
    order.status = Status.RELEASED
    order.released_at = timezone.now()
    order.release_reason = "payment_failed" if kind.endswith("payment_failed") else "canceled"
    order.save(update_fields=["status", "released_at", "release_reason"])
    return "released"


def _on_paid(order: OffsetOrder) -> str:
    if order.status in (Status.PAID, Status.REFUNDED, Status.PAID_UNFULFILLED):
        return "duplicate_" + order.status
    if order.status == Status.RELEASED:
        # Paid after its reservation went (a failed first card, then a good one): reserve again if we can.
        try:
            with transaction.atomic():
                inventory.reserve(order=order, batch_id=order.batch_id)
        except ConflictError:
            order.status = Status.PAID_UNFULFILLED
            order.paid_at = timezone.now()
            order.save(update_fields=["status", "paid_at"])
            logger.error("order %s paid after release and no inventory left: refund it in Stripe", order.id)
            return "paid_unfulfilled"
    ranges = inventory.sell(order=order)
    order.payment_txn_id = fund.payment_post(
        order_id=order.id,
        amount=order.amount_fen,
        currency=order.currency,
        reason=f"Offset order {order.id}: {order.quantity_kg} kg CO2e",
    )
    order.status = Status.PAID
    order.paid_at = timezone.now()
    order.save(update_fields=["status", "paid_at", "payment_txn_id"])
    _certificate_issue(order, ranges)
    payables_fund_soon()  # money arrived: payables waiting for funds are funded, oldest first
    if order.refund_seen_at is not None:  # the refund arrived first: apply it now, same end state as in order
        _refund_paid(order)
        return "paid_then_refunded"
    return "paid"


def _certificate_issue(order: OffsetOrder, ranges) -> Certificate:
    buyer = Buyer.objects.get(user_id=order.buyer_id)
    return Certificate.objects.create(
        order=order,
        buyer_id=order.buyer_id,
        code=secrets.token_hex(10).upper(),
        company_name=buyer.company_name,
        tax_id=buyer.tax_id,
        quantity_kg=order.quantity_kg,
        serial_ranges=[
            {
                "batch": r.batch.code,
                "methodology": r.batch.methodology,
                "period": [r.batch.period_start.isoformat(), r.batch.period_end.isoformat()],
                "start": r.start,
                "end": r.end,
                "kg": r.size,
                "label": inventory.serial_label(r.batch_id, r.start, r.end),
            }
            for r in ranges
        ],
        methodologies=sorted({r.batch.methodology for r in ranges}),
    )


def _on_refund(order: OffsetOrder, charge: dict) -> str:
    amount = charge.get("amount")
    refunded = charge.get("amount_refunded")
    full = charge.get("refunded") is True or (isinstance(refunded, int) and refunded >= (amount or 0) > 0)
    if not full:
        logger.warning("partial refund on order %s: not revoked automatically", order.id)
        return "partial_refund_ignored"
    if order.status == Status.REFUNDED:
        return "duplicate_refunded"
    if order.status == Status.PAID:
        return "refunded_shortfall" if _refund_paid(order) else "refunded"
    if order.status == Status.PAID_UNFULFILLED:
        order.status = Status.REFUNDED
        order.refunded_at = timezone.now()
        order.save(update_fields=["status", "refunded_at"])
        return "refunded_unfulfilled"
    # Not paid (yet): remember the refund; the success event, if it comes, applies both.
    if order.refund_seen_at is None:
        order.refund_seen_at = timezone.now()
        order.save(update_fields=["refund_seen_at"])
    return "refund_before_payment"


def _refund_paid(order: OffsetOrder) -> int:
    """Revoke, put the serials back and return the money (fund.refund_post never fails for want of money: what
    the fund cannot cover goes to the deficit). Returns that shortfall."""
    certificate = Certificate.objects.select_for_update().get(order=order)
    certificate.status = Certificate.Status.REVOKED
    certificate.revoked_at = timezone.now()
    certificate.save(update_fields=["status", "revoked_at"])
    inventory.unsell(order=order)
    _, shortfall = fund.refund_post(
        order_id=order.id,
        amount=order.amount_fen,
        currency=order.currency,
        reason=f"Offset order {order.id} refunded",
    )
    if shortfall:
        logger.warning("order %s refunded: %s fen booked to the reward fund deficit", order.id, shortfall)
    order.status = Status.REFUNDED
    order.refunded_at = timezone.now()
    order.refund_shortfall_fen = shortfall
    order.save(update_fields=["status", "refunded_at", "refund_shortfall_fen"])
    return shortfall
