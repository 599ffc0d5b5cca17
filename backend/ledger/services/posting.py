"""Every write to the ledger. Other apps post through these functions only.

Accounts are addressed by key (created on first use):
    resident:<user id>:carbon | points | carbon_pending | points_pending
    merchant:<merchant id>:points | budget | money:<ISO currency>
    system:carbon_issuance:<methodology> | points_issuance | points_expired | redemption_hold | reward_fund
    system:payment_clearing:<ISO currency> | revenue:<ISO currency>
    system:reward_fund:<ISO currency>   (money paid by offset buyers that funds rewards; floored)
Floored accounts (all resident points/pending accounts, all merchant accounts, the money reward fund) keep a
cached balance with CHECK (balance >= 0); other system accounts never do (they are touched by every credit).

Generic posting, for rewards and payments:
    ledger_post(kind=..., reason=..., source_type=..., source_id=..., idempotency_key=...,
                postings=[Leg("merchant:7:money:CNY", -1200), Leg("system:payment_clearing:CNY", 1200)],
                effective_at=None) -> transaction id
    ledger_post_bulk(entries=[LedgerEntry(...), ...]) -> {idempotency_key: transaction id}
Postings of one transaction must sum to zero per unit (and currency); the database checks it again at commit.
A posting to a resident's `points` account creates a points lot (credit) or consumes lots soonest-expiry
first (debit), so lots always explain the balance. The same idempotency key returns the existing transaction;
with different content it raises ApplicationError(code="idempotency_conflict").

Action credits (ingestion): `action_credits_post_bulk` writes 1,000 credits with a constant number of queries
(ids from the table's sequence, binary COPY for postings, INSERT ... SELECT FROM unnest for transactions and
lots, one sorted UPDATE of floored balances). Lock order everywhere: new accounts by key, then floored
accounts by id, then lots by (expires_at, id).
"""

import calendar
import hashlib
import json
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext as _

from backend.core.bulk import BoundCursor
from backend.core.errors import ApplicationError, ConflictError
from backend.ledger.models import (
    Account,
    LedgerTransaction,
    LotConsumption,
    MerkleNode,
    MerkleRoot,
    PointsLot,
    Posting,
    ReconciliationRun,
    Unit,
)

logger = logging.getLogger(__name__)
SHANGHAI = ZoneInfo("Asia/Shanghai")
Kind = LedgerTransaction.Kind

RESIDENT_ACCOUNTS = {  # name -> (unit, floored)
    "carbon": (Unit.CARBON, False),
    "points": (Unit.POINTS, True),
    "carbon_pending": (Unit.CARBON, True),
    "points_pending": (Unit.POINTS, True),
}
MERCHANT_ACCOUNTS = {"points": Unit.POINTS, "budget": Unit.POINTS, "money": Unit.MONEY}
SYSTEM_ACCOUNTS = {
    "carbon_issuance": Unit.CARBON,
    "points_issuance": Unit.POINTS,
    "points_expired": Unit.POINTS,
    "redemption_hold": Unit.POINTS,
    "reward_fund": Unit.POINTS,
    "payment_clearing": Unit.MONEY,
    "revenue": Unit.MONEY,
}
# System money accounts that must never go below zero: a cached balance with CHECK (balance >= 0). The money
# reward fund (`system:reward_fund:CNY`) is paid into by offset sales and pays merchants' settlements; it is
# touched once per payment, refund or payable, so the row lock is not a hot spot. (`system:reward_fund` without
# a currency stays the points account of the same name.)
FLOORED_SYSTEM_MONEY = {"reward_fund"}


# --------------------------------------------------------------------------------------------- accounts


@dataclass(frozen=True)
class AccountSpec:
    key: str
    kind: str
    owner_id: int | None
    name: str
    unit: str
    currency: str
    floored: bool


