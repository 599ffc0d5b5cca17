"""Every read of the ledger: wallet, a resident's transactions, Merkle leaves and proofs, invariant checks."""

from collections import defaultdict
from datetime import date

from django.db import connection
from django.db.models import Q, QuerySet, Sum
from django.utils import timezone
from django.utils.translation import gettext as _

from backend.core.db import prepared_cursor
from backend.core.errors import ApplicationError
from backend.core.pagination import KeysetRows
from backend.ledger import merkle
from backend.ledger.expiry import lot_last_valid_day
from backend.ledger.models import (
    Account,
    LedgerTransaction,
    LotConsumption,
    MerkleNode,
    MerkleRoot,
    PointsLot,
    Posting,
)

EXPIRING_SHOWN = 3
AMOUNT_FIELDS = {
    "carbon": "carbon_g",
    "carbon_pending": "carbon_pending_g",
    "points": "points",
    "points_pending": "points_pending",
}


def resident_accounts(*, resident_id: int) -> dict[str, Account]:
    return {a.name: a for a in Account.objects.filter(kind=Account.Kind.RESIDENT, owner_id=resident_id)}


# One statement for the whole wallet (PostgreSQL): the resident's four accounts, the unfloored carbon account's
# sum of postings, spendable / lifetime points from the lots and the next expiries. Sums are cast to bigint:
# SUM(bigint) is numeric in PostgreSQL, which would arrive as Decimal.
WALLET_SQL = """
WITH acct AS (
    SELECT id, name, floored, balance FROM ledger_account WHERE owner_id = %(resident)s AND kind = 'resident'
), balances AS (
    SELECT name, CASE WHEN floored THEN balance
                      ELSE (SELECT COALESCE(SUM(p.amount), 0)::bigint FROM ledger_posting p
                            WHERE p.account_id = acct.id)
                 END AS amount
    FROM acct
), open_lots AS (
    SELECT l.expires_at, l.remaining FROM ledger_pointslot l
    WHERE l.account_id = (SELECT id FROM acct WHERE name = 'points') AND l.remaining > 0 AND l.expires_at > %(now)s
), expiring AS (
    SELECT expires_at, SUM(remaining)::bigint AS points FROM open_lots GROUP BY expires_at
    ORDER BY expires_at LIMIT %(shown)s
)
SELECT
    COALESCE((SELECT amount FROM balances WHERE name = 'carbon'), 0),
    COALESCE((SELECT amount FROM balances WHERE name = 'carbon_pending'), 0),
    COALESCE((SELECT amount FROM balances WHERE name = 'points_pending'), 0),
    (SELECT COALESCE(SUM(remaining), 0)::bigint FROM open_lots),
    (SELECT COALESCE(SUM(l.amount), 0)::bigint FROM ledger_pointslot l
     WHERE l.account_id = (SELECT id FROM acct WHERE name = 'points') AND l.kind = 'earned')
    - (SELECT COALESCE(SUM(c.amount), 0)::bigint FROM ledger_lotconsumption c JOIN ledger_pointslot l ON l.id = c.lot_id
       WHERE l.account_id = (SELECT id FROM acct WHERE name = 'points') AND c.kind = 'reversal'),
    ARRAY(SELECT expires_at FROM expiring ORDER BY expires_at),
    ARRAY(SELECT points FROM expiring ORDER BY expires_at)
"""


def wallet_get(*, resident_id: int) -> dict:
    """The /me/wallet payload: carbon credited, spendable / pending / lifetime points, next expiries. One query
    on PostgreSQL (WALLET_SQL); the embedded SQLite default reads the same figures with the ORM
    (`wallet_get_portable`, also the reference the one-query version is tested against)."""
    if connection.vendor != "postgresql":
        return wallet_get_portable(resident_id=resident_id)
    with prepared_cursor() as cursor:  # planned once per connection: planning cost about twice the execution
        cursor.execute(WALLET_SQL, {"resident": resident_id, "now": timezone.now(), "shown": EXPIRING_SHOWN})
        carbon, carbon_pending, points_pending, spendable, lifetime, expires, amounts = cursor.fetchone()
    return {
        "carbon_g": carbon,
        "carbon_pending_g": carbon_pending,
        "points_balance": spendable,
        "points_pending": points_pending,
        "points_lifetime": lifetime,
        "points_expiring": [
            {"expires_on": lot_last_valid_day(at), "expires_at": at, "points": points}
            for at, points in zip(expires, amounts, strict=True)
        ],
    }


