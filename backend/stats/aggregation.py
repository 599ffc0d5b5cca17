"""Incremental aggregation of the ledger into ResidentDay, DailyStat and MonthlyStat.

The ledger is append-only, so it is the change feed: every credit, release, reversal and spend is a new
LedgerTransaction. The aggregator turns the transactions created in [watermark, horizon) into per-resident-day
deltas, adds them to ResidentDay, recomputes the touched days and months, and moves the watermark to the
horizon, all in one database transaction under a lock on the watermark row (one aggregator at a time; a
rebuild takes the same lock).

Why a time horizon and not "max id seen": ids come from a sequence at INSERT time but become visible at
COMMIT; a credit that took id 100 may commit after id 101 was aggregated, and an id watermark would skip it for
ever. `created_at` is STATEMENT_TIMESTAMP(), which is never earlier than the start of the inserting
transaction. So every row not yet committed belongs to a transaction that is open now, and its `created_at`
is at or after that transaction's start. The horizon is the start of the oldest transaction open in this
database (pg_stat_activity, our own excluded) or the clock, whichever is earlier: every row created before the
horizon is committed and visible to us, and rows created later are taken by the next run. A long transaction
only delays statistics, never loses a row. Where the activity view cannot be read (another role's sessions,
SQLite), a fixed safety lag is used instead.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from django.db import connection, transaction
from django.db.models import Count, Max, Min, Q, Sum
from django.utils import timezone

from backend.core.days import days_bounds
from backend.core.days import local_day as shanghai_day
from backend.stats.models import ALL, DailyStat, MonthlyStat, ResidentDay, StatsWatermark

logger = logging.getLogger(__name__)
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
FALLBACK_LAG = timedelta(minutes=10)  # when open transactions cannot be seen: longer than any crediting txn
CREDIT_KINDS = ("action_credit", "pending_release")
SPEND_KIND = "points_spend"
ZERO = Decimal(0)
DELTA_FIELDS = ("actions", "grams", "points", "points_redeemed", "quantity")


@dataclass
class Delta:
    actions: int = 0
    grams: int = 0
    points: int = 0
    points_redeemed: int = 0
    quantity: Decimal = ZERO

    def add(self, other: Delta) -> None:
        for name in DELTA_FIELDS:
            setattr(self, name, getattr(self, name) + getattr(other, name))


Key = tuple[date, int, str, str]  # day, resident id, methodology, source


def month_of(day: date) -> date:
    return day.replace(day=1)


def safe_horizon() -> datetime:
    """The latest instant before which every ledger transaction is committed (see the module docstring)."""
    if connection.vendor != "postgresql":
        return timezone.now() - timedelta(seconds=60)
    # Only client backends insert ledger rows: autovacuum/autoanalyze workers (frequent on a busy database, and
    # on a test database truncated between tests) also run transactions here, and counting them held the
    # horizon back behind credits that were long committed.
    with connection.cursor() as cur:
        cur.execute(
            "SELECT clock_timestamp(), min(xact_start), bool_or(state IS NULL)"
            " FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND backend_type = 'client backend' AND (xact_start IS NOT NULL OR state IS NULL)"
        )
        clock, oldest, hidden = cur.fetchone()
    if hidden:  # sessions of another role: their transactions are invisible to us
        return clock - FALLBACK_LAG
    return min(clock, oldest) if oldest else clock


# ------------------------------------------------------------------------------------------ ledger -> deltas


def ledger_deltas(txn_filter: Q, *, owner_id: int | None = None) -> dict[Key, Delta]:
    """Per (day, resident, methodology, source) deltas of the ledger transactions matching `txn_filter`.

    Counted: postings to residents' `carbon` and `points` accounts (pending accounts are not credits yet) by
    credits, releases of pending credits and their reversals (day = the action's day, also for a reversal
    made later), and points spends and reversed spends (`points_redeemed`, methodology ""). Each credit counts
    one action (a reversal minus one) and the action's credited quantity. Three queries."""
    from backend.actions.models import Action
    from backend.ledger.models import Posting

    postings = Posting.objects.filter(account__kind="resident", account__name__in=("carbon", "points"))
    if owner_id is not None:
        postings = postings.filter(account__owner_id=owner_id)
    rows = list(
        postings.filter(_prefixed(txn_filter)).values_list(
            "transaction_id",
            "amount",
            "account__name",
            "account__owner_id",
            "transaction__kind",
            "transaction__effective_at",
            "transaction__reverses__kind",
            "transaction__reverses__effective_at",
            "transaction__source_type",
            "transaction__source_id",
        )
    )
    action_ids = {sid for *_, st, sid in rows if st == "action" and sid is not None}
    actions = {
        a_id: (m, src, q)
        for a_id, m, src, q in Action.objects.filter(id__in=action_ids).values_list(
            "id", "methodology", "source", "credited_quantity"
        )
    }
    deltas: dict[Key, Delta] = defaultdict(Delta)
    counted: set[int] = set()
    for txn_id, amount, name, owner, kind, eff, orig_kind, orig_eff, st, sid in rows:
        if kind == "reversal":
            kind, sign, eff = orig_kind, -1, orig_eff
        else:
            sign = 1
        day = shanghai_day(eff)
        if kind in CREDIT_KINDS:
            methodology, source, quantity = actions.get(sid, (ALL, ALL, ZERO)) if st == "action" else (ALL, ALL, ZERO)
            d = deltas[(day, owner, methodology, source)]
            if name == "carbon":
                d.grams += amount
            else:
                d.points += amount
            if txn_id not in counted:  # one action per credit, however many postings it has
                counted.add(txn_id)
                d.actions += sign
                d.quantity += sign * quantity
        elif kind == SPEND_KIND and name == "points":
            deltas[(day, owner, ALL, ALL)].points_redeemed -= amount  # a spend debits, its reversal credits back
    return dict(deltas)


