"""Locks and guarded claims of the rewards app. THE lock order, used by every write path (redeem, capture,
cancel, expire, stock adjustment), so two of them never wait on each other in a cycle:

    1. the voucher row        (the idempotency-claim INSERT of a new voucher, or SELECT ... FOR UPDATE)
    2. the limit-usage row    (`limit_claim` / `limit_release`: one guarded upsert / update)
    3. ledger rows            (inside backend.ledger: new accounts by key, floored accounts by id, lots)
    4. the reward row         (`stock_take_and_commit` / `stock_return`: one guarded UPDATE; on the redemption
                                 path sent together with the COMMIT)

The reward row comes last on purpose: it is the hot row of a popular reward, so it is locked for the shortest
possible time (only until the commit that follows it). On PostgreSQL a redemption takes 1-4 in this order inside
one statement, `redeem_in_one_statement` (the function `rewards_redeem`, rewards/migrations/0004), which is its
own transaction: its COMMIT follows the hot row's UPDATE inside PostgreSQL, with no round trip in between.
No read-then-act: each claim is one statement whose WHERE clause is the check, and CHECK constraints
(stock >= 0, count >= 0, balance >= 0) are the backstop.
"""

from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime
from functools import cache

from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction
from django.db.models import F

from backend.core.bulk import BoundCursor
from backend.core.days import SHANGHAI
from rewards.models import Reward, RewardLimitUsage, Voucher


def limit_period_key(period: str, at: datetime) -> str:
    """The Asia/Shanghai calendar period a redemption at `at` counts against: day `2026-11-27`, ISO week
    `2026-W48`, month `2026-11`, or `ever`."""
    local = at.astimezone(SHANGHAI)
    if period == Reward.Period.DAY:
        return local.date().isoformat()
    if period == Reward.Period.WEEK:
        year, week, _ = local.isocalendar()
        return f"{year}-W{week:02d}"
    if period == Reward.Period.MONTH:
        return f"{local.year}-{local.month:02d}"
    return "ever"


LIMIT_CLAIM_SQL = (
    "INSERT INTO rewards_rewardlimitusage (reward_id, resident_id, period_key, count) VALUES (%s, %s, %s, 1)"
    " ON CONFLICT (reward_id, resident_id, period_key) DO UPDATE SET count = rewards_rewardlimitusage.count + 1"
    " WHERE rewards_rewardlimitusage.count < %s RETURNING count"
)


def limit_claim(*, reward_id: int, resident_id: int, period_key: str, limit: int) -> bool:
    """(2) Claim one of the resident's `limit` redemptions of the period. One statement: concurrent claims
    of one resident queue on the row (or on its unique index when it is new) and each sees the committed
    count, so twenty parallel requests can never take more than `limit`."""
    with connection.cursor() as cur:
        cur.execute(LIMIT_CLAIM_SQL, [reward_id, resident_id, period_key, limit])
        return cur.fetchone() is not None


def limit_rows_lock(*, resident_id: int, keys: list[tuple[int, str]]) -> None:
    """(2) Lock a resident's limit-usage rows of these (reward, period) keys, in (reward, period) order, ahead of
    releasing them later in the same transaction (erasure: before anything takes a ledger account). The
    filter is the product of the rewards and the periods: a few more rows of this resident may be locked too."""
    if not keys:
        return
    rewards, periods = zip(*sorted(set(keys)), strict=True)
    list(
        RewardLimitUsage.objects.select_for_update()
        .filter(resident_id=resident_id, reward_id__in=rewards, period_key__in=periods)
        .order_by("reward_id", "period_key")
        .values_list("id", flat=True)
    )


def limit_release(*, reward_id: int, resident_id: int, period_key: str) -> None:
    """(2) Give a claim back (the voucher was cancelled or expired)."""
    RewardLimitUsage.objects.filter(
        reward_id=reward_id, resident_id=resident_id, period_key=period_key, count__gt=0
    ).update(count=F("count") - 1)