def account_spec(key: str) -> AccountSpec:
    """Parse an account key into what the account row holds. Unknown keys are a programming error."""
    parts = key.split(":")
    kind = parts[0]
    if kind == "resident" and len(parts) == 3 and parts[2] in RESIDENT_ACCOUNTS:
        unit, floored = RESIDENT_ACCOUNTS[parts[2]]
        return AccountSpec(key, kind, int(parts[1]), parts[2], unit, "", floored)
    if kind == "merchant" and len(parts) in (3, 4) and parts[2] in MERCHANT_ACCOUNTS:
        unit = MERCHANT_ACCOUNTS[parts[2]]
        currency = parts[3] if len(parts) == 4 else ""
        if (unit == Unit.MONEY) != bool(currency) or (currency and not _is_currency(currency)):
            raise ValueError(f"bad merchant account key {key!r}")
        return AccountSpec(key, kind, int(parts[1]), ":".join(parts[2:]), unit, currency, True)
    if kind == "system" and len(parts) == 3 and parts[1] in FLOORED_SYSTEM_MONEY and _is_currency(parts[2]):
        return AccountSpec(key, kind, None, ":".join(parts[1:]), Unit.MONEY, parts[2], True)
    if kind == "system" and len(parts) in (2, 3) and parts[1] in SYSTEM_ACCOUNTS:
        unit = SYSTEM_ACCOUNTS[parts[1]]
        arg = parts[2] if len(parts) == 3 else ""
        if unit == Unit.MONEY:
            if not _is_currency(arg):
                raise ValueError(f"money account {key!r} needs an ISO currency")
            return AccountSpec(key, kind, None, ":".join(parts[1:]), unit, arg, False)
        if (parts[1] == "carbon_issuance") != bool(arg):
            raise ValueError(f"bad system account key {key!r}")
        return AccountSpec(key, kind, None, ":".join(parts[1:]), unit, "", False)
    raise ValueError(f"unknown account key {key!r}")


def _is_currency(code: str) -> bool:
    return len(code) == 3 and code.isascii() and code.isalpha() and code.isupper()


def resident_account_key(resident_id: int, name: str) -> str:
    return f"resident:{int(resident_id)}:{name}"


@dataclass(frozen=True)
class AccountRow:
    id: int
    key: str
    kind: str
    owner_id: int | None
    name: str
    unit: str
    currency: str
    floored: bool

    @property
    def holds_lots(self) -> bool:
        return self.kind == Account.Kind.RESIDENT and self.name == "points"


def accounts_ensure(*, keys: Iterable[str]) -> dict[str, AccountRow]:
    """Return the accounts for `keys`, creating missing ones. At most three queries whatever the count:
    select, insert the missing ones sorted by key (ON CONFLICT DO NOTHING: two processes creating the same
    accounts wait on each other in the same order, never in a cycle), select what was inserted."""
    keys = sorted(set(keys))
    if connection.vendor == "postgresql":
        return _accounts_ensure_pg(keys)
    specs = {k: account_spec(k) for k in keys}
    found = _accounts_select(keys)
    missing = [k for k in keys if k not in found]
    if missing:
        Account.objects.bulk_create(
            [
                Account(
                    key=s.key,
                    kind=s.kind,
                    owner_id=s.owner_id,
                    name=s.name,
                    unit=s.unit,
                    currency=s.currency,
                    floored=s.floored,
                )
                for s in (specs[k] for k in missing)
            ],
            ignore_conflicts=True,
        )
        found.update(_accounts_select(missing))
    return found


ACCOUNT_SELECT = (
    "SELECT id, key, kind, owner_id, name, unit, currency, floored FROM ledger_account WHERE key = ANY(%b::text[])"
)
ACCOUNT_INSERT = (
    "INSERT INTO ledger_account (key, kind, owner_id, name, unit, currency, floored, balance)"
    " SELECT k, kd, o, n, u, c, f, 0 FROM unnest(%b::text[], %b::text[], %b::bigint[], %b::text[], %b::text[],"
    " %b::text[], %b::bool[]) AS v(k, kd, o, n, u, c, f) ORDER BY k ON CONFLICT (key) DO NOTHING"
)


def _accounts_ensure_pg(keys: list[str]) -> dict[str, AccountRow]:
    with BoundCursor() as cur:
        cur.execute(ACCOUNT_SELECT, [keys])
        found = {r[1]: AccountRow(*r) for r in cur.fetchall()}
        missing = [account_spec(k) for k in keys if k not in found]
        if missing:
            cur.execute(
                ACCOUNT_INSERT,
                [
                    [s.key for s in missing],
                    [s.kind for s in missing],
                    [s.owner_id for s in missing],
                    [s.name for s in missing],
                    [str(s.unit) for s in missing],
                    [s.currency for s in missing],
                    [s.floored for s in missing],
                ],
            )
            cur.execute(ACCOUNT_SELECT, [[s.key for s in missing]])
            found.update({r[1]: AccountRow(*r) for r in cur.fetchall()})
    return found