def _prefixed(q: Q) -> Q:
    """Rewrite a Q on LedgerTransaction fields into one on Posting (`transaction__` prefix)."""
    out = Q()
    out.connector, out.negated = q.connector, q.negated
    out.children = [_prefixed(c) if isinstance(c, Q) else (f"transaction__{c[0]}", c[1]) for c in q.children]
    return out


# ------------------------------------------------------------------------------------------ deltas -> tables


def resident_days_apply(deltas: dict[Key, Delta]) -> set[date]:
    """Add deltas to ResidentDay (read-modify-write: only ever called under the watermark lock). Returns the
    touched days. Three queries plus the bulk writes."""
    from backend.accounts.models import User

    if not deltas:
        return set()
    days = {k[0] for k in deltas}
    residents = {k[1] for k in deltas}
    districts = dict(User.objects.filter(id__in=residents).values_list("id", "district_id"))
    existing = {
        (r.day, r.resident_id, r.methodology, r.source): r
        for r in ResidentDay.objects.filter(day__in=days, resident_id__in=residents)
    }
    created, updated = [], []
    for key, delta in deltas.items():
        row = existing.get(key)
        if row is None:
            day, resident_id, methodology, source = key
            row = ResidentDay(
                day=day,
                month=month_of(day),
                resident_id=resident_id,
                district=districts.get(resident_id) or "",
                methodology=methodology,
                source=source,
            )
            created.append(row)
        else:
            updated.append(row)
        for name in DELTA_FIELDS:
            setattr(row, name, getattr(row, name) + getattr(delta, name))
    ResidentDay.objects.bulk_create(created, batch_size=2000)
    ResidentDay.objects.bulk_update(updated, DELTA_FIELDS, batch_size=2000)
    return days


ACTIVE = Q(actions__gt=0) | Q(grams__gt=0)  # a resident with a credit standing (not only reversed ones)
FIGURE_SUMS = {
    "actions": Sum("actions"),
    "grams": Sum("grams"),
    "points_issued": Sum("points"),
    "points_redeemed": Sum("points_redeemed"),
    "quantity": Sum("quantity"),
}


