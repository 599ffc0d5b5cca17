"""The history rules: checks that look at other actions, switched on by a version's `validity_rules` (data,
not code), one function per key. Each reads committed history and the batch itself; under concurrency the
claims written in the crediting transaction (claims.py, keyed by the same functions here) are what holds.

- `duplicate_window_s`: a weighing of the same household and material within the window is a duplicate;
- `serial_unique_forever`: an appliance serial earns once, ever;
- `one_per_biller_account_per_month`: one credit per biller account and Asia/Shanghai calendar month;
- and, for every action with a duration, double claiming: the same resident's overlapping trips from two
  sources (two partners, or a partner and a self-report) -> the later one is `flagged`."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from decimal import Decimal

from backend.actions.models import Action
from backend.actions.pipeline.common import LIVE_STATUSES, MAX_TRIP, ActionRow, Outcome
from backend.core.days import SHANGHAI


def weighing_window(o: Outcome) -> timedelta:
    return timedelta(seconds=int(o.rules["duplicate_window_s"]))


def weighing_material(o: Outcome) -> str:
    return str(o.parsed.get("material", "")).lower()


def duplicate_weighings(outcomes: list[Outcome]) -> None:
    widest = max(weighing_window(o) for o in outcomes)
    previous = Action.objects.filter(
        methodology__in={o.action.methodology for o in outcomes},
        resident_id__in={o.action.resident_id for o in outcomes},
        status__in=LIVE_STATUSES,
        occurred_at__gte=min(o.action.occurred_at for o in outcomes) - widest,
        occurred_at__lte=max(o.action.occurred_at for o in outcomes) + widest,
    ).values_list("resident_id", "methodology", "occurred_at", "data__material")
    seen = [(r, m, at, str(material or "").lower()) for r, m, at, material in previous]
    for o in sorted(outcomes, key=lambda o: o.action.occurred_at):
        a = o.action
        window, material = weighing_window(o), weighing_material(o)
        if any(
            r == a.resident_id and m == a.methodology and mat == material and abs(at - a.occurred_at) < window
            for r, m, at, mat in seen
        ):
            o.reject("duplicate_weighing")
            continue
        seen.append((a.resident_id, a.methodology, a.occurred_at, material))


def serial_of(value) -> str:
    return str(value or "").strip().upper()


def serial_key(o: Outcome) -> str:
    return f"serial:{o.action.methodology}:{serial_of(o.parsed.get('serial'))}"


def serials_once(outcomes: list[Outcome]) -> None:
    serials = [serial_of(o.parsed.get("serial")) for o in outcomes]
    taken = {
        (m, serial_of(s))
        for m, s in Action.objects.filter(
            methodology__in={o.action.methodology for o in outcomes},
            status__in=LIVE_STATUSES,
            data__serial__in=[s for s in serials if s] + [s.lower() for s in serials if s],
        ).values_list("methodology", "data__serial")
    }
    for o, serial in zip(outcomes, serials, strict=True):
        if (o.action.methodology, serial) in taken:
            o.reject("serial_already_credited")
        else:
            taken.add((o.action.methodology, serial))


def month_key(o: Outcome) -> str:
    local = o.action.occurred_at.astimezone(SHANGHAI)
    subject = o.action.subject_hash or f"resident:{o.action.resident_id}"
    return f"month:{o.action.methodology}:{subject}:{local.year:04d}-{local.month:02d}"


def once_per_subject_month(outcomes: list[Outcome]) -> None:
    """One credit per biller account (the partner's subject) and Asia/Shanghai calendar month."""
    earliest = min(o.action.occurred_at for o in outcomes) - timedelta(days=32)
    taken = set()
    for m, subject, resident, at in Action.objects.filter(
        methodology__in={o.action.methodology for o in outcomes},
        status__in=LIVE_STATUSES,
        resident_id__in={o.action.resident_id for o in outcomes},
        occurred_at__gte=earliest,
    ).values_list("methodology", "subject_hash", "resident_id", "occurred_at"):
        local = at.astimezone(SHANGHAI)
        taken.add(f"month:{m}:{subject or f'resident:{resident}'}:{local.year:04d}-{local.month:02d}")
    for o in sorted(outcomes, key=lambda o: o.action.occurred_at):
        key = month_key(o)
        if key in taken:
            o.reject("already_credited_this_month")
        else:
            taken.add(key)


# validity_rules key -> its check (the engine refuses a version declaring a rule nobody enforces).
HISTORY_RULES = {
    "duplicate_window_s": duplicate_weighings,
    "serial_unique_forever": serials_once,
    "one_per_biller_account_per_month": once_per_subject_month,
}


def trip_interval(action: ActionRow, data: dict) -> tuple[datetime, datetime] | None:
    duration = data.get("duration_s")
    if duration in (None, ""):
        return None
    # Bounded by the data schema (at most a day): this can no longer overflow a timedelta.
    return action.occurred_at, action.occurred_at + timedelta(seconds=int(Decimal(str(duration))))


def trip_origin(o: Outcome) -> str:
    return f"{o.action.source}:{o.action.partner_id or ''}"


def double_claims(outcomes: list[Outcome]) -> None:
    """Same resident, overlapping trip times, different sources (two partners, or a partner and a
    self-report): the later-processed one is flagged for review instead of credited."""
    trips = [o for o in outcomes if o.trip is not None]
    if not trips:
        return
    start = min(o.trip[0] for o in trips) - MAX_TRIP
    end = max(o.trip[1] for o in trips)
    existing = _other_trips(trips, start, end)
    claimed: dict[int, list] = defaultdict(list)
    for resident, partner, source, at, duration in existing:
        try:
            seconds = min(int(Decimal(str(duration or 0))), int(MAX_TRIP.total_seconds()))
        except ArithmeticError:  # a record stored before data bounds existed: not a trip worth comparing
            continue
        claimed[resident].append(((partner, source), at, at + timedelta(seconds=seconds)))
    for o in sorted(trips, key=lambda o: o.trip[0]):
        begin, finish = o.trip
        origin = (o.action.partner_id, o.action.source)
        others = claimed[o.action.resident_id]
        if any(src != origin and begin < other_end and other_begin < finish for src, other_begin, other_end in others):
            o.status, o.reason = Action.Status.FLAGGED, "double_claim"
        others.append((origin, begin, finish))


# Raw SQL with array parameters on PostgreSQL (the ORM spends milliseconds on an IN list of 1,000 residents).
OTHER_TRIPS = """
SELECT resident_id, partner_id, source, occurred_at, data->>'duration_s' FROM actions_action
WHERE resident_id = ANY(%b::bigint[]) AND status = ANY(%b::text[]) AND occurred_at >= %b AND occurred_at <= %b
  AND data ? 'duration_s' AND NOT (source = %b AND partner_id IS NOT DISTINCT FROM %b)
"""


def _other_trips(trips: list[Outcome], start: datetime, end: datetime) -> list[tuple]:
    """(resident, partner, source, occurred_at, duration) of live trips of these residents in [start, end]; when
    the batch has one source, that source's own records are left out (they cannot double-claim it)."""
    from django.db import connection

    from backend.core.bulk import BoundCursor

    residents = {o.action.resident_id for o in trips}
    statuses = [str(s) for s in (*LIVE_STATUSES, Action.Status.CAPPED)]
    origins = {(o.action.partner_id, o.action.source) for o in trips}
    own = next(iter(origins)) if len(origins) == 1 else None
    if connection.vendor != "postgresql":
        existing = Action.objects.filter(
            resident_id__in=residents,
            status__in=statuses,
            occurred_at__gte=start,
            occurred_at__lte=end,
            data__has_key="duration_s",
        )
        if own is not None:
            partner_id, source = own
            if source == Action.Source.PARTNER:
                existing = existing.exclude(source=source, partner_id=partner_id)
            else:
                existing = existing.exclude(source=source)
        return list(existing.values_list("resident_id", "partner_id", "source", "occurred_at", "data__duration_s"))
    partner_id, source = own if own is not None else (None, "")
    if source == Action.Source.SELF_REPORT:
        partner_id = None  # self-reports carry no partner: every self-report is the batch's own source
    with BoundCursor() as cursor:
        cursor.execute(OTHER_TRIPS, [sorted(residents), statuses, start, end, str(source), partner_id])
        return cursor.fetchall()