def wallet_get_portable(*, resident_id: int) -> dict:
    """`wallet_get` with the ORM, six queries: any database."""
    accounts = resident_accounts(resident_id=resident_id)
    now = timezone.now()

    def posted(name: str) -> int:
        acct = accounts.get(name)
        if acct is None:
            return 0
        if acct.floored:
            return acct.balance
        return Posting.objects.filter(account=acct).aggregate(s=Sum("amount"))["s"] or 0

    points = accounts.get("points")
    spendable, lifetime, expiring = 0, 0, []
    if points is not None:
        open_lots = PointsLot.objects.filter(account=points, remaining__gt=0, expires_at__gt=now)
        spendable = open_lots.aggregate(s=Sum("remaining"))["s"] or 0
        earned = PointsLot.objects.filter(account=points, kind=PointsLot.Kind.EARNED).aggregate(s=Sum("amount"))
        taken_back = LotConsumption.objects.filter(lot__account=points, kind=LotConsumption.Kind.REVERSAL).aggregate(
            s=Sum("amount")
        )
        lifetime = (earned["s"] or 0) - (taken_back["s"] or 0)
        rows = open_lots.values("expires_at").annotate(points=Sum("remaining")).order_by("expires_at")[:EXPIRING_SHOWN]
        expiring = [
            {"expires_on": lot_last_valid_day(r["expires_at"]), "expires_at": r["expires_at"], "points": r["points"]}
            for r in rows
        ]
    return {
        "carbon_g": posted("carbon"),
        "carbon_pending_g": posted("carbon_pending"),
        "points_balance": spendable,
        "points_pending": posted("points_pending"),
        "points_lifetime": lifetime,
        "points_expiring": expiring,
    }


def resident_transactions(*, resident_id: int) -> QuerySet[LedgerTransaction]:
    """A resident's ledger transactions (any posting on one of their accounts), only the columns
    LedgerEntrySerializer shows. Newest first through the cursor pagination's `-id` ordering. A page's amounts come
    from `resident_amounts_attach` (one more query for the whole page)."""
    account_ids = Account.objects.filter(kind=Account.Kind.RESIDENT, owner_id=resident_id).values("id")
    txn_ids = Posting.objects.filter(account_id__in=account_ids).values("transaction_id")
    return LedgerTransaction.objects.filter(id__in=txn_ids).only(
        "id", "kind", "reason", "created_at", "effective_at", "booked_on", "source_type", "source_id", "reverses_id"
    )


# The resident's postings of a page of transactions, summed per account name, in one statement: no Posting model
# per row and no ORM compilation of a prefetch (most of a ledger page's CPU before).
PAGE_AMOUNTS_SQL = """
SELECT p.transaction_id, a.name, SUM(p.amount)::bigint
FROM ledger_posting p JOIN ledger_account a ON a.id = p.account_id
WHERE a.owner_id = %s AND a.kind = 'resident' AND p.transaction_id {ids}
GROUP BY p.transaction_id, a.name
"""


def resident_amounts_attach(txns: list[LedgerTransaction], *, resident_id: int) -> list[LedgerTransaction]:
    """Sets `resident_amounts` ({carbon_g, carbon_pending_g, points, points_pending}) on each of `txns`: the
    resident's own postings in it per unit. One query for the whole list."""
    for txn in txns:
        txn.resident_amounts = {"carbon_g": 0, "carbon_pending_g": 0, "points": 0, "points_pending": 0}
    if not txns:
        return txns
    by_id = {txn.id: txn for txn in txns}
    if connection.vendor == "postgresql":  # one statement text whatever the page size: prepared once
        sql, params = PAGE_AMOUNTS_SQL.format(ids="= ANY(%s)"), [resident_id, list(by_id)]
    else:
        sql, params = PAGE_AMOUNTS_SQL.format(ids="IN (" + ", ".join(["%s"] * len(by_id)) + ")"), [resident_id, *by_id]
    with prepared_cursor() as cursor:
        cursor.execute(sql, params)
        for txn_id, name, amount in cursor.fetchall():
            by_id[txn_id].resident_amounts[AMOUNT_FIELDS[name]] += int(amount)
    return txns