def daily_recompute(days: Iterable[date]) -> None:
    """Rebuild the DailyStat rows of whole days from ResidentDay and registrations (a day is small: one row
    per resident active that day)."""
    from backend.accounts.models import User

    days = sorted(set(days))
    if not days:
        return
    DailyStat.objects.filter(day__in=days).delete()
    rows: dict[tuple, DailyStat] = {}
    base = ResidentDay.objects.filter(day__in=days)
    per_cell = base.values("day", "district", "methodology", "source").annotate(
        active_residents=Count("resident", filter=ACTIVE), **FIGURE_SUMS
    )
    for r in per_cell:
        rows[(r["day"], r["district"], r["methodology"], r["source"])] = DailyStat(**r)
    any_method = (
        base.exclude(methodology=ALL)
        .filter(ACTIVE)
        .values("day", "district")
        .annotate(n=Count("resident", distinct=True))
    )
    for r in any_method:
        _all_row(rows, r["day"], r["district"]).active_residents = r["n"]
    start, end = days_bounds(days[0], days[-1])
    joined = (
        User.objects.filter(role=User.Role.RESIDENT, date_joined__gte=start, date_joined__lt=end)
        .values_list("date_joined", "district_id")
        .iterator(chunk_size=5000)
    )
    wanted = set(days)
    for at, district in joined:
        day = shanghai_day(at)
        if day in wanted:
            _all_row(rows, day, district or "").new_residents += 1
    DailyStat.objects.bulk_create(rows.values(), batch_size=2000)


def _all_row(rows: dict, day: date, district: str) -> DailyStat:
    key = (day, district, ALL, ALL)
    if key not in rows:
        rows[key] = DailyStat(day=day, district=district, methodology=ALL, source=ALL)
    return rows[key]


def monthly_recompute(months: Iterable[date]) -> None:
    """Rebuild the MonthlyStat cells of whole months from ResidentDay (distinct residents per cell)."""
    months = sorted(set(months))
    if not months:
        return
    MonthlyStat.objects.filter(month__in=months).delete()
    # A cell's residents are the people its figures describe: credited residents on methodology cells,
    # redeeming residents on the "" cell (which carries only redemptions).
    cells = [
        MonthlyStat(**r)
        for r in ResidentDay.objects.filter(month__in=months)
        .values("month", "district", "methodology")
        .annotate(residents=Count("resident", distinct=True, filter=ACTIVE | ~Q(points_redeemed=0)), **FIGURE_SUMS)
    ]
    MonthlyStat.objects.bulk_create(cells, batch_size=2000)


# ---------------------------------------------------------------------------------------------- the runs


def _watermark_locked() -> StatsWatermark:
    StatsWatermark.objects.get_or_create(id=1, defaults={"ledger_created_before": EPOCH})
    return StatsWatermark.objects.select_for_update().get(id=1)


SLICE_TRANSACTIONS = 20_000  # ledger transactions per aggregation transaction (bounded memory and lock time)


def stats_aggregate(*, slice_transactions: int = SLICE_TRANSACTIONS) -> dict:
    """Aggregate the ledger transactions created since the watermark, up to the safe horizon, in slices of
    about `slice_transactions` (each slice its own database transaction, so a first run over a long history
    or a backlog after an outage never holds one huge transaction). Idempotent and safe to run concurrently
    (a second run waits for the watermark lock, then finds nothing new)."""
    first_since, days_total, horizon = None, 0, None
    while True:
        with transaction.atomic():
            mark = _watermark_locked()
            since = mark.ledger_created_before
            first_since = first_since or since
            horizon = horizon or safe_horizon()
            if horizon <= since:
                break
            slice_end = _slice_end(since, horizon, slice_transactions)
            days = resident_days_apply(ledger_deltas(Q(created_at__gte=since, created_at__lt=slice_end)))
            # Registrations since the last run (and the day before: date_joined is set before its row commits).
            first = shanghai_day(since) - timedelta(days=1) if since > EPOCH else shanghai_day(slice_end)
            last = shanghai_day(slice_end)
            days |= {first + timedelta(days=i) for i in range((last - first).days + 1)}
            daily_recompute(days)
            monthly_recompute({month_of(d) for d in days})
            mark.ledger_created_before = slice_end
            mark.updated_at = timezone.now()
            mark.save(update_fields=["ledger_created_before", "updated_at"])
            days_total += len(days)
        if slice_end >= horizon:
            break
    return {"transactions_from": first_since, "horizon": max(horizon, first_since), "days": days_total}


def _slice_end(since: datetime, horizon: datetime, size: int) -> datetime:
    """The created_at that closes a slice of about `size` transactions after `since` (the horizon when fewer
    remain). A slice never splits one created_at value (one bulk insert shares its statement time)."""
    from backend.ledger.models import LedgerTransaction

    cut = list(
        LedgerTransaction.objects.filter(created_at__gt=since, created_at__lt=horizon)
        .order_by("created_at")
        .values_list("created_at", flat=True)[size : size + 1]
    )
    return cut[0] if cut else horizon


