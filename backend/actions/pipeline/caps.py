"""Daily caps per Asia/Shanghai day: credit up to the cap, record the rest as capped. Each decision is a
per-action reservation made in a short transaction of its own (cap rows locked in one fixed order, for
milliseconds), and a retry reuses it. Review (and the pipeline, for an action rejected after reserving)
gives cap back with `cap_usage_release`.

A reservation lives on the usage row it adds to (`DailyCapUsage.reservations`, action id -> quantity): the
row is locked and updated anyway, so remembering the decision there costs no row, index entry or statement of
its own (it used to be one CapReservation row per action). Reservations always add up to `used`."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal

from django.db import connection, transaction

from backend.actions.models import Action, DailyCapUsage
from backend.actions.pipeline.common import ZERO, Outcome
from backend.core.bulk import BoundCursor, bulk_update_rows
from backend.core.days import local_day


def creditable(outcomes: list[Outcome]) -> list[Outcome]:
    return [o for o in outcomes if o.version is not None and o.status != Action.Status.REJECTED]


def reserve_caps(outcomes: list[Outcome]) -> None:
    """Decide how much of each action fits under its resident's daily cap, in a short transaction of its own.

    The DailyCapUsage rows are locked (created when missing, in one fixed order) only for the few milliseconds
    of this transaction instead of until the batch commits: two workers crediting the same residents no longer
    wait on each other for a whole batch. Each decision is stored in the locked row's reservations, keyed by
    the action, so a retry (a redelivered task, the reconciler after a crash) reuses it and never takes the cap
    twice."""
    capped = [o for o in creditable(outcomes) if o.version.daily_cap]
    if not capped:
        return
    reserved: dict[int, Decimal] = {}
    with transaction.atomic():
        usage = _lock_cap_usage({_cap_key(o) for o in capped})
        for o in sorted(capped, key=lambda o: (o.action.occurred_at, o.action.id)):
            row = usage[_cap_key(o)]
            mine = row.reservations.get(str(o.action.id))
            if mine is not None:  # reserved by an earlier run of this action: reuse it
                reserved[o.action.id] = Decimal(mine)
                continue
            remaining = max(Decimal(str(o.version.daily_cap["limit"])) - row.used, ZERO)
            credited = min(o.quantity, remaining)
            row.used += credited
            row.reservations[str(o.action.id)] = str(credited)
            row.changed = True
            reserved[o.action.id] = credited
        changed = [row for row in usage.values() if row.changed]
        if changed:
            bulk_update_rows(
                DailyCapUsage,
                [{"id": r.id, "used": r.used, "reservations": r.reservations} for r in changed],
                ["used", "reservations"],
            )
    for o in capped:
        o.credited_quantity = reserved[o.action.id]


def _cap_key(o: Outcome) -> tuple:
    return o.action.resident_id, o.action.methodology, local_day(o.action.occurred_at)


def cap_release(o: Outcome) -> None:
    """An outcome rejected after its cap was reserved (engine failure, a lost history claim) gives it back."""
    if o.version is not None and o.version.daily_cap and o.credited_quantity:
        cap_usage_release(
            action_id=o.action.id,
            resident_id=o.action.resident_id,
            methodology=o.action.methodology,
            day=local_day(o.action.occurred_at),
            quantity=o.credited_quantity,
        )


def cap_usage_release(*, action_id: int, resident_id: int, methodology: str, day, quantity: Decimal) -> None:
    """Give cap back (an action rejected after its cap was reserved: review, engine failure); its reservation
    drops to zero with it, so reservations keep adding up to the usage."""
    usage = (
        DailyCapUsage.objects.select_for_update()
        .filter(resident_id=resident_id, methodology=methodology, day=day)
        .first()
    )
    if usage is not None:
        usage.used = max(usage.used - quantity, ZERO)
        if str(action_id) in usage.reservations:
            usage.reservations[str(action_id)] = str(ZERO)
        usage.save(update_fields=["used", "reservations"])


@dataclass
class _CapUsage:
    id: int
    used: Decimal
    reservations: dict = field(default_factory=dict)
    changed: bool = False


def _lock_cap_usage(keys: set) -> dict:
    """Create missing usage rows, then lock them all in one fixed order (no deadlock between workers)."""
    if not keys:
        return {}
    ordered = sorted(keys)
    if connection.vendor == "postgresql":
        arrays = [[k[0] for k in ordered], [k[1] for k in ordered], [k[2] for k in ordered]]
        with BoundCursor() as cursor:
            cursor.execute(CAP_USAGE_INSERT, arrays)
            cursor.execute(CAP_USAGE_LOCK, arrays)
            rows = cursor.fetchall()
        # jsonb arrives as text on Django's connection (its JSONField parses it itself).
        return {(r, m, d): _CapUsage(pk, used, json.loads(reserved)) for pk, r, m, d, used, reserved in rows}
    DailyCapUsage.objects.bulk_create(
        [DailyCapUsage(resident_id=r, methodology=m, day=d) for r, m, d in ordered], ignore_conflicts=True
    )
    rows = (
        DailyCapUsage.objects.select_for_update()
        .filter(
            resident_id__in={k[0] for k in keys}, methodology__in={k[1] for k in keys}, day__in={k[2] for k in keys}
        )
        .order_by("resident_id", "methodology", "day")
        .values_list("id", "resident_id", "methodology", "day", "used", "reservations")
    )
    return {(r, m, d): _CapUsage(pk, used, reserved) for pk, r, m, d, used, reserved in rows if (r, m, d) in keys}


CAP_USAGE_INSERT = """
INSERT INTO actions_dailycapusage (resident_id, methodology, day, used, reservations)
SELECT r, m, d, 0, '{}' FROM unnest(%b::bigint[], %b::text[], %b::date[]) AS k(r, m, d)
ON CONFLICT (resident_id, methodology, day) DO NOTHING
"""
# ORDER BY before FOR UPDATE: rows are locked in that order, the same in every worker.
CAP_USAGE_LOCK = """
SELECT u.id, u.resident_id, u.methodology, u.day, u.used, u.reservations FROM actions_dailycapusage u
JOIN unnest(%b::bigint[], %b::text[], %b::date[]) AS k(r, m, d)
  ON u.resident_id = k.r AND u.methodology = k.m AND u.day = k.d
ORDER BY u.resident_id, u.methodology, u.day
FOR UPDATE OF u
"""
