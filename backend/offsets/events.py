"""Stripe events: recorded once when the webhook verifies them (`stripe_event_record`), applied once by a Celery
task (`stripe_event_process`): payment succeeded -> order paid, serials sold, money into the reward fund,
certificate; payment failed / canceled -> reservation released; charge refunded -> certificate revoked, serials
back, money out (fund.py: what the fund cannot cover goes to its deficit, so a refund never fails for money).
Events may come twice, in parallel or out of order: the final state is the same.

An attempt that raises rolls back and is counted in a transaction of its own; after STRIPE_EVENT_MAX_ATTEMPTS
the event is `failed` (`failed_at`): no longer retried by the sweep or by a redelivery, listed in the admin and
retried from there (`stripe_event_retry_failed`).

Lock order: as services.py (StripeEvent -> OffsetOrder -> batches -> serial ranges -> fund accounts -> ledger).
"""

import logging
import secrets
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from backend.core.errors import ConflictError
from backend.offsets import fund, inventory
from backend.offsets.models import Buyer, Certificate, OffsetOrder, StripeEvent
from backend.offsets.settlement import payables_fund_soon

logger = logging.getLogger(__name__)
Status = OffsetOrder.Status
HANDLED_EVENTS = frozenset(
    {"payment_intent.succeeded", "payment_intent.payment_failed", "payment_intent.canceled", "charge.refunded"}
)


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