def stats_rebuild(*, start: date, end: date, progress=None, chunk: int = 5000) -> dict:
    """Recompute every statistic of the days start..end (inclusive) from the ledger: the ResidentDay rows of
    those days are dropped and rebuilt from all transactions aggregated so far (created before the watermark),
    walked in id chunks; then the days and their months are recomputed. `progress(n)` is called per chunk."""
    from backend.ledger.models import LedgerTransaction

    if end < start:
        raise ValueError("end before start")
    lo, hi = days_bounds(start, end)
    with transaction.atomic():
        mark = _watermark_locked()
        ResidentDay.objects.filter(day__gte=start, day__lte=end).delete()
        bounds = LedgerTransaction.objects.filter(created_at__lt=mark.ledger_created_before).aggregate(
            lo=Min("id"), hi=Max("id")
        )
        first_id, last_id = bounds["lo"], bounds["hi"]
        in_range = (Q(effective_at__gte=lo, effective_at__lt=hi) & ~Q(kind="reversal")) | Q(
            kind="reversal", reverses__effective_at__gte=lo, reverses__effective_at__lt=hi
        )
        if first_id is not None:
            for chunk_start in range(first_id, last_id + 1, chunk):
                deltas = ledger_deltas(
                    in_range
                    & Q(created_at__lt=mark.ledger_created_before, id__gte=chunk_start, id__lt=chunk_start + chunk)
                )
                resident_days_apply({k: v for k, v in deltas.items() if start <= k[0] <= end})
                if progress:
                    progress(min(chunk, last_id + 1 - chunk_start))
        days = {start + timedelta(days=i) for i in range((end - start).days + 1)}
        daily_recompute(days)
        monthly_recompute({month_of(d) for d in days})
    return {"days": len(days), "first_id": first_id, "last_id": last_id}


def rebuild_id_span() -> int:
    """How many transaction ids a rebuild walks (the progress bar's total)."""
    from backend.ledger.models import LedgerTransaction

    b = LedgerTransaction.objects.aggregate(lo=Min("id"), hi=Max("id"))
    return 0 if b["lo"] is None else b["hi"] - b["lo"] + 1


def _watermark_shared() -> datetime:
    """The watermark, read under a share lock held to the end of the caller's transaction: the aggregator
    cannot move ledger rows from the tail into ResidentDay while the caller reads both."""
    with connection.cursor() as cur:
        lock = " FOR SHARE" if connection.vendor == "postgresql" else ""
        cur.execute(f"SELECT ledger_created_before FROM stats_statswatermark WHERE id = 1{lock}")  # noqa: S608
        row = cur.fetchone()
    return row[0] if row else EPOCH  # never aggregated yet: everything is tail


def resident_grams(*, start: date, end: date) -> dict[int, int]:
    """Grams per resident credited on days start..end, exact up to now: ResidentDay plus the ledger tail not yet
    aggregated (nothing counted twice or missed, see _watermark_shared)."""
    with transaction.atomic():
        since = _watermark_shared()
        rows = ResidentDay.objects.filter(day__gte=start, day__lte=end).exclude(methodology=ALL)
        out = dict(rows.values_list("resident_id").annotate(g=Sum("grams")))
        for (day, resident, methodology, _source), delta in ledger_deltas(Q(created_at__gte=since)).items():
            if start <= day <= end and methodology != ALL:
                out[resident] = out.get(resident, 0) + delta.grams
    return out


def resident_period_grams(*, resident_id: int, periods: dict[str, tuple[date, date]]) -> dict[str, int]:
    """One resident's grams in each named period (day ranges), exact up to now, in 5 queries."""
    with transaction.atomic():
        since = _watermark_shared()
        rows = ResidentDay.objects.filter(resident_id=resident_id).exclude(methodology=ALL)
        sums = rows.aggregate(
            **{name: Sum("grams", filter=Q(day__gte=lo, day__lte=hi)) for name, (lo, hi) in periods.items()}
        )
        out = {name: sums[name] or 0 for name in periods}
        for (day, _r, methodology, _s), delta in ledger_deltas(Q(created_at__gte=since), owner_id=resident_id).items():
            for name, (lo, hi) in periods.items():
                if lo <= day <= hi and methodology != ALL:
                    out[name] += delta.grams
    return out