def _accounts_select(keys: list[str]) -> dict[str, AccountRow]:
    rows = Account.objects.filter(key__in=keys).values_list(
        "id", "key", "kind", "owner_id", "name", "unit", "currency", "floored"
    )
    return {r[1]: AccountRow(*r) for r in rows}


# ------------------------------------------------------------------------------------------------ lots


def lot_expires_at(effective_at: datetime, months: int = 12) -> datetime:
    """Points earned in a month expire at the end of the `months`-th month after it (Asia/Shanghai): earned
    2026-11-24 with 12 months -> valid through 2027-11-30, i.e. expires at 2027-12-01 00:00 +08:00."""
    local = effective_at.astimezone(SHANGHAI)
    index = local.year * 12 + (local.month - 1) + months + 1
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=SHANGHAI)


def lot_last_valid_day(expires_at: datetime) -> date:
    local = expires_at.astimezone(SHANGHAI)
    year, month = (local.year, local.month - 1) if local.month > 1 else (local.year - 1, 12)
    return date(year, month, calendar.monthrange(year, month)[1])


def _lots_consume(
    *, account_id: int, points: int, txn_id: int, kind: str, now: datetime, first_from_txn: int | None = None
) -> None:
    """Take `points` out of the account's lots: lots of `first_from_txn` first (reversing a credit takes back
    its own lot), then soonest expiry first among lots not yet due. Caller holds the account row lock, which
    serialises every change to its lots (spend, expiry, reversal)."""
    lots = list(
        PointsLot.objects.select_for_update()
        .filter(account_id=account_id, remaining__gt=0, expires_at__gt=now)
        .order_by("expires_at", "id")
    )
    if first_from_txn is not None:
        own = list(
            PointsLot.objects.select_for_update()
            .filter(account_id=account_id, remaining__gt=0, transaction_id=first_from_txn)
            .order_by("expires_at", "id")
        )
        own_ids = {lot.id for lot in own}
        lots = own + [lot for lot in lots if lot.id not in own_ids]
    left = points
    consumptions = []
    for lot in lots:
        if left == 0:
            break
        take = min(lot.remaining, left)
        lot.remaining -= take
        left -= take
        consumptions.append(LotConsumption(lot=lot, transaction_id=txn_id, kind=kind, amount=take))
    if left:
        raise ApplicationError(_("Not enough spendable points."), code="insufficient_points")
    PointsLot.objects.bulk_update([c.lot for c in consumptions], ["remaining"])
    LotConsumption.objects.bulk_create(consumptions)


# ----------------------------------------------------------------------------------------- posting core


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
) -> int:
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
    existing = _existing(idempotency_key, content_hash)
    if existing is not None:
        return existing
    now = timezone.now()
    with transaction.atomic():
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
        try:
            # A savepoint: a concurrent poster of the same key makes this wait for its commit, then fail here.
            with transaction.atomic():
                txn = LedgerTransaction.objects.create(
                    kind=kind,
                    reason=reason[:255],
                    source_type=source_type,
                    source_id=source_id,
                    idempotency_key=idempotency_key,
                    content_hash=content_hash,
                    effective_at=effective_at or now,
                    reverses_id=reverses_id,
                    releases_id=releases_id,
                    lot_expiry_months=lot_expiry_months,
                )
        except IntegrityError:
            existing = _existing(idempotency_key, content_hash)
            if existing is not None:
                return existing
            raise ConflictError(_("The transaction was already reversed or released."), code="already_reversed")
        by_id = {a.id: a for a in accounts.values()}
        floored = sorted(i for i in delta if by_id[i].floored)
        # Lock floored accounts in id order (the same order every poster uses: no deadlocks).
        balances = dict(
            Account.objects.select_for_update().filter(id__in=floored).order_by("id").values_list("id", "balance")
        )
        for account_id in floored:
            if balances[account_id] + delta[account_id] < 0:
                code = "insufficient_points" if by_id[account_id].unit == Unit.POINTS else "insufficient_funds"
                raise ApplicationError(_("Not enough balance."), code=code)
        Posting.objects.bulk_create(
            [
                Posting(
                    transaction=txn,
                    account_id=accounts[leg.account].id,
                    unit=accounts[leg.account].unit,
                    currency=accounts[leg.account].currency,
                    amount=leg.amount,
                )
                for leg in legs
            ]
        )
        for account_id in floored:
            acct = by_id[account_id]
            if acct.holds_lots and delta[account_id]:
                (lot_handler or _default_lots)(txn, acct, delta[account_id], now, points_expiry_months)
            if delta[account_id]:
                Account.objects.filter(id=account_id).update(balance=F("balance") + delta[account_id])
    return txn.id


