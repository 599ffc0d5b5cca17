"""Posting: the one write path of every ledger transaction (`_post_one`: idempotency by key and content hash,
zero sum per unit, floored accounts locked in id order, lots kept in step), generic posting (`ledger_post`,
`ledger_post_bulk`) and the constant-query bulk path of action credits (`action_credits_post_bulk`)."""

import hashlib
import json
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from backend.core.bulk import BoundCursor
from backend.core.days import local_day, local_today
from backend.core.errors import ApplicationError, ConflictError
from backend.ledger.expiry import lot_expires_at
from backend.ledger.models import (
    LedgerTransaction,
    MerkleRoot,
    Unit,
)
from backend.ledger.services.accounts import AccountRow, accounts_ensure, resident_account_key
from backend.ledger.services.lots import _default_lots
from backend.ledger.services.single import (
    BOOKING_DAY_CONSTRAINT,
    PostingRow,
    balance_apply,
    transaction_insert,
    violated_constraint,
)

Kind = LedgerTransaction.Kind


@dataclass(frozen=True)
class Leg:
    """One posting of a generic transaction: `amount` (positive = credit to the account) in the account's unit."""

    account: str
    amount: int


@dataclass(frozen=True)
class LedgerEntry:
    kind: str
    reason: str
    source_type: str
    source_id: int | None
    idempotency_key: str
    postings: Sequence[Leg]
    effective_at: datetime | None = None
    points_expiry_months: int = 12