# A ledger page in one statement (PostgreSQL): the page of the resident's transactions (`resident_transactions`'
# shape: ids from their postings, newest first from a keyset bound) with the resident's amounts per account name
# beside each row, no model per row. One text per direction (bound `<` newest first, `>` for a previous page).
PAGE_SQL = """
WITH acct AS (
    SELECT id, name FROM ledger_account WHERE owner_id = %(resident)s AND kind = 'resident'
)
SELECT t.id, t.kind, t.reason, t.created_at, t.effective_at, t.booked_on, t.source_type, t.source_id, t.reverses_id,
       am.carbon, am.carbon_pending, am.points, am.points_pending
FROM (
    SELECT id, kind, reason, created_at, effective_at, booked_on, source_type, source_id, reverses_id
    FROM ledger_ledgertransaction
    WHERE id IN (SELECT p.transaction_id FROM ledger_posting p WHERE p.account_id IN (SELECT id FROM acct))
      AND id {op} %(bound)s
    ORDER BY id {direction} LIMIT %(limit)s OFFSET %(offset)s
) t
CROSS JOIN LATERAL (
    SELECT COALESCE(SUM(p.amount) FILTER (WHERE a.name = 'carbon'), 0)::bigint AS carbon,
           COALESCE(SUM(p.amount) FILTER (WHERE a.name = 'carbon_pending'), 0)::bigint AS carbon_pending,
           COALESCE(SUM(p.amount) FILTER (WHERE a.name = 'points'), 0)::bigint AS points,
           COALESCE(SUM(p.amount) FILTER (WHERE a.name = 'points_pending'), 0)::bigint AS points_pending
    FROM ledger_posting p JOIN acct a ON a.id = p.account_id
    WHERE p.transaction_id = t.id
) am
ORDER BY t.id {direction}
"""
PAGE_SQL_NEWEST_FIRST = PAGE_SQL.format(op="<", direction="DESC")
PAGE_SQL_OLDEST_FIRST = PAGE_SQL.format(op=">", direction="ASC")


def resident_transaction_rows(*, resident_id: int, write) -> KeysetRows:
    """A resident's ledger transactions for the cursor pagination (`-id`), each written by
    `write(id, kind, reason, created_at, effective_at, booked_on, source_type, source_id, reverses_id, amounts)`
    with amounts {carbon_g, carbon_pending_g, points, points_pending}. PostgreSQL: one prepared statement per page
    (PAGE_SQL); elsewhere the ORM (`resident_transactions` + `resident_amounts_attach`, two queries), also the
    reference the statement is tested against."""

    def fetch(*, descending: bool, bound: int, offset: int, limit: int) -> list:
        if connection.vendor != "postgresql":
            qs = resident_transactions(resident_id=resident_id).order_by("-id" if descending else "id")
            qs = qs.filter(id__lt=bound) if descending else qs.filter(id__gt=bound)
            txns = resident_amounts_attach(list(qs[offset : offset + limit]), resident_id=resident_id)
            return [
                write(
                    t.id, t.kind, t.reason, t.created_at, t.effective_at, t.booked_on,
                    t.source_type, t.source_id, t.reverses_id, t.resident_amounts,
                )
                for t in txns
            ]  # fmt: skip
        sql = PAGE_SQL_NEWEST_FIRST if descending else PAGE_SQL_OLDEST_FIRST
        with prepared_cursor() as cursor:
            cursor.execute(sql, {"resident": resident_id, "bound": bound, "limit": limit, "offset": offset})
            rows = cursor.fetchall()
        return [
            write(
                *row[:9],
                {"carbon_g": row[9], "carbon_pending_g": row[10], "points": row[11], "points_pending": row[12]},
            )
            for row in rows
        ]

    return KeysetRows(fetch)


def resident_transaction_get(*, resident_id: int, transaction_id: int) -> LedgerTransaction:
    txn = resident_transactions(resident_id=resident_id).filter(id=transaction_id).first()
    if txn is None:
        raise ApplicationError(_("Not found."), code="not_found", status_code=404)
    return resident_amounts_attach([txn], resident_id=resident_id)[0]


# -------------------------------------------------------------------------------------------------- Merkle


def transaction_day(txn: LedgerTransaction) -> date:
    """The day whose tree holds the transaction: its booking day (the day it was posted, or an imported one's)."""
    return txn.booked_on


def day_leaves(*, day: date) -> tuple[list[int], list[bytes]]:
    """Transaction ids and leaf hashes of one Asia/Shanghai day (by booking day), ordered by id."""
    txns = list(
        LedgerTransaction.objects.filter(booked_on=day)
        .order_by("id")
        .values_list("id", "idempotency_key", "effective_at")
    )
    postings: dict[int, list] = defaultdict(list)
    chunk = 20_000
    for i in range(0, len(txns), chunk):
        part = txns[i : i + chunk]
        rows = Posting.objects.filter(transaction_id__gte=part[0][0], transaction_id__lte=part[-1][0]).values_list(
            "transaction_id", "account_id", "unit", "currency", "amount"
        )
        for txn_id, *rest in rows:
            postings[txn_id].append(rest)
    hashes = [
        merkle.leaf_hash(merkle.leaf_bytes(txn_id=t, idempotency_key=k, effective_at=e, postings=postings[t]))
        for t, k, e in txns
    ]
    return [t for t, _, _ in txns], hashes


