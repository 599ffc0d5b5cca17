"""Database uniqueness claims: what makes the history rules hold when two batches are credited at once.

The checks in rules.py read committed history before the crediting transaction; two workers crediting the
same serial at the same moment both read "never credited". So, inside the crediting transaction, every
action that passes a history rule also writes a claim the database arbitrates:

- `HistoryClaim.key` is unique: `serial:<methodology>:<SERIAL>` (serial once ever) and
  `month:<methodology>:<subject>:<yyyy-mm>` (once per biller account and month);
- `PeriodClaim` rows are time ranges under PostgreSQL exclusion constraints (btree_gist): a `window` of
  [t - w/2, t + w/2) per resident and methodology:material (two weighings closer than w overlap), and a
  `trip` [start, end) per resident that may not overlap a trip of another origin.

Claims are inserted with `ON CONFLICT DO NOTHING RETURNING`: a conflict never aborts the batch, the insert
waits for a concurrent transaction holding the same claim, and what comes back says which claims won, in a
constant number of statements per batch. A loser becomes what the rule says (`rejected` with the rule's
reason, or `flagged` as a double claim); the claims of a rejected action are dropped, also on review.
SQLite (`make run`) has no exclusion constraints: its writes are serialised by the database lock, taken by
the first insert, so overlaps are found by reading after inserting."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db import connection

from backend.actions.models import Action, HistoryClaim, PeriodClaim
from backend.actions.pipeline import rules
from backend.actions.pipeline.caps import cap_release
from backend.actions.pipeline.common import LIVE_STATUSES, ZERO, Outcome
from backend.core.bulk import BoundCursor

REJECTED, FLAGGED = Action.Status.REJECTED, Action.Status.FLAGGED


@dataclass
class _Claim:
    outcome: Outcome
    loser_status: str
    loser_reason: str
    key: str = ""
    kind: str = ""
    scope: str = ""
    origin: str = ""
    starts_at: datetime | None = None
    ends_at: datetime | None = None


def _candidates(outcomes: list[Outcome]) -> tuple[list[_Claim], list[_Claim]]:
    keys, periods = [], []
    for o in outcomes:
        if o.version is None:
            continue
        live = o.status in LIVE_STATUSES
        if live and o.rules.get("serial_unique_forever"):
            keys.append(_Claim(o, REJECTED, "serial_already_credited", key=rules.serial_key(o)))
        if live and o.rules.get("one_per_biller_account_per_month"):
            keys.append(_Claim(o, REJECTED, "already_credited_this_month", key=rules.month_key(o)))
        if live and o.rules.get("duplicate_window_s"):
            half = rules.weighing_window(o) / 2
            at = o.action.occurred_at
            scope = f"{o.action.methodology}:{rules.weighing_material(o)}"
            periods.append(
                _Claim(
                    o,
                    REJECTED,
                    "duplicate_weighing",
                    kind="window",
                    scope=scope,
                    starts_at=at - half,
                    ends_at=at + half,
                )
            )
        if o.trip is not None and o.status in (*LIVE_STATUSES, Action.Status.CAPPED) and o.status != FLAGGED:
            periods.append(
                _Claim(
                    o,
                    FLAGGED,
                    "double_claim",
                    kind="trip",
                    scope="trip",
                    origin=rules.trip_origin(o),
                    starts_at=o.trip[0],
                    ends_at=o.trip[1],
                )
            )
    return keys, periods


def claims_write(outcomes: list[Outcome]) -> None:
    """Write the history claims of the batch's outcomes in the crediting transaction; losers change status."""
    keys, periods = _candidates(outcomes)
    if not keys and not periods:
        return
    if connection.vendor == "postgresql":
        lost = _insert_keys_pg(keys) + _insert_periods_pg(periods)
    else:
        lost = _insert_keys_sqlite(keys) + _insert_periods_sqlite(periods)
    lost = _not_already_mine(lost)
    rejected = []
    for claim in lost:
        o = claim.outcome
        if o.status == REJECTED:
            continue
        if claim.loser_status == FLAGGED:
            if o.status in (Action.Status.CREDITED, Action.Status.PENDING_REVIEW):
                o.status, o.reason = FLAGGED, claim.loser_reason
            continue
        o.reject(claim.loser_reason)
        rejected.append(o)
        cap_release(o)
        o.grams = o.points = 0
        o.quantity = o.credited_quantity = ZERO
        o.breakdown = {}
    if rejected:
        claims_release(action_ids=[o.action.id for o in rejected])


def _not_already_mine(lost: list[_Claim]) -> list[_Claim]:
    """An action processed again (a redelivered task after a crash past the commit of its claims, an action
    put back to `received` by hand) finds its own claims: those are won, not lost. Only read when something
    was lost, which is rare."""
    if not lost:
        return lost
    ids = {c.outcome.action.id for c in lost}
    held_keys = set(HistoryClaim.objects.filter(action_id__in=ids).values_list("action_id", "key"))
    held_periods = set(PeriodClaim.objects.filter(action_id__in=ids).values_list("action_id", "kind"))
    return [
        c
        for c in lost
        if (c.outcome.action.id, c.key) not in held_keys and (c.outcome.action.id, c.kind) not in held_periods
    ]