def _content_hash(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


def _existing(idempotency_key: str, content_hash: str) -> int | None:
    row = LedgerTransaction.objects.filter(idempotency_key=idempotency_key).values_list("id", "content_hash").first()
    if row is None:
        return None
    if row[1] != content_hash:
        raise ConflictError(
            _("This idempotency key was already used for a different transaction."), code="idempotency_conflict"
        )
    return row[0]


LotHandler = Callable[[LedgerTransaction, AccountRow, int, datetime, int], None]


_backfilling: ContextVar[bool] = ContextVar("ledger_backfilling", default=False)


@contextmanager
def ledger_backfill() -> Iterator[None]:
    """Import history: every transaction posted inside is booked on the Asia/Shanghai day of its `effective_at`
    while that day is still open (over, but without a published Merkle root), so its root can be computed at
    once (`merkle_root_compute`); on today, or on a sealed day, it is booked today like any other. Used by the
    quick-start demo for its week of rides. Postings stay append-only and each transaction is in exactly one
    day's tree: PostgreSQL refuses a booking on a sealed day even when a root is computed concurrently."""
    token = _backfilling.set(True)
    try:
        yield
    finally:
        _backfilling.reset(token)


def ledger_backfilling() -> bool:
    """True inside `ledger_backfill()`: write paths that bypass `_post_one` must use it then."""
    return _backfilling.get()


def _booking_day(effective_at: datetime) -> date | None:
    """The past day a backfilled transaction is booked on, or None for today (the column's default)."""
    if not _backfilling.get():
        return None
    day = local_day(effective_at)
    if day >= local_today() or MerkleRoot.objects.filter(day=day).exists():
        return None
    return day


def _post_one(
    *,
    kind: str,
    reason: str,
    source_type: str,
    source_id: int | None,
    idempotency_key: str,
    legs: Sequence[Leg],
    effective_at: datetime | None = None,
    content: dict | None = None,
    reverses_id: int | None = None,
    releases_id: int | None = None,
    lot_expiry_months: int | None = None,
    points_expiry_months: int = 12,
    lot_handler: LotHandler | None = None,
    savepoint: bool = True,
) -> int:
    """The one write path of a single transaction, in four round trips on PostgreSQL: accounts, the transaction
    with its postings (its idempotency key's unique index is the check), one guarded UPDATE per floored account
    (in id order: the lock order of every poster) and, for a resident's points, the lots. `savepoint=False`
    when the caller's own transaction rolls back as a whole on any error (saves two round trips)."""
    if len(legs) < 2:
        raise ApplicationError(_("A transaction needs at least two postings."), code="ledger_unbalanced")
    content_hash = _content_hash(
        content
        or {
            "kind": kind,
            "reason": reason,
            "source": [source_type, source_id],
            "postings": sorted([leg.account, int(leg.amount)] for leg in legs),
            "effective_at": effective_at.isoformat() if effective_at else None,
            "reverses": reverses_id,
            "releases": releases_id,
        }
    )
    now = timezone.now()
    booked_on = _booking_day(effective_at or now)
    with transaction.atomic(savepoint=savepoint):
        accounts = accounts_ensure(keys=[leg.account for leg in legs])
        sums: dict[tuple[str, str], int] = defaultdict(int)
        delta: dict[int, int] = defaultdict(int)
        for leg in legs:
            if not isinstance(leg.amount, int) or leg.amount == 0:
                raise ApplicationError(_("Posting amounts are non-zero integers."), code="ledger_invalid_amount")
            acct = accounts[leg.account]
            sums[(acct.unit, acct.currency)] += leg.amount
            delta[acct.id] += leg.amount
        if any(sums.values()):
            raise ApplicationError(_("Postings must sum to zero per unit."), code="ledger_unbalanced")
        txn = LedgerTransaction(
            kind=kind,
            reason=reason[:255],
            source_type=source_type,
            source_id=source_id,
            idempotency_key=idempotency_key,
            content_hash=content_hash,
            effective_at=effective_at or now,
            reverses_id=reverses_id,
            releases_id=releases_id,
            # Also stored when a credit's lot lives other than 12 months: its reversal finds the lot by expiry date.
            lot_expiry_months=_months_stored(points_expiry_months) if lot_expiry_months is None else lot_expiry_months,
        )
        postings = [
            PostingRow(accounts[leg.account].id, accounts[leg.account].unit, accounts[leg.account].currency, leg.amount)
            for leg in legs
        ]
        # A concurrent poster of the same key makes this wait for its commit, then find its transaction here.
        try:
            inserted = transaction_insert(txn=txn, postings=postings, booked_on=booked_on)
        except IntegrityError as exc:
            if violated_constraint(exc) == BOOKING_DAY_CONSTRAINT:
                # The day's root was published between `_booking_day` and this insert (PostgreSQL's trigger);
                # a retry books the transaction today.
                sealed = _("That day's Merkle root was just published; try again.")
                raise ConflictError(sealed, code="ledger_day_sealed")
            raise
        if inserted is None:
            existing = _existing(idempotency_key, content_hash)
            if existing is not None:
                return existing
            raise ConflictError(_("The transaction was already reversed or released."), code="already_reversed")
        by_id = {a.id: a for a in accounts.values()}
        floored = sorted(i for i in delta if by_id[i].floored and delta[i])
        # Floored balances in id order (the order every poster uses: no deadlocks), each one guarded UPDATE.
        for account_id in floored:
            if not balance_apply(account_id=account_id, delta=delta[account_id]):
                code = "insufficient_points" if by_id[account_id].unit == Unit.POINTS else "insufficient_funds"
                raise ApplicationError(_("Not enough balance."), code=code)
        for account_id in floored:  # then lots: the lock order is accounts by id, then lots
            if by_id[account_id].holds_lots:
                (lot_handler or _default_lots)(txn, by_id[account_id], delta[account_id], now, points_expiry_months)
    return txn.id


def _months_stored(months: int) -> int | None:
    """The lot months a transaction records: NULL for the default 12 (what a reader assumes when NULL)."""
    return None if months == 12 else months


def ledger_post(
    *,
    kind: str,
    reason: str,
    source_type: str,
    source_id: int | None,
    idempotency_key: str,
    postings: Sequence[Leg],
    effective_at: datetime | None = None,
    points_expiry_months: int = 12,
    savepoint: bool = True,
) -> int:
    """Post one balanced transaction (any units, money with ISO currency) and return its id. Idempotent per
    key; raises `ledger_unbalanced`, `insufficient_points` / `insufficient_funds`, `idempotency_conflict`.
    `savepoint=False` inside a transaction that is rolled back as a whole on any error: no partial rollback."""
    return _post_one(
        kind=kind,
        reason=reason,
        source_type=source_type,
        source_id=source_id,
        idempotency_key=idempotency_key,
        legs=postings,
        effective_at=effective_at,
        points_expiry_months=points_expiry_months,
        savepoint=savepoint,
    )


@transaction.atomic
def ledger_post_bulk(*, entries: Sequence[LedgerEntry]) -> dict[str, int]:
    """Post many generic transactions in one database transaction (all or nothing). For high-volume credits use
    `action_credits_post_bulk`, which is constant-query; this one costs a few queries per entry."""
    return {
        e.idempotency_key: _post_one(
            kind=e.kind,
            reason=e.reason,
            source_type=e.source_type,
            source_id=e.source_id,
            idempotency_key=e.idempotency_key,
            legs=e.postings,
            effective_at=e.effective_at,
            points_expiry_months=e.points_expiry_months,
        )
        for e in entries
    }


# ----------------------------------------------------------------------------------------- action credits


@dataclass(frozen=True)
class ActionCredit:
    idempotency_key: str  # e.g. "action:123"
    resident_id: int  # accounts.User id
    methodology: str  # carbon is issued from system:carbon_issuance:<methodology>
    grams: int  # >= 0
    points: int  # >= 0
    reason: str  # resident-readable, e.g. "Metro ride 8.2 km, 2026-11-24"
    source_type: str  # "action"
    source_id: int
    effective_at: datetime  # when the action happened (lot expiry counts from its Asia/Shanghai month)
    pending: bool = False  # True: visible as pending, not spendable until released
    points_expiry_months: int = 12


@dataclass
class _CreditPlan:
    credit: ActionCredit
    content_hash: str
    legs: list[Leg] = field(default_factory=list)


def _credit_plan(c: ActionCredit) -> _CreditPlan:
    if c.grams < 0 or c.points < 0 or c.points_expiry_months < 1:
        raise ApplicationError(_("Credits are non-negative."), code="ledger_invalid_amount")
    if c.effective_at.tzinfo is None:
        raise ValueError("effective_at must be timezone-aware")
    suffix = "_pending" if c.pending else ""
    legs = []
    if c.grams:
        legs += [
            Leg(f"system:carbon_issuance:{c.methodology}", -c.grams),
            Leg(resident_account_key(c.resident_id, "carbon" + suffix), c.grams),
        ]
    if c.points:
        legs += [
            Leg("system:points_issuance", -c.points),
            Leg(resident_account_key(c.resident_id, "points" + suffix), c.points),
        ]
    content = {
        "kind": Kind.ACTION_CREDIT,
        "resident": c.resident_id,
        "methodology": c.methodology,
        "grams": c.grams,
        "points": c.points,
        "reason": c.reason[:255],
        "source": [c.source_type, c.source_id],
        "effective_at": c.effective_at.astimezone(UTC).isoformat(),
        "pending": c.pending,
        "months": c.points_expiry_months,
    }
    return _CreditPlan(c, _content_hash(content), legs)


TXN_INSERT = (
    "INSERT INTO ledger_ledgertransaction (kind, reason, source_type, source_id, idempotency_key, content_hash,"
    " effective_at, lot_expiry_months)"
    " SELECT %b, r, st, sid, k, h, e, m FROM unnest(%b::text[], %b::text[], %b::bigint[], %b::text[], %b::text[],"
    " %b::timestamptz[], %b::smallint[]) AS u(r, st, sid, k, h, e, m) ORDER BY k"
    " ON CONFLICT (idempotency_key) DO NOTHING RETURNING id, idempotency_key, effective_at"
)
POSTING_COPY = "COPY ledger_posting (transaction_id, account_id, unit, currency, amount) FROM STDIN (FORMAT BINARY)"
POSTING_TYPES = ["int8", "int8", "text", "text", "int8"]
# One earned lot per account and expiry date (`ledger_lot_one_per_month`): a credit adds to it. The amount and
# remaining columns are in no index, so adding is a HOT update (no index entry) when the page has room
# (fillfactor, migration 0008). Rows arrive summed per (account, expiry) and sorted: a fixed lock order.
LOT_UPSERT = (
    "INSERT INTO ledger_pointslot AS l (account_id, transaction_id, kind, amount, remaining, expires_at)"
    " SELECT a, t, 'earned', n, n, e FROM unnest(%b::bigint[], %b::bigint[], %b::bigint[], %b::timestamptz[])"
    " AS u(a, t, n, e) ORDER BY a, e"
    " ON CONFLICT (account_id, expires_at) WHERE kind = 'earned' AND expired_at IS NULL"
    " DO UPDATE SET amount = l.amount + EXCLUDED.amount, remaining = l.remaining + EXCLUDED.remaining"
)
BALANCE_UPDATE = (
    "UPDATE ledger_account a SET balance = a.balance + v.d"
    " FROM unnest(%b::bigint[], %b::bigint[]) AS v(id, d) WHERE a.id = v.id"
)


def action_credits_post_bulk(*, credits: list[ActionCredit]) -> dict[str, int]:
    """Credit carbon and points for many actions: one ledger transaction per credit (carbon + points postings,
    and a points lot unless pending), in a constant number of queries whatever len(credits) is. Idempotent per
    key: an existing key returns its transaction id; the same key with different content raises
    `idempotency_conflict`. Credits of zero grams and zero points are skipped (left out of the result). Runs
    inside the caller's transaction; safe from several processes at once (accounts created in key order,
    floored balances updated in account-id order). Returns {idempotency_key: transaction_id}."""
    plans: dict[str, _CreditPlan] = {}
    for c in credits:
        if not (c.grams or c.points):
            continue
        plan = _credit_plan(c)
        seen = plans.get(c.idempotency_key)
        if seen is not None and seen.content_hash != plan.content_hash:
            raise ConflictError(_("One idempotency key twice with different content."), code="idempotency_conflict")
        plans[c.idempotency_key] = plan
    if not plans:
        return {}
    if connection.vendor != "postgresql" or _backfilling.get():  # the SQLite quick start, or history: one by one
        with transaction.atomic():
            return {key: _action_credit_post_one(p) for key, p in plans.items()}
    with transaction.atomic():
        return _action_credits_bulk_pg(list(plans.values()))


def _action_credit_post_one(plan: _CreditPlan) -> int:
    c = plan.credit
    return _post_one(
        kind=Kind.ACTION_CREDIT,
        reason=c.reason,
        source_type=c.source_type,
        source_id=c.source_id,
        idempotency_key=c.idempotency_key,
        legs=plan.legs,
        effective_at=c.effective_at,
        content={"hash": plan.content_hash},
        lot_expiry_months=c.points_expiry_months if c.pending else None,
        points_expiry_months=c.points_expiry_months,
    )


def _action_credits_bulk_pg(plans: list[_CreditPlan]) -> dict[str, int]:
    accounts = accounts_ensure(keys={leg.account for p in plans for leg in p.legs})  # 1-3 queries
    with BoundCursor() as cur:
        cur.execute(
            TXN_INSERT,
            [
                Kind.ACTION_CREDIT.value,
                [p.credit.reason[:255] for p in plans],
                [p.credit.source_type for p in plans],
                [p.credit.source_id for p in plans],
                [p.credit.idempotency_key for p in plans],
                [p.content_hash for p in plans],
                [p.credit.effective_at for p in plans],
                # Pending: the policy applied on release; otherwise where the lot is, for a reversal.
                [
                    p.credit.points_expiry_months if p.credit.pending else _months_stored(p.credit.points_expiry_months)
                    for p in plans
                ],
            ],
        )
        inserted = {key: (txn_id, eff) for txn_id, key, eff in cur.fetchall()}
        result = {key: txn_id for key, (txn_id, _) in inserted.items()}
        others = [p for p in plans if p.credit.idempotency_key not in inserted]
        if others:  # already posted (a retry, or another process won the race): same content or a conflict
            cur.execute(
                "SELECT idempotency_key, id, content_hash FROM ledger_ledgertransaction"
                " WHERE idempotency_key = ANY(%b::text[])",
                [[p.credit.idempotency_key for p in others]],
            )
            found = {key: (txn_id, h) for key, txn_id, h in cur.fetchall()}
            for p in others:
                txn_id, h = found[p.credit.idempotency_key]
                if h != p.content_hash:
                    raise ConflictError(
                        _("Idempotency key %(key)s was used for different content.")
                        % {"key": p.credit.idempotency_key},
                        code="idempotency_conflict",
                    )
                result[p.credit.idempotency_key] = txn_id
        fresh = [p for p in plans if p.credit.idempotency_key in inserted]
        if not fresh:
            return result
        from backend.stats.leaderboards import leaderboards_credits_posted  # after commit; never fails a credit

        transaction.on_commit(lambda credits=[p.credit for p in fresh]: leaderboards_credits_posted(credits))
        delta: dict[int, int] = defaultdict(int)
        lots: dict[tuple[int, datetime], list[int]] = {}  # (account, expiry) -> [opening transaction, points]
        with cur.copy(POSTING_COPY) as copy:
            copy.set_types(POSTING_TYPES)
            for p in fresh:
                txn_id = result[p.credit.idempotency_key]
                for leg in p.legs:
                    acct = accounts[leg.account]
                    copy.write_row((txn_id, acct.id, acct.unit, "", leg.amount))
                    if acct.floored:
                        delta[acct.id] += leg.amount
                    if acct.holds_lots:
                        expiry = lot_expires_at(p.credit.effective_at, p.credit.points_expiry_months)
                        lot = lots.setdefault((acct.id, expiry), [txn_id, 0])
                        lot[1] += leg.amount
        if delta:
            ids = sorted(delta)  # a fixed lock order: concurrent batches never deadlock on balances
            cur.execute(BALANCE_UPDATE, [ids, [delta[i] for i in ids]])
        if lots:  # after the balances: the lock order of every poster is accounts by id, then lots
            keys = sorted(lots)
            cur.execute(
                LOT_UPSERT,
                [[a for a, _ in keys], [lots[k][0] for k in keys], [lots[k][1] for k in keys], [e for _, e in keys]],
            )
    return result