def day_leaf_hashes(*, day: date) -> list[bytes]:
    return day_leaves(day=day)[1]


def transaction_proof(*, resident_id: int, transaction_id: int) -> dict:
    """Inclusion proof of one of the resident's transactions in its day's published root: the leaf's stored
    node (with its root), one sibling hash per level and the transaction's postings — four queries whatever
    the day's size."""
    txn = (
        LedgerTransaction.objects.filter(
            id=transaction_id, postings__account__kind=Account.Kind.RESIDENT, postings__account__owner_id=resident_id
        )
        .distinct()
        .first()
    )
    if txn is None:
        raise ApplicationError(_("Not found."), code="not_found", status_code=404)
    day = transaction_day(txn)
    leaf_node = MerkleNode.objects.select_related("root").filter(transaction_id=txn.id).first()
    if leaf_node is None:
        root = MerkleRoot.objects.filter(day=day).first()
        if root is None:
            raise ApplicationError(
                _("The root of this day is not published yet (roots are computed after the day ends)."),
                code="proof_not_ready",
                status_code=409,
            )
        return _proof_rebuilt(txn, day, root)  # a root published before tree levels were stored
    root = leaf_node.root
    steps = merkle.proof_positions(leaf_node.position, root.leaf_count)
    wanted = Q(pk__in=[])
    for level, position, _side in steps:
        wanted |= Q(level=level, position=position)
    rows = MerkleNode.objects.filter(wanted, root=root).values_list("level", "position", "hash")
    siblings = {(level, position): bytes(node) for level, position, node in rows}
    return {
        "transaction_id": txn.id,
        "day": day,
        "leaf": _leaf_of(txn).decode(),
        "leaf_hash": bytes(leaf_node.hash).hex(),
        "index": leaf_node.position,
        "leaf_count": root.leaf_count,
        "proof": [{"hash": siblings[(level, pos)].hex(), "position": side} for level, pos, side in steps],
        "root": root.root,
    }


def _leaf_of(txn: LedgerTransaction) -> bytes:
    postings = Posting.objects.filter(transaction=txn).values_list("account_id", "unit", "currency", "amount")
    return merkle.leaf_bytes(
        txn_id=txn.id, idempotency_key=txn.idempotency_key, effective_at=txn.effective_at, postings=list(postings)
    )


def _proof_rebuilt(txn: LedgerTransaction, day: date, root: MerkleRoot) -> dict:
    ids, hashes = day_leaves(day=day)
    index = ids.index(txn.id)
    return {
        "transaction_id": txn.id,
        "day": day,
        "leaf": _leaf_of(txn).decode(),
        "leaf_hash": hashes[index].hex(),
        "index": index,
        "leaf_count": len(hashes),
        "proof": merkle.merkle_proof(hashes, index),
        "root": root.root,
    }


def merkle_roots() -> QuerySet[MerkleRoot]:
    return MerkleRoot.objects.all()


# -------------------------------------------------------------------------------------------- invariants


def balance_drift() -> tuple[int, list[dict]]:
    """Floored accounts whose cached balance differs from the sum of their postings (or, for resident points,
    from the points left in their lots). Returns (accounts checked, drift rows)."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT a.id, a.key, a.balance, coalesce(p.s, 0), a.kind = 'resident' AND a.name = 'points', l.s"
            " FROM ledger_account a"
            " LEFT JOIN (SELECT account_id, sum(amount) s FROM ledger_posting GROUP BY account_id) p"
            "   ON p.account_id = a.id"
            " LEFT JOIN (SELECT account_id, sum(remaining) s FROM ledger_pointslot GROUP BY account_id) l"
            "   ON l.account_id = a.id"
            " WHERE a.floored"
        )
        rows = cur.fetchall()
    drift = []
    for account_id, key, cached, posted, holds_lots, in_lots in rows:
        in_lots = in_lots or 0
        if cached != posted or (holds_lots and in_lots != cached):
            drift.append(
                {"account_id": account_id, "key": key, "cached": cached, "postings": posted}
                | ({"lots": in_lots} if holds_lots else {})
            )
    return len(rows), drift


def unbalanced_transactions(*, limit: int = 10) -> list[int]:
    with connection.cursor() as cur:
        cur.execute(
            "SELECT transaction_id FROM ledger_posting GROUP BY transaction_id, unit, currency"
            " HAVING sum(amount) <> 0 LIMIT %s",
            [limit],
        )
        return [r[0] for r in cur.fetchall()]


def transactions_without_postings(*, limit: int = 10) -> list[int]:
    return list(
        LedgerTransaction.objects.filter(~Q(id__in=Posting.objects.values("transaction_id"))).values_list(
            "id", flat=True
        )[:limit]
    )