@cache
def _voucher_insert_sql() -> tuple[str, tuple[str, ...]]:
    fields = tuple(f for f in Voucher._meta.concrete_fields if not f.primary_key)
    columns = ", ".join(f'"{f.column}"' for f in fields)  # identifiers from model metadata, never from input
    placeholders = ", ".join(["%s"] * len(fields))
    sql = f"INSERT INTO rewards_voucher ({columns}) VALUES ({placeholders}) RETURNING id"  # noqa: S608
    return sql, tuple(f.attname for f in fields)


def voucher_claim(voucher: Voucher) -> None:
    """(1) Insert a new (unsaved) voucher: the idempotency claim. A second request with the same (resident,
    Idempotency-Key) fails here with IntegrityError `voucher_resident_idem_key`, after waiting for the first to
    commit or roll back. One prepared statement on PostgreSQL (this is the hot path of a popular reward)."""
    db = connections[DEFAULT_DB_ALIAS]
    if db.vendor != "postgresql":
        voucher.save(force_insert=True)
        return
    sql, attnames = _voucher_insert_sql()
    # The values as the service built them (ints, str, bool, aware datetimes: what psycopg binds as they are),
    # without the ORM's per-field conversion (a sixth of the claim's Python time).
    params = [getattr(voucher, name) for name in attnames]
    with db.wrap_database_errors, BoundCursor() as cur:  # IntegrityError as Django raises it
        cur.execute(sql, params, prepare=True)
        voucher.pk = cur.cursor.fetchone()[0]
    voucher._state.adding, voucher._state.db = False, db.alias


# A whole redemption, (1) to (4) above in this order after reading the reward and checking it is available, as
# one statement: the PostgreSQL function of rewards/migrations/0004 (which calls ledger_points_spend, ledger
# migration 0009). Its refusals are P0001 errors whose message is the error code; the statement rolls back whole.
REDEEM_SQL = (
    "SELECT * FROM rewards_redeem(%s::bigint, %s::bigint, %s::text, %s::text, %s::text, %s::text,"
    " %s::timestamptz, %s::text[])"
)
REDEEM_REFUSALS = frozenset(
    {
        "not_found",
        "reward_not_available:status",
        "reward_not_available:time",
        "reward_not_available:district",
        "reward_out_of_stock",
        "reward_limit_reached",
        "insufficient_points",
    }
)


class RedeemRefused(Exception):
    """`redeem_in_one_statement` refused: `code` is one of REDEEM_REFUSALS; nothing was written."""

    def __init__(self, code: str):
        super().__init__(code)
        self.code = code


@dataclass(frozen=True)
class Redeemed:
    """The row of `rewards_redeem`: outcome `created` (everything below is set) or `conflict` (the voucher INSERT
    met the key's or the code's unique index, or a refusal found a voucher of the key: nothing was written)."""

    outcome: str
    voucher_id: int | None
    merchant_id: int | None
    points_cost: int | None
    face_value_minor: int | None
    currency: str | None
    limit_period_key: str | None
    stock_taken: bool | None
    expires_at: datetime | None
    title_zh: str | None
    title_en: str | None
    name_zh: str | None
    name_en: str | None
    address: str | None


def redeem_in_one_statement(
    *, reward_id: int, resident, idempotency_key: str, request_hash: str, code: str, now: datetime
) -> Redeemed:
    """PostgreSQL: the reward read, its availability and (1)-(4) in one round trip. Outside a transaction (the
    API's case) the statement is its own transaction; inside an atomic block (tests, the admin) it runs in a
    savepoint, so a refusal leaves the caller's transaction usable. Raises RedeemRefused."""
    import psycopg

    db = connections[DEFAULT_DB_ALIAS]
    # The calendar periods a limit may count against, computed here once (Asia/Shanghai, as everywhere).
    periods = [limit_period_key(p, now) for p in (Reward.Period.DAY, Reward.Period.WEEK, Reward.Period.MONTH)]
    district = resident.district_id
    params = [reward_id, resident.pk, district, idempotency_key, request_hash, code, now, periods]
    # A savepoint only when nested: outside, the statement alone is the transaction (autocommit).
    with transaction.atomic() if db.in_atomic_block else nullcontext(), db.wrap_database_errors, BoundCursor() as cur:
        try:
            cur.execute(REDEEM_SQL, params, prepare=True)
        except psycopg.errors.RaiseException as exc:
            if exc.diag.message_primary in REDEEM_REFUSALS:
                raise RedeemRefused(exc.diag.message_primary) from None
            raise
        return Redeemed(*cur.cursor.fetchone())