def claims_release(*, action_ids: list[int]) -> None:
    """Drop the claims of actions that no longer count (rejected in the batch or on review)."""
    HistoryClaim.objects.filter(action_id__in=action_ids).delete()
    PeriodClaim.objects.filter(action_id__in=action_ids).delete()


KEYS_INSERT = """
INSERT INTO actions_historyclaim (action_id, key)
SELECT a, k FROM unnest(%b::bigint[], %b::text[]) AS v(a, k) ORDER BY k
ON CONFLICT DO NOTHING
RETURNING action_id, key
"""
# Sorted by resident then start: workers claim in one order. ON CONFLICT DO NOTHING also covers the
# exclusion constraints (no conflict target), and waits for a concurrent transaction holding an overlap.
PERIODS_INSERT = """
INSERT INTO actions_periodclaim (action_id, kind, resident_id, scope, origin, starts_at, ends_at)
SELECT a, k, r, s, o, b, e
FROM unnest(%b::bigint[], %b::text[], %b::bigint[], %b::text[], %b::text[], %b::timestamptz[], %b::timestamptz[])
    AS v(a, k, r, s, o, b, e)
ORDER BY r, b, a
ON CONFLICT DO NOTHING
RETURNING action_id, kind
"""


def _insert_keys_pg(claims: list[_Claim]) -> list[_Claim]:
    if not claims:
        return []
    with BoundCursor() as cursor:
        cursor.execute(KEYS_INSERT, [[c.outcome.action.id for c in claims], [c.key for c in claims]])
        won = set(cursor.fetchall())
    return [c for c in claims if (c.outcome.action.id, c.key) not in won]


def _insert_periods_pg(claims: list[_Claim]) -> list[_Claim]:
    if not claims:
        return []
    with BoundCursor() as cursor:
        cursor.execute(
            PERIODS_INSERT,
            [
                [c.outcome.action.id for c in claims],
                [c.kind for c in claims],
                [c.outcome.action.resident_id for c in claims],
                [c.scope for c in claims],
                [c.origin for c in claims],
                [c.starts_at for c in claims],
                [c.ends_at for c in claims],
            ],
        )
        won = set(cursor.fetchall())
    return [c for c in claims if (c.outcome.action.id, c.kind) not in won]


def _insert_keys_sqlite(claims: list[_Claim]) -> list[_Claim]:
    if not claims:
        return []
    HistoryClaim.objects.bulk_create(
        [HistoryClaim(action_id=c.outcome.action.id, key=c.key) for c in claims], ignore_conflicts=True
    )
    owners = dict(HistoryClaim.objects.filter(key__in={c.key for c in claims}).values_list("key", "action_id"))
    return [c for c in claims if owners.get(c.key) != c.outcome.action.id]


def _insert_periods_sqlite(claims: list[_Claim]) -> list[_Claim]:
    """Insert all, then a claim loses to an overlapping row inserted before it (lower id) that won."""
    held = set(
        PeriodClaim.objects.filter(action_id__in={c.outcome.action.id for c in claims}).values_list("action_id", "kind")
    )
    claims = [c for c in claims if (c.outcome.action.id, c.kind) not in held]  # its own, from a previous run
    if not claims:
        return []
    rows = PeriodClaim.objects.bulk_create(
        [
            PeriodClaim(
                action_id=c.outcome.action.id,
                kind=c.kind,
                resident_id=c.outcome.action.resident_id,
                scope=c.scope,
                origin=c.origin,
                starts_at=c.starts_at,
                ends_at=c.ends_at,
            )
            for c in claims
        ]
    )
    ids = {(r.action_id, r.kind): r.id for r in rows}
    existing = list(
        PeriodClaim.objects.filter(
            resident_id__in={c.outcome.action.resident_id for c in claims},
            starts_at__lt=max(c.ends_at for c in claims),
            ends_at__gt=min(c.starts_at for c in claims),
        ).order_by("id")
    )
    lost, dropped = [], set()
    for c in sorted(claims, key=lambda c: ids.get((c.outcome.action.id, c.kind), 0)):
        mine = ids.get((c.outcome.action.id, c.kind))
        for other in existing:
            if other.id >= (mine or 0) or other.id in dropped or other.kind != c.kind:
                continue
            if other.resident_id != c.outcome.action.resident_id:
                continue
            clash = other.starts_at < c.ends_at and c.starts_at < other.ends_at
            clash &= other.scope == c.scope if c.kind == "window" else other.origin != c.origin
            if clash:
                lost.append(c)
                dropped.add(mine)
                break
    if dropped:
        PeriodClaim.objects.filter(id__in=dropped).delete()
    return lost
