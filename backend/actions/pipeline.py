"""The processing pipeline: received actions -> credited grams and points, exactly once, in bulk.

For a batch of actions (any size up to a few thousand) the pipeline costs a constant number of queries:

1. resolve each partner action's subject to a resident through bindings; unknown -> `unclaimed`;
   residents without the separate partner-data consent -> `rejected` (`consent_missing`);
2. pick the methodology version in force at `occurred_at`, apply its validity and plausibility rules and
   the rules that need history (switched on by the version's validity_rules: duplicate weighings, appliance
   serials once ever, paperless bills once per biller and month) -> `rejected`;
3. detect double claiming (same resident, overlapping trip times from two sources) -> `flagged`;
4. apply daily caps per Asia/Shanghai day: credit up to the cap, record the rest as capped. Each decision is
   a per-action CapReservation made in a short transaction of its own (cap rows locked in one fixed order,
   for milliseconds), and a retry reuses it;
5. apply the evidence share, compute grams and points, post to the ledger (one transaction per action,
   idempotency key `action:<id>`) -> `credited` (flagged / self-reported: a pending credit).

Steps 1-3 only read. Crediting happens in one database transaction that first locks the actions it processes
(SKIP LOCKED) and re-checks they are still `received`, so a second run of the same batch (a redelivered task,
the reconciler) finds nothing left to do.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.core.exceptions import ObjectDoesNotExist
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from backend.actions.models import (
    Action,
    ActionStatusChange,
    CapReservation,
    DailyCapUsage,
    SubjectBinding,
    SubjectKind,
)
from backend.core.bulk import BoundCursor, bulk_update_rows

logger = logging.getLogger(__name__)
SHANGHAI = ZoneInfo("Asia/Shanghai")
ZERO = Decimal(0)
# Statuses whose actions count as claimed for double-claim and history rules.
LIVE_STATUSES = (Action.Status.CREDITED, Action.Status.FLAGGED, Action.Status.PENDING_REVIEW)
MAX_TRIP = timedelta(days=1)  # no plausible trip lasts longer: bounds the double-claim look-back

# The columns the pipeline reads, in ActionRow's order.
PIPELINE_READS = (
    "id",
    "resident_id",
    "methodology",
    "occurred_at",
    "data",
    "status",
    "source",
    "partner_id",
    "subject_kind",
    "subject_hash",
    "evidence_share",
)
UPDATED_FIELDS = [
    "status",
    "resident_id",
    "methodology_version_id",
    "evidence_share",
    "grams",
    "points",
    "reason",
    "breakdown",
    "quantity",
    "credited_quantity",
    "capped_quantity",
    "points_policy_version_id",
    "processed_at",
]


@dataclass(slots=True)
class ActionRow:
    """The columns of an action the pipeline reads (model instances cost more than the maths, per batch)."""

    id: int
    resident_id: int | None
    methodology: str
    occurred_at: datetime
    data: dict
    status: str
    source: str
    partner_id: int | None
    subject_kind: str
    subject_hash: str
    evidence_share: Decimal


@dataclass
class Outcome:
    action: ActionRow
    status: str = Action.Status.CREDITED
    reason: str = ""
    version: object = None
    parsed: dict = field(default_factory=dict)
    quantity: Decimal = ZERO
    credited_quantity: Decimal = ZERO
    grams: int = 0
    points: int = 0
    breakdown: dict = field(default_factory=dict)
    policy: object = None

    def reject(self, reason: str) -> None:
        self.status, self.reason = Action.Status.REJECTED, reason


def shanghai_day(at: datetime):
    return at.astimezone(SHANGHAI).date()


def _share_key(action: ActionRow) -> str:
    if action.source == Action.Source.SELF_REPORT:
        return "self_report"
    if action.subject_kind == SubjectKind.MERCHANT_RECEIPT:
        return "merchant_receipt"
    return "partner"


def actions_process(*, action_ids: list[int]) -> dict[str, int]:
    """Process `received` actions among `action_ids`. Safe to run twice and concurrently: daily caps are
    reserved per action (a retry reuses the reservation), actions another worker holds are skipped (SKIP
    LOCKED), processed ones are no longer `received`. Returns counts per status."""
    actions = [
        ActionRow(*row)
        for row in Action.objects.filter(id__in=action_ids, status=Action.Status.RECEIVED)
        .order_by("occurred_at", "id")
        .values_list(*PIPELINE_READS)
    ]
    if not actions:
        return {}
    outcomes = _evaluate(actions)
    _reserve_caps(outcomes)
    with transaction.atomic():
        claimed = set(
            Action.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(id__in=[o.action.id for o in outcomes], status=Action.Status.RECEIVED)
            .values_list("id", flat=True)
        )
        outcomes = [o for o in outcomes if o.action.id in claimed]
        if not outcomes:
            return {}
        _amounts(outcomes)
        _write(outcomes)
    counts: dict[str, int] = defaultdict(int)
    for outcome in outcomes:
        counts[outcome.status] += 1
    return dict(counts)


def _evaluate(actions: list[ActionRow]) -> list[Outcome]:
    from backend.methodologies import engine, selectors
    from backend.methodologies.models import Methodology

    outcomes = [Outcome(action=a) for a in actions]
    _resolve_residents(outcomes)
    live = [o for o in outcomes if o.status == Action.Status.CREDITED]

    methodologies = {m.code: m for m in Methodology.objects.filter(code__in={o.action.methodology for o in live})}
    versions = selectors.versions_applicable(methodologies.keys())
    policies = _PolicyTimeline()
    for o in live:
        methodology = methodologies.get(o.action.methodology)
        o.version = selectors.version_at(versions.get(o.action.methodology, []), o.action.occurred_at)
        if methodology is None or o.version is None:
            o.reject("no_methodology_version")
            continue
        with _isolated(o):
            _check_one(o, methodology, policies, engine)

    live = [o for o in outcomes if o.status == Action.Status.CREDITED]
    _history_rules(live)
    live = [o for o in outcomes if o.status == Action.Status.CREDITED]
    _double_claims(live)
    for o in live:
        if o.action.source == Action.Source.SELF_REPORT:
            o.status = Action.Status.PENDING_REVIEW
    for o in outcomes:
        if o.version is not None and o.status != Action.Status.REJECTED:
            with _isolated(o):
                o.quantity = engine.cap_quantity(o.version, o.parsed)
                o.credited_quantity = o.quantity
    return outcomes


@contextmanager
def _isolated(o: Outcome):
    """One action that breaks the rules engine (a bug, data no rule foresaw) must not poison its batch: it is
    rejected as `processing_error` and logged, and the other 999 are credited. Without this the batch would
    fail, stay `received` and be retried by the reconciler every minute, forever."""
    try:
        yield
    except Exception:
        logger.exception("processing action %s failed; rejected as processing_error", o.action.id)
        o.reject("processing_error")


def _check_one(o: Outcome, methodology, policies: _PolicyTimeline, engine) -> None:
    action = o.action
    try:
        o.parsed = engine.parse_action_data(methodology, action.data)
    except engine.ActionDataInvalid as exc:
        o.reject(f"invalid_data:{exc.field}"[:64])
        return
    reason = engine.check_validity(o.version, o.parsed)
    if reason:
        o.reject(reason)
        return
    if action.source == Action.Source.SELF_REPORT and not o.version.self_report_allowed:
        o.reject("self_report_not_allowed")
        return
    o.policy = policies.at(action.occurred_at)


def _resolve_residents(outcomes: list[Outcome]) -> None:
    from backend.accounts.models import Consent

    unresolved = [o for o in outcomes if o.action.resident_id is None]
    if unresolved:
        keys = {(o.action.subject_kind, o.action.subject_hash) for o in unresolved}
        bindings = SubjectBinding.objects.filter(subject_kind_hash_q(keys)).values_list(
            "kind", "identifier_hash", "resident_id"
        )
        owner = {(kind, h): resident for kind, h, resident in bindings}
        for o in unresolved:
            resident = owner.get((o.action.subject_kind, o.action.subject_hash))
            if resident is None:
                o.status, o.reason = Action.Status.UNCLAIMED, "subject_not_bound"
            else:
                o.action.resident_id = resident
    partner_residents = {
        o.action.resident_id for o in outcomes if o.action.resident_id and o.action.source == Action.Source.PARTNER
    }
    consenting = set(
        Consent.objects.filter(
            user_id__in=partner_residents,
            kind=Consent.Kind.PARTNER_DATA,
            withdrawn_at__isnull=True,
            user__is_active=True,
        ).values_list("user_id", flat=True)
    )
    for o in outcomes:
        if (
            o.status == Action.Status.CREDITED
            and o.action.source == Action.Source.PARTNER
            and o.action.resident_id not in consenting
        ):
            o.reject("consent_missing")


def subject_kind_hash_q(keys) -> Q:
    kinds = {k for k, _ in keys}
    hashes = {h for _, h in keys}
    return Q(kind__in=kinds, identifier_hash__in=hashes)


class _PolicyTimeline:
    """Points policy versions in force, loaded once per batch (a batch spans a few days at most)."""

    def __init__(self):
        from backend.methodologies import selectors

        self._selectors = selectors
        self._cache: dict = {}

    def at(self, at: datetime):
        day = shanghai_day(at)
        cached = self._cache.get(day)
        if day in self._cache and (cached is None or _in_force(cached, at)):
            return cached
        try:
            policy = self._selectors.points_policy_at(at)
        except ObjectDoesNotExist:  # no points policy in force then: grams are credited, points are not
            policy = None
        self._cache[day] = policy
        return policy


def _in_force(version, at: datetime) -> bool:
    return version.effective_from <= at and (version.effective_to is None or at < version.effective_to)


def _history_rules(live: list[Outcome]) -> None:
    """Rules that look at other actions, switched on by the version's validity_rules (data, not code):
    `duplicate_window_s` (a weighing of the same household and material within the window is a duplicate),
    `serial_unique_forever` (an appliance serial earns once, ever), `one_per_biller_account_per_month`."""
    by_rule: dict[str, list[Outcome]] = defaultdict(list)
    for o in live:
        for rule in ("duplicate_window_s", "serial_unique_forever", "one_per_biller_account_per_month"):
            if (o.version.validity_rules or {}).get(rule):
                by_rule[rule].append(o)
    if by_rule["duplicate_window_s"]:
        _duplicate_weighings(by_rule["duplicate_window_s"])
    if by_rule["serial_unique_forever"]:
        _serials_once(by_rule["serial_unique_forever"])
    if by_rule["one_per_biller_account_per_month"]:
        _once_per_subject_month(by_rule["one_per_biller_account_per_month"])


def _duplicate_weighings(outcomes: list[Outcome]) -> None:
    widest = timedelta(seconds=max(int(o.version.validity_rules["duplicate_window_s"]) for o in outcomes))
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
        window = timedelta(seconds=int(o.version.validity_rules["duplicate_window_s"]))
        material = str(o.parsed.get("material", "")).lower()
        if any(
            r == a.resident_id and m == a.methodology and mat == material and abs(at - a.occurred_at) < window
            for r, m, at, mat in seen
        ):
            o.reject("duplicate_weighing")
            continue
        seen.append((a.resident_id, a.methodology, a.occurred_at, material))


def _serials_once(outcomes: list[Outcome]) -> None:
    def serial_of(value) -> str:
        return str(value or "").strip().upper()

    serials = [serial_of(o.parsed.get("serial")) for o in outcomes]
    taken = {
        (m, serial_of(s))
        for m, s in Action.objects.filter(
            methodology__in={o.action.methodology for o in outcomes},
            status__in=LIVE_STATUSES,
            data__serial__in=[s for s in serials if s],
        ).values_list("methodology", "data__serial")
    }
    for o, serial in zip(outcomes, serials, strict=True):
        if (o.action.methodology, serial) in taken:
            o.reject("serial_already_credited")
        else:
            taken.add((o.action.methodology, serial))


def _once_per_subject_month(outcomes: list[Outcome]) -> None:
    """One credit per biller account (the partner's subject) and Asia/Shanghai calendar month."""

    def month_key(o: Outcome) -> tuple:
        local = o.action.occurred_at.astimezone(SHANGHAI)
        subject = o.action.subject_hash or f"resident:{o.action.resident_id}"
        return o.action.methodology, subject, local.year, local.month

    earliest = min(o.action.occurred_at for o in outcomes) - timedelta(days=32)
    taken = set()
    for m, subject, resident, at in Action.objects.filter(
        methodology__in={o.action.methodology for o in outcomes},
        status__in=LIVE_STATUSES,
        resident_id__in={o.action.resident_id for o in outcomes},
        occurred_at__gte=earliest,
    ).values_list("methodology", "subject_hash", "resident_id", "occurred_at"):
        local = at.astimezone(SHANGHAI)
        taken.add((m, subject or f"resident:{resident}", local.year, local.month))
    for o in sorted(outcomes, key=lambda o: o.action.occurred_at):
        key = month_key(o)
        if key in taken:
            o.reject("already_credited_this_month")
        else:
            taken.add(key)


def _trip_interval(action: ActionRow, data: dict) -> tuple[datetime, datetime] | None:
    duration = data.get("duration_s")
    if duration in (None, ""):
        return None
    return action.occurred_at, action.occurred_at + timedelta(seconds=float(Decimal(str(duration))))


def _double_claims(live: list[Outcome]) -> None:
    """Same resident, overlapping trip times, different sources (two partners, or a partner and a
    self-report): the later-processed one is flagged for review instead of credited."""
    trips = [(o, _trip_interval(o.action, o.parsed)) for o in live]
    trips = [(o, iv) for o, iv in trips if iv is not None]
    if not trips:
        return
    residents = {o.action.resident_id for o, _ in trips}
    start = min(iv[0] for _, iv in trips) - MAX_TRIP
    end = max(iv[1] for _, iv in trips)
    existing = Action.objects.filter(
        resident_id__in=residents,
        status__in=(*LIVE_STATUSES, Action.Status.CAPPED),
        occurred_at__gte=start,
        occurred_at__lte=end,
        data__has_key="duration_s",
    )
    origins = {(o.action.partner_id, o.action.source) for o, _ in trips}
    if len(origins) == 1:
        # Records of the batch's own source cannot double-claim it: only other sources are worth reading.
        ((partner_id, source),) = origins
        if source == Action.Source.PARTNER:
            existing = existing.exclude(source=source, partner_id=partner_id)
        else:
            existing = existing.exclude(source=source)
    existing = existing.values_list("resident_id", "partner_id", "source", "occurred_at", "data__duration_s")
    claimed: dict[int, list] = defaultdict(list)
    for resident, partner, source, at, duration in existing:
        seconds = float(Decimal(str(duration or 0)))
        claimed[resident].append(((partner, source), at, at + timedelta(seconds=seconds)))
    for o, (begin, finish) in sorted(trips, key=lambda t: t[1][0]):
        origin = (o.action.partner_id, o.action.source)
        others = claimed[o.action.resident_id]
        if any(src != origin and begin < other_end and other_begin < finish for src, other_begin, other_end in others):
            o.status, o.reason = Action.Status.FLAGGED, "double_claim"
        others.append((origin, begin, finish))


def _creditable(outcomes: list[Outcome]) -> list[Outcome]:
    return [o for o in outcomes if o.version is not None and o.status != Action.Status.REJECTED]


def _reserve_caps(outcomes: list[Outcome]) -> None:
    """Decide how much of each action fits under its resident's daily cap, in a short transaction of its own.

    The DailyCapUsage rows are locked (created when missing, in one fixed order) only for the few milliseconds
    of this transaction instead of until the batch commits: two workers crediting the same residents no longer
    wait on each other for a whole batch. Each decision is stored as a CapReservation keyed by the action, so
    a retry (a redelivered task, the reconciler after a crash) reuses it and never takes the cap twice."""
    capped = [o for o in _creditable(outcomes) if o.version.daily_cap]
    if not capped:
        return
    with transaction.atomic():
        reserved = _reservations([o.action.id for o in capped])
        todo = [o for o in capped if o.action.id not in reserved]
        if todo:
            usage = _lock_cap_usage({_cap_key(o) for o in todo})
            # Re-read after the locks: a concurrent run of the same actions may have reserved them meanwhile.
            reserved.update(_reservations([o.action.id for o in todo]))
            new = []
            for o in sorted(todo, key=lambda o: (o.action.occurred_at, o.action.id)):
                if o.action.id in reserved:
                    continue
                row = usage[_cap_key(o)]
                remaining = max(Decimal(str(o.version.daily_cap["limit"])) - row.used, ZERO)
                credited = min(o.quantity, remaining)
                row.used += credited
                row.changed = True
                reserved[o.action.id] = credited
                new.append(CapReservation(action_id=o.action.id, quantity=credited))
            changed = [row for row in usage.values() if row.changed]
            if changed:
                bulk_update_rows(DailyCapUsage, [{"id": r.id, "used": r.used} for r in changed], ["used"])
            CapReservation.objects.bulk_create(new, batch_size=1000)
    for o in capped:
        o.credited_quantity = reserved[o.action.id]


def _reservations(action_ids: list[int]) -> dict[int, Decimal]:
    return dict(CapReservation.objects.filter(action_id__in=action_ids).values_list("action_id", "quantity"))


def _cap_key(o: Outcome) -> tuple:
    return o.action.resident_id, o.action.methodology, shanghai_day(o.action.occurred_at)


def _amounts(outcomes: list[Outcome]) -> None:
    """Grams and points for the credited quantity (the evidence share applied), statuses for caps."""
    from backend.methodologies import engine

    for o in _creditable(outcomes):
        with _isolated(o):
            share = Decimal(str(o.version.evidence_shares.get(_share_key(o.action), "1")))
            result = engine.calculate(o.version, o.parsed, evidence_share=share, credited_quantity=o.credited_quantity)
            o.grams = result.grams
            o.breakdown = compact_breakdown(result.breakdown)
            o.action.evidence_share = share
            o.points = engine.points_for_grams(o.grams, o.policy) if o.policy is not None else 0
        if o.status == Action.Status.REJECTED:  # the engine failed on it: the cap it reserved goes back
            _cap_release(o)
            o.grams = o.points = 0
            o.quantity = o.credited_quantity = ZERO
            continue
        if o.credited_quantity == 0 and o.quantity > 0 and o.status == Action.Status.CREDITED:
            o.status, o.reason = Action.Status.CAPPED, "daily_cap_reached"
        elif o.credited_quantity < o.quantity and not o.reason:
            o.reason = "partly_capped"


def _cap_release(o: Outcome) -> None:
    if o.version.daily_cap and o.credited_quantity:
        cap_usage_release(
            action_id=o.action.id,
            resident_id=o.action.resident_id,
            methodology=o.action.methodology,
            day=shanghai_day(o.action.occurred_at),
            quantity=o.credited_quantity,
        )


def cap_usage_release(*, action_id: int, resident_id: int, methodology: str, day, quantity: Decimal) -> None:
    """Give cap back (an action rejected after its cap was reserved: review, engine failure); its reservation
    drops to zero with it, so reservations keep adding up to the usage."""
    CapReservation.objects.filter(action_id=action_id).update(quantity=ZERO)
    usage = (
        DailyCapUsage.objects.select_for_update()
        .filter(resident_id=resident_id, methodology=methodology, day=day)
        .first()
    )
    if usage is not None:
        usage.used = max(usage.used - quantity, ZERO)
        usage.save(update_fields=["used"])


# What is stored with each action; the full breakdown (inputs, parameters with units, formula) is recomputed
# from the stored version and inputs when a person asks for it (GET /me/actions/{id}): the same inputs and
# version always give the same grams, and storing less keeps a 1,000-action batch cheap.
STORED_BREAKDOWN_KEYS = ("baseline_g", "project_g", "net_g", "evidence_share", "cap", "exact_g", "rounding", "grams")


def compact_breakdown(breakdown: dict) -> dict:
    return {key: breakdown[key] for key in STORED_BREAKDOWN_KEYS if key in breakdown}


@dataclass
class _CapUsage:
    id: int
    used: Decimal
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
        return {(r, m, d): _CapUsage(id=pk, used=used) for pk, r, m, d, used in rows}
    DailyCapUsage.objects.bulk_create(
        [DailyCapUsage(resident_id=r, methodology=m, day=d) for r, m, d in ordered], ignore_conflicts=True
    )
    rows = (
        DailyCapUsage.objects.select_for_update()
        .filter(
            resident_id__in={k[0] for k in keys}, methodology__in={k[1] for k in keys}, day__in={k[2] for k in keys}
        )
        .order_by("resident_id", "methodology", "day")
        .values_list("id", "resident_id", "methodology", "day", "used")
    )
    return {(r, m, d): _CapUsage(id=pk, used=used) for pk, r, m, d, used in rows}


CAP_USAGE_INSERT = """
INSERT INTO actions_dailycapusage (resident_id, methodology, day, used)
SELECT r, m, d, 0 FROM unnest(%b::bigint[], %b::text[], %b::date[]) AS k(r, m, d)
ON CONFLICT (resident_id, methodology, day) DO NOTHING
"""
# ORDER BY before FOR UPDATE: rows are locked in that order, the same in every worker.
CAP_USAGE_LOCK = """
SELECT u.id, u.resident_id, u.methodology, u.day, u.used FROM actions_dailycapusage u
JOIN unnest(%b::bigint[], %b::text[], %b::date[]) AS k(r, m, d)
  ON u.resident_id = k.r AND u.methodology = k.m AND u.day = k.d
ORDER BY u.resident_id, u.methodology, u.day
FOR UPDATE OF u
"""


def _reason_text(action: ActionRow, quantity_label: str) -> str:
    local = action.occurred_at.astimezone(SHANGHAI).date().isoformat()
    return f"{action.methodology.replace('_', ' ').capitalize()} {quantity_label}, {local}".replace("  ", " ")


def _quantity_label(action: ActionRow, parsed: dict) -> str:
    for key, unit in (
        ("distance_km", "km"),
        ("steps", "steps"),
        ("mass_kg", "kg"),
        ("energy_kwh", "kWh"),
        ("count", "×"),
    ):
        if key in parsed:
            value = parsed[key]
            return f"{value}{unit}" if unit == "×" else f"{value} {unit}"
    return ""


def _write(outcomes: list[Outcome]) -> None:
    """Store the outcomes, then post the credits. The ledger goes last on purpose: its balance update locks the
    residents' points accounts until commit, and everything written before it is time another worker
    crediting the same residents would spend waiting. An action's ledger entry is found by its idempotency
    key `action:<id>` (and the ledger's source link back to the action)."""
    from backend.ledger.services import ActionCredit, action_credits_post_bulk

    now = timezone.now()
    rows = []
    for o in outcomes:
        a = o.action
        rows.append(
            {
                "id": a.id,
                "status": o.status,
                "resident_id": a.resident_id,
                "methodology_version_id": getattr(o.version, "id", None),
                "evidence_share": a.evidence_share,
                "grams": o.grams,
                "points": o.points,
                "reason": o.reason,
                "breakdown": o.breakdown,
                "quantity": o.quantity,
                "credited_quantity": o.credited_quantity,
                "capped_quantity": o.quantity - o.credited_quantity,
                "points_policy_version_id": getattr(o.policy, "id", None),
                "processed_at": now,
            }
        )
        a.status = o.status
    bulk_update_rows(Action, rows, UPDATED_FIELDS)
    _history_append(outcomes, now)
    credits = [
        ActionCredit(
            idempotency_key=f"action:{o.action.id}",
            resident_id=o.action.resident_id,
            methodology=o.action.methodology,
            grams=o.grams,
            points=o.points,
            reason=_reason_text(o.action, _quantity_label(o.action, o.parsed)),
            source_type="action",
            source_id=o.action.id,
            effective_at=o.action.occurred_at,
            pending=o.status != Action.Status.CREDITED,
            points_expiry_months=getattr(o.policy, "lot_expiry_months", 12) or 12,
        )
        for o in outcomes
        if has_credit(o.status, o.grams, o.points)
    ]
    if credits:
        action_credits_post_bulk(credits=credits)


def has_credit(status: str, grams: int, points: int) -> bool:
    """Whether the pipeline posted a ledger credit (pending or not) for an action in this state."""
    return status in (Action.Status.CREDITED, Action.Status.FLAGGED, Action.Status.PENDING_REVIEW) and (
        grams > 0 or points > 0
    )


def _history_append(outcomes: list[Outcome], now: datetime) -> None:
    if connection.vendor != "postgresql":
        ActionStatusChange.objects.bulk_create(
            [ActionStatusChange(action_id=o.action.id, status=o.status, reason=o.reason, at=now) for o in outcomes]
        )
        return
    with BoundCursor() as cursor:
        cursor.execute(
            HISTORY_INSERT,
            [now, [o.action.id for o in outcomes], [o.status for o in outcomes], [o.reason for o in outcomes]],
        )


HISTORY_INSERT = """
INSERT INTO actions_actionstatuschange (action_id, status, reason, note, at)
SELECT a, s, r, '', %b FROM unnest(%b::bigint[], %b::text[], %b::text[]) AS v(a, s, r)
"""
