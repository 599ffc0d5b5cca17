"""Every write of the offsets domain: buyers, orders, Stripe events, certificates, reservation expiry.

Lock order (the one order every path uses, so nothing deadlocks): StripeEvent -> OffsetOrder ->
CertificationBatch by id (inventory.batches_lock) -> SerialRange -> reward fund and deficit accounts (fund.py)
-> ledger accounts (ledger services).
Money: integer fen; `offset_amount_fen` is the one place a price is rounded (down).
Ledger (fund.py): a payment posts payment clearing -> reward fund (`system:payment_clearing:CNY` ->
`system:reward_fund:CNY`), repaying the reward fund deficit first; a refund always completes, out of the fund as
far as it goes and the rest to the deficit (`system:reward_fund_deficit:CNY`, the order's `refund_shortfall_fen`).
Stripe events are recorded and applied in events.py (re-exported here: the domain's one face for writes).
"""

import logging
import re
from datetime import timedelta
from decimal import ROUND_DOWN, Decimal

import stripe
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from rest_framework.exceptions import ValidationError

from backend.core.errors import ApplicationError, ConflictError
from backend.offsets import gateway, inventory
from backend.offsets.events import (  # noqa: F401 - the public face of the domain's writes
    stripe_event_process,
    stripe_event_record,
    stripe_event_retry_failed,
    stripe_events_retry,
)
from backend.offsets.models import Buyer, OffsetOrder

logger = logging.getLogger(__name__)
Status = OffsetOrder.Status
# Stripe's largest amount for a charge in most currencies (99,999,999 minor units).
MAX_AMOUNT_FEN = 99_999_999


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
