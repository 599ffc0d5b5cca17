"""Certified inventory: batches from credited actions, per-kilogram serial ranges, reservations and reversals.

Every function here runs inside the caller's transaction with the batch rows locked (select_for_update, in id
order: `batches_lock`). A batch's counters and its SerialRange rows change together; the CHECK constraints on
the batch (counters add up, none below zero) make a bug an error instead of an oversold serial.

Reversed actions (see `certified_action_reverse`): the batch's `buffer_grams` (OFFSET_BUFFER_PERCENT of the
grams plus what is below a whole kilogram) absorbs them first. Past the buffer, whole kilograms are voided from
the highest unsold serials. Sold serials are never taken back: if there is nothing unsold left, the batch
records `shortfall_kg` (shown in the admin) and voids serials as soon as any come back (refund, release).
"""

from collections.abc import Iterable
from datetime import date
from decimal import ROUND_DOWN, Decimal

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Sum
from django.utils import timezone
from django.utils.translation import gettext as _

from backend.core.days import days_bounds, local_today
from backend.core.errors import ApplicationError, ConflictError
from backend.offsets.models import CertificationBatch, CertifiedAction, OffsetOrder, SerialRange

# Engagement-only methodologies: they earn points but are never sold as certified reductions.
NON_CERTIFIABLE = frozenset({"walk_steps"})
MAX_PERIOD_DAYS = 366
State = SerialRange.State


def certified_kg_of(total_grams: int, buffer_percent: Decimal) -> int:
    """The one rounding rule of certification: whole kilograms of the grams left after the buffer, rounded
    down. Whatever is not certified (the buffer share and the part below a kilogram) is the batch's buffer."""
    share = (Decimal(100) - buffer_percent) / Decimal(100)
    return int((Decimal(total_grams) * share / Decimal(1000)).to_integral_value(rounding=ROUND_DOWN))


def batch_create(*, methodology: str, period_start: date, period_end: date, created_by) -> CertificationBatch:
    """Certify the credited actions of one methodology whose Asia/Shanghai day falls in [start, end] and that
    are in no batch yet. Two reviewers certifying overlapping periods at once cannot certify an action twice:
    the insert skips actions another batch holds (primary key on the action). Nothing to certify -> 409."""
    if methodology in NON_CERTIFIABLE:
        raise ApplicationError(
            _("%(m)s is engagement only and never certified.") % {"m": methodology},
            code="methodology_not_certifiable",
            attr="methodology",
        )
    if period_start > period_end or (period_end - period_start).days >= MAX_PERIOD_DAYS:
        raise ApplicationError(_("The period must be start <= end, at most a year."), code="period_invalid")
    if period_end >= local_today():
        raise ApplicationError(_("Only finished days can be certified."), code="period_not_finished")
    since, until = days_bounds(period_start, period_end)
    with transaction.atomic():
        batch = CertificationBatch.objects.create(
            methodology=methodology, period_start=period_start, period_end=period_end, created_by=created_by
        )
        with connection.cursor() as cur:
            cur.execute(
                "INSERT INTO offsets_certifiedaction (action_id, batch_id, grams, reversal_reason)"
                " SELECT a.id, %s, a.grams, '' FROM actions_action a"
                " WHERE a.status = 'credited' AND a.methodology = %s AND a.grams > 0"
                " AND a.occurred_at >= %s AND a.occurred_at < %s"
                " AND NOT EXISTS (SELECT 1 FROM offsets_certifiedaction c WHERE c.action_id = a.id)"
                " ORDER BY a.id ON CONFLICT DO NOTHING",
                [batch.id, methodology, *(connection.ops.adapt_datetimefield_value(t) for t in (since, until))],
            )
        total = int(CertifiedAction.objects.filter(batch=batch).aggregate(g=Sum("grams"))["g"] or 0)
        certified = certified_kg_of(total, Decimal(settings.OFFSET_BUFFER_PERCENT))
        if certified <= 0:
            # Rolled back with the batch: the actions stay free for a later, bigger batch.
            raise ConflictError(_("No whole kilogram to certify in this period."), code="batch_empty")
        batch.action_count = CertifiedAction.objects.filter(batch=batch).count()
        batch.total_grams = total
        batch.certified_kg = certified
        batch.available_kg = certified
        batch.buffer_grams = total - certified * 1000
        batch.save()
        SerialRange.objects.create(batch=batch, start=1, end=certified, state=State.AVAILABLE)
    return batch