STOCK_TAKE = "UPDATE rewards_reward SET stock = stock - 1 WHERE id = %s AND stock > 0 AND status = %s RETURNING stock"


def stock_take(*, reward_id: int) -> bool:
    """(4) Take one item from a limited stock: `UPDATE ... SET stock = stock - 1 WHERE stock > 0 AND active`.
    False when none is left (or the reward stopped being active meanwhile)."""
    if connection.vendor != "postgresql":
        return bool(
            Reward.objects.filter(id=reward_id, stock__gt=0, status=Reward.Status.ACTIVE).update(stock=F("stock") - 1)
        )
    with connection.wrap_database_errors, BoundCursor() as cur:
        cur.execute(STOCK_TAKE, [reward_id, str(Reward.Status.ACTIVE)])
        return cur.cursor.fetchone() is not None


# The hot row's statement when it is sent together with the COMMIT (below): it must FAIL when it takes nothing,
# for then the COMMIT queued behind it is skipped. CHECK (stock >= 0) makes it fail when none is left, and a
# reward paused or archived meanwhile fails it the same way (its stock would become -1).
STOCK_TAKE_FAILING = (
    "UPDATE rewards_reward SET stock = CASE WHEN status = %s THEN stock - 1 ELSE -1 END WHERE id = %s RETURNING stock"
)
STOCK_CONSTRAINT = "reward_stock_gte_0"


def stock_take_and_commit(*, reward_id: int) -> bool:
    """(4) Take one item and COMMIT in the same round trip, when the caller's `transaction.atomic()` is the
    outermost block and this is its last write. The hot row of a popular reward is then locked only while
    PostgreSQL runs this UPDATE and the commit (WAL flush included), never across a network round trip and the
    Python work of a busy web worker waiting for its GIL: that wait, inside every holder's lock, was what
    queued 50 concurrent redemptions behind one another (pg_stat_statements: 290 ms per stock UPDATE).

    Pipelined (psycopg pipeline mode): UPDATE, COMMIT and one Sync go out together; when the UPDATE fails
    (none left), PostgreSQL skips the COMMIT and the transaction stays aborted for the caller's atomic block to
    roll back. Returns False then. Elsewhere (nested in another atomic block, as in tests, or on SQLite): the
    guarded UPDATE of `stock_take` and the caller's own COMMIT."""
    db = connections[DEFAULT_DB_ALIAS]
    if db.vendor != "postgresql" or len(db.atomic_blocks) != 1 or db.needs_rollback:
        return stock_take(reward_id=reward_id)
    import psycopg

    pg = db.connection
    with db.wrap_database_errors:
        try:
            with pg.pipeline(), BoundCursor() as cur:
                cur.execute(STOCK_TAKE_FAILING, [str(Reward.Status.ACTIVE), reward_id], prepare=True)
                pg.commit()  # queued behind the UPDATE; sent with it at the pipeline's sync
        except psycopg.errors.CheckViolation as exc:
            if exc.diag.constraint_name != STOCK_CONSTRAINT:
                raise
            return False
    return True


def stock_return(*, reward_id: int, items: int = 1) -> None:
    """(4) Put items back (cancelled or expired vouchers that had taken one each)."""
    Reward.objects.filter(id=reward_id, stock__isnull=False).update(stock=F("stock") + items)


def stock_adjust(*, reward_id: int, delta: int) -> int | None:
    """(4) Add `delta` (may be negative) to a limited stock, never below zero. Returns the new stock, or None
    when the reward has unlimited stock or the change would go below zero."""
    with connection.cursor() as cur:
        cur.execute(
            "UPDATE rewards_reward SET stock = stock + %s, updated_at = %s WHERE id = %s AND stock IS NOT NULL"
            " AND stock + %s >= 0 RETURNING stock",
            [delta, datetime.now(tz=SHANGHAI), reward_id, delta],
        )
        row = cur.fetchone()
    return row[0] if row else None