def _default_lots(txn: LedgerTransaction, acct: AccountRow, delta: int, now: datetime, months: int) -> None:
    if delta > 0:
        PointsLot.objects.create(
            account_id=acct.id,
            transaction=txn,
            amount=delta,
            remaining=delta,
            expires_at=lot_expires_at(txn.effective_at, months),
        )
    else:
        _lots_consume(account_id=acct.id, points=-delta, txn_id=txn.id, kind=LotConsumption.Kind.SPEND, now=now)


@transaction.atomic
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
) -> int:
    """Post one balanced transaction (any units, money with ISO currency) and return its id. Idempotent per
    key; raises `ledger_unbalanced`, `insufficient_points` / `insufficient_funds`, `idempotency_conflict`."""
    return _post_one(
        kind=kind,
        reason=reason,
        source_type=source_type,
        source_id=source_id,
        idempotency_key=idempotency_key,
        legs=postings,
        effective_at=effective_at,
        points_expiry_months=points_expiry_months,
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
LOT_INSERT = (
    "INSERT INTO ledger_pointslot (account_id, transaction_id, kind, amount, remaining, expires_at)"
    " SELECT a, t, 'earned', n, n, e FROM unnest(%b::bigint[], %b::bigint[], %b::bigint[], %b::timestamptz[])"
    " AS u(a, t, n, e)"
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
    if connection.vendor != "postgresql":  # the embedded SQLite quick start: one by one
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
                [p.credit.points_expiry_months if p.credit.pending else None for p in plans],
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
        lots_a, lots_t, lots_n, lots_e = [], [], [], []
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
                        lots_a.append(acct.id)
                        lots_t.append(txn_id)
                        lots_n.append(leg.amount)
                        lots_e.append(lot_expires_at(p.credit.effective_at, p.credit.points_expiry_months))
        if lots_a:
            cur.execute(LOT_INSERT, [lots_a, lots_t, lots_n, lots_e])
        if delta:
            ids = sorted(delta)  # a fixed lock order: concurrent batches never deadlock on balances
            cur.execute(BALANCE_UPDATE, [ids, [delta[i] for i in ids]])
    return result


# ---------------------------------------------------------------------------- pending, spend, reversal


def _locked_transaction(**lookup) -> LedgerTransaction:
    # Transactions are immutable, but a row lock on the original serialises release vs. reversal.
    txn = LedgerTransaction.objects.select_for_update().filter(**lookup).first()
    if txn is None:
        raise ApplicationError(_("No such ledger transaction."), code="not_found", status_code=404)
    return txn


@transaction.atomic
def pending_credit_release(*, idempotency_key: str) -> int:
    """Make a pending action credit spendable: move its carbon and points from the resident's pending accounts
    to the real ones, creating the points lot (expiry from the action's month). Idempotent; returns the
    releasing transaction id. A reversed (rejected) credit cannot be released: `pending_credit_reversed`."""
    original = _locked_transaction(idempotency_key=idempotency_key)
    release = LedgerTransaction.objects.filter(releases=original).values_list("id", flat=True).first()
    if release:
        return release
    if LedgerTransaction.objects.filter(reverses=original).exists():
        raise ConflictError(_("This pending credit was rejected."), code="pending_credit_reversed")
    legs = []
    for posting in original.postings.select_related("account"):
        acct = posting.account
        if acct.kind == Account.Kind.RESIDENT and acct.name.endswith("_pending"):
            legs += [
                Leg(acct.key, -posting.amount),
                Leg(resident_account_key(acct.owner_id, acct.name.removesuffix("_pending")), posting.amount),
            ]
    if not legs:
        raise ApplicationError(_("This credit is not pending."), code="not_pending")
    return _post_one(
        kind=Kind.PENDING_RELEASE,
        reason=original.reason,
        source_type=original.source_type,
        source_id=original.source_id,
        idempotency_key=f"release:{idempotency_key}",
        legs=legs,
        effective_at=original.effective_at,
        releases_id=original.id,
        points_expiry_months=original.lot_expiry_months or 12,
    )


@transaction.atomic
def pending_credit_reverse(*, idempotency_key: str, reason: str) -> int:
    """Reject a pending credit: a reversing transaction takes the pending carbon and points back to issuance.
    Idempotent; a released credit cannot be rejected this way (`pending_credit_released`)."""
    original = _locked_transaction(idempotency_key=idempotency_key)
    reversal = LedgerTransaction.objects.filter(reverses=original).values_list("id", flat=True).first()
    if reversal:
        return reversal
    if LedgerTransaction.objects.filter(releases=original).exists():
        raise ConflictError(_("This pending credit was already released."), code="pending_credit_released")
    return transaction_reverse(transaction_id=original.id, reason=reason, idempotency_key=f"reverse:{idempotency_key}")


@transaction.atomic
def points_spend(
    *,
    resident_id: int,
    points: int,
    idempotency_key: str,
    reason: str,
    source_type: str,
    source_id: int,
    to_account: str = "redemption_hold",
) -> int:
    """Spend a resident's points, consuming lots soonest expiry first (lots already due are not spendable).
    `to_account` is a system account name or a full account key. Raises `insufficient_points` when short."""
    if points <= 0:
        raise ApplicationError(_("Spend a positive number of points."), code="ledger_invalid_amount")
    target = to_account if ":" in to_account else f"system:{to_account}"
    return _post_one(
        kind=Kind.POINTS_SPEND,
        reason=reason,
        source_type=source_type,
        source_id=source_id,
        idempotency_key=idempotency_key,
        legs=[Leg(resident_account_key(resident_id, "points"), -points), Leg(target, points)],
    )


@transaction.atomic
def transaction_reverse(*, transaction_id: int, reason: str, idempotency_key: str) -> int:
    """Post the exact opposite of a transaction, referencing it. Points taken back from a resident come out of
    the credit's own lot first (then soonest expiry); points given back by reversing a spend or an expiry
    return as lots with their original expiry. Each transaction is reversed at most once (`already_reversed`);
    reversals themselves are not reversible."""
    original = _locked_transaction(id=transaction_id)
    if original.kind == Kind.REVERSAL:
        raise ApplicationError(_("A reversal cannot be reversed."), code="not_reversible")
    if original.kind == Kind.ACTION_CREDIT and LedgerTransaction.objects.filter(releases=original).exists():
        raise ConflictError(
            _("This pending credit was released: reverse the release first."), code="pending_credit_released"
        )
    postings = list(original.postings.select_related("account").order_by("id"))
    legs = [Leg(p.account.key, -p.amount) for p in postings]

    def lots(txn: LedgerTransaction, acct: AccountRow, delta: int, now: datetime, _months: int) -> None:
        if delta < 0:
            _lots_consume(
                account_id=acct.id,
                points=-delta,
                txn_id=txn.id,
                kind=LotConsumption.Kind.REVERSAL,
                now=now,
                first_from_txn=original.id,
            )
            return
        consumed = LotConsumption.objects.filter(transaction=original, lot__account_id=acct.id).select_related("lot")
        restored = [
            PointsLot(
                account_id=acct.id,
                transaction=txn,
                kind=PointsLot.Kind.RESTORED,
                amount=c.amount,
                remaining=c.amount,
                expires_at=c.lot.expires_at,
            )
            for c in consumed
        ]
        if sum(lot.amount for lot in restored) != delta:
            raise ApplicationError(_("Lots do not explain this transaction."), code="ledger_inconsistent")
        PointsLot.objects.bulk_create(restored)

    return _post_one(
        kind=Kind.REVERSAL,
        reason=reason,
        source_type=original.source_type,
        source_id=original.source_id,
        idempotency_key=idempotency_key,
        legs=legs,
        effective_at=timezone.now(),
        content={"reverses": original.id, "reason": reason},
        reverses_id=original.id,
        lot_handler=lots,
    )


# ------------------------------------------------------------------------------------------------ expiry


def points_lots_expire(*, now: datetime | None = None) -> int:
    """Expire what is left of every due lot: one transaction per lot (key `expiry:lot:<id>`, so once per lot
    however often this runs), moving the points to system:points_expired. Takes the same locks as spending
    (the account row, then its lots). Returns how many lots were expired by this run."""
    now = now or timezone.now()
    account_ids = sorted(
        set(PointsLot.objects.filter(remaining__gt=0, expires_at__lte=now).values_list("account_id", flat=True))
    )
    expired = 0
    for account_id in account_ids:
        with transaction.atomic():
            account = Account.objects.select_for_update().get(id=account_id)
            due = list(
                PointsLot.objects.select_for_update()
                .filter(account_id=account_id, remaining__gt=0, expires_at__lte=now)
                .order_by("expires_at", "id")
            )
            for lot in due:
                _post_one(
                    kind=Kind.POINTS_EXPIRY,
                    reason=f"Points expired (valid through {lot_last_valid_day(lot.expires_at).isoformat()})",
                    source_type="points_lot",
                    source_id=lot.id,
                    idempotency_key=f"expiry:lot:{lot.id}",
                    legs=[Leg(account.key, -lot.remaining), Leg("system:points_expired", lot.remaining)],
                    effective_at=lot.expires_at,
                    lot_handler=_expire_lot(lot, now),
                )
                expired += 1
    return expired


def _expire_lot(lot: PointsLot, now: datetime) -> LotHandler:
    def handler(txn: LedgerTransaction, acct: AccountRow, delta: int, _now: datetime, _months: int) -> None:
        LotConsumption.objects.create(lot=lot, transaction=txn, kind=LotConsumption.Kind.EXPIRY, amount=-delta)
        PointsLot.objects.filter(id=lot.id).update(remaining=F("remaining") + delta, expired_at=now)

    return handler


# ----------------------------------------------------------------------------------- reconciliation, Merkle


def balances_reconcile() -> ReconciliationRun:
    """Recompute every floored account's balance from its postings and record any drift (log, metric, admin
    view). Never corrects silently: drift is a bug to investigate."""
    from backend.ledger.selectors import balance_drift

    run = ReconciliationRun.objects.create()
    checked, drift = balance_drift()
    run.accounts_checked = checked
    run.drift = drift
    run.drift_count = len(drift)
    run.finished_at = timezone.now()
    run.save(update_fields=["accounts_checked", "drift", "drift_count", "finished_at"])
    if drift:
        logger.error("ledger drift on %d account(s): %s", len(drift), drift[:20])
    return run


def merkle_root_compute(*, day: date) -> MerkleRoot:
    """Compute and store the Merkle root of one Asia/Shanghai day's transactions, with every level of its tree
    (so a proof reads one hash per level). Safe to run twice: an existing root is recomputed and compared; a
    mismatch is logged as tampering and the stored root kept."""
    from backend.ledger.merkle import merkle_levels
    from backend.ledger.selectors import day_leaves

    if day >= timezone.now().astimezone(SHANGHAI).date():
        raise ApplicationError(_("Only finished days get a root."), code="day_not_finished")
    ids, leaves = day_leaves(day=day)
    levels = merkle_levels(leaves)
    root = (levels[-1][0] if leaves else hashlib.sha256(b"").digest()).hex()
    with transaction.atomic():
        stored, created = MerkleRoot.objects.get_or_create(
            day=day, defaults={"root": root, "leaf_count": len(leaves)}
        )
        if not created and stored.root != root:
            logger.error("Merkle root of %s no longer reproducible: stored %s, now %s", day, stored.root, root)
            return stored
        if created or not MerkleNode.objects.filter(root=stored).exists():  # roots stored before levels were
            _merkle_nodes_store(stored, ids, levels if leaves else [])
    return stored


def _merkle_nodes_store(root: MerkleRoot, transaction_ids: list[int], levels: list[list[bytes]]) -> None:
    nodes = [
        MerkleNode(
            root=root,
            level=level,
            position=position,
            hash=node,
            transaction_id=transaction_ids[position] if level == 0 else None,
        )
        for level, hashes in enumerate(levels)
        for position, node in enumerate(hashes)
    ]
    MerkleNode.objects.bulk_create(nodes, batch_size=5000)