@transaction.atomic
def batch_close(*, batch_id: int) -> CertificationBatch:
    """Take a batch off sale: no new reservations; reserved and sold serials are untouched."""
    (batch,) = batches_lock([batch_id])
    if batch.status != CertificationBatch.Status.CLOSED:
        batch.status = CertificationBatch.Status.CLOSED
        batch.save(update_fields=["status"])
    return batch


def batches_lock(ids: Iterable[int]) -> list[CertificationBatch]:
    """Lock batches in id order: the one order every writer uses, so two orders never deadlock."""
    return list(CertificationBatch.objects.select_for_update().filter(id__in=set(ids)).order_by("id"))


HELD = (State.RESERVED, State.SOLD)


def _assign(r: SerialRange, state: str, order) -> None:
    r.state = state
    r.order = order if state in HELD else None


def _take(batch: CertificationBatch, kg: int, *, from_state: str, to_state: str, order, highest=False) -> int:
    """Move up to `kg` serials of `batch` from one state to another, lowest serials first (highest for voiding),
    splitting a range where needed. Returns how many moved; the caller adjusts the batch counters."""
    ranges = SerialRange.objects.filter(batch=batch, state=from_state)
    if from_state in (State.RESERVED, State.SOLD):
        ranges = ranges.filter(order=order)
    ranges = list(ranges.order_by("-start" if highest else "start"))
    left = kg
    for r in ranges:
        if left == 0:
            break
        take = min(left, r.size)
        if take == r.size:
            _assign(r, to_state, order)
            r.save(update_fields=["state", "order"])
        elif highest:  # the top `take` serials move; the range keeps its lower part
            r.end -= take
            r.save(update_fields=["end"])
            moved = SerialRange(batch=batch, start=r.end + 1, end=r.end + take)
            _assign(moved, to_state, order)
            moved.save()
        else:  # the lowest `take` serials move; the rest becomes a range of its own in the old state
            rest = SerialRange(batch=batch, start=r.start + take, end=r.end, state=r.state, order=r.order)
            r.end = r.start + take - 1
            _assign(r, to_state, order)
            r.save(update_fields=["end", "state", "order"])
            rest.save()
        left -= take
    return kg - left


def _merge_available(batch: CertificationBatch) -> None:
    """Coalesce adjacent available ranges of a batch, so given-back serials do not fragment it forever."""
    rows = list(SerialRange.objects.filter(batch=batch, state=State.AVAILABLE).order_by("start"))
    keep, drop = [], []
    for r in rows:
        if keep and keep[-1].end + 1 == r.start:
            keep[-1].end = r.end
            keep[-1]._dirty = True
            drop.append(r.id)
        else:
            keep.append(r)
    if drop:
        SerialRange.objects.filter(id__in=drop).delete()
        for r in keep:
            if getattr(r, "_dirty", False):
                r.save(update_fields=["end"])


def _rebalance(batch: CertificationBatch) -> None:
    """Void unsold serials to cover reversed grams beyond the buffer; what cannot be covered is the shortfall."""
    beyond = max(0, batch.reversed_grams - batch.buffer_grams)
    target_void = -(-beyond // 1000)  # whole kilograms, rounded up: a voided serial must be fully unbacked
    needed = max(0, target_void - batch.void_kg)
    if needed and batch.available_kg:
        moved = _take(
            batch,
            min(needed, batch.available_kg),
            from_state=State.AVAILABLE,
            to_state=State.VOID,
            order=None,
            highest=True,
        )
        batch.available_kg -= moved
        batch.void_kg += moved
    batch.shortfall_kg = max(0, target_void - batch.void_kg)


def _save_counters(batch: CertificationBatch) -> None:
    batch.save(update_fields=["available_kg", "reserved_kg", "sold_kg", "void_kg", "reversed_grams", "shortfall_kg"])


def reserve(*, order: OffsetOrder, batch_id: int | None) -> None:
    """Reserve order.quantity_kg serials: from one batch when asked, otherwise from the oldest batches on sale
    first. Locks the batches (id order) and checks availability under the lock; raises 409
    `inventory_insufficient` (nothing reserved) when there is not enough."""
    candidates = CertificationBatch.objects.filter(status=CertificationBatch.Status.ACTIVE, available_kg__gt=0)
    if batch_id is not None:
        candidates = candidates.filter(id=batch_id)
    batches = batches_lock(candidates.values_list("id", flat=True))
    batches = [b for b in batches if b.status == CertificationBatch.Status.ACTIVE]
    if sum(b.available_kg for b in batches) < order.quantity_kg:
        raise ConflictError(_("Not enough certified inventory for this quantity."), code="inventory_insufficient")
    left = order.quantity_kg
    for batch in batches:
        if left == 0:
            break
        moved = _take(
            batch, min(left, batch.available_kg), from_state=State.AVAILABLE, to_state=State.RESERVED, order=order
        )
        batch.available_kg -= moved
        batch.reserved_kg += moved
        _save_counters(batch)
        left -= moved
    if left:  # counters and ranges disagree: a bug; refuse rather than sell what is not there
        raise ApplicationError(_("Inventory is inconsistent."), code="inventory_inconsistent", status_code=500)


def _order_batches(order: OffsetOrder, state: str) -> list[CertificationBatch]:
    return batches_lock(SerialRange.objects.filter(order=order, state=state).values_list("batch_id", flat=True))


def release(*, order: OffsetOrder) -> int:
    """Give an order's reserved serials back to the available pool. Returns the kilograms released."""
    total = 0
    for batch in _order_batches(order, State.RESERVED):
        kg = sum(r.size for r in SerialRange.objects.filter(batch=batch, order=order, state=State.RESERVED))
        _take(batch, kg, from_state=State.RESERVED, to_state=State.AVAILABLE, order=order)
        batch.reserved_kg -= kg
        batch.available_kg += kg
        _merge_available(batch)
        _rebalance(batch)
        _save_counters(batch)
        total += kg
    return total


def sell(*, order: OffsetOrder) -> list[SerialRange]:
    """Retire an order's reserved serials to its buyer. Returns the sold ranges (batch preloaded)."""
    for batch in _order_batches(order, State.RESERVED):
        ranges = SerialRange.objects.filter(batch=batch, order=order, state=State.RESERVED)
        kg = sum(r.size for r in ranges)
        ranges.update(state=State.SOLD)
        batch.reserved_kg -= kg
        batch.sold_kg += kg
        _save_counters(batch)
    return list(
        SerialRange.objects.filter(order=order, state=State.SOLD).select_related("batch").order_by("batch_id", "start")
    )


def unsell(*, order: OffsetOrder) -> int:
    """A refunded order's serials go back on sale (or are voided first if their batch is short)."""
    total = 0
    for batch in _order_batches(order, State.SOLD):
        kg = sum(r.size for r in SerialRange.objects.filter(batch=batch, order=order, state=State.SOLD))
        SerialRange.objects.filter(batch=batch, order=order, state=State.SOLD).update(state=State.AVAILABLE, order=None)
        batch.sold_kg -= kg
        batch.available_kg += kg
        _merge_available(batch)
        _rebalance(batch)
        _save_counters(batch)
        total += kg
    return total


@transaction.atomic
def certified_action_reverse(*, action_id: int, reason: str) -> CertificationBatch | None:
    """Call when a certified action is reversed after the fact (a review overturned, the purchase behind a
    receipt refunded). Once per action; returns its batch (None when the action was never certified)."""
    certified = CertifiedAction.objects.select_for_update().filter(action_id=action_id).first()
    if certified is None:
        return None
    (batch,) = batches_lock([certified.batch_id])
    if certified.reversed_at is not None:
        return batch
    certified.reversed_at = timezone.now()
    certified.reversal_reason = reason[:200]
    certified.save(update_fields=["reversed_at", "reversal_reason"])
    batch.reversed_grams += certified.grams
    _rebalance(batch)
    _save_counters(batch)
    return batch


def serial_label(batch_id: int, start: int, end: int) -> str:
    prefix = f"QDCI-{batch_id:06d}"
    return f"{prefix}-{start:09d}" if start == end else f"{prefix}-{start:09d}..{end:09d}"
