"""The statements of one posting (`_post_one`), each a single round trip on PostgreSQL: the transaction row and
its postings in one INSERT (the idempotency key's unique index decides, ON CONFLICT DO NOTHING: no savepoint, no
SELECT first), and each floored balance as one guarded UPDATE (the row lock and the check in one statement).
Elsewhere (the embedded SQLite quick start) the same through the ORM."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from django.db import IntegrityError, connection, transaction
from django.db.models import F

from backend.core.bulk import BoundCursor
from backend.ledger.models import Account, LedgerTransaction, Posting

TXN_POST = (
    "WITH t AS (INSERT INTO ledger_ledgertransaction (kind, reason, source_type, source_id, idempotency_key,"
    " content_hash, effective_at, reverses_id, releases_id, lot_expiry_months)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING id),"
    " p AS (INSERT INTO ledger_posting (transaction_id, account_id, unit, currency, amount)"
    " SELECT t.id, v.a, v.u, v.c, v.n FROM t, unnest(%s::bigint[], %s::text[], %s::text[], %s::bigint[])"
    " WITH ORDINALITY AS v(a, u, c, n, o) ORDER BY v.o)"
    " SELECT id FROM t"
)
# PostgreSQL's trigger refusing a booking on a day whose Merkle root is published (ledger migration 0005).
BOOKING_DAY_CONSTRAINT = "ledger_transaction_booking_day"
BALANCE_APPLY = "UPDATE ledger_account SET balance = balance + %s WHERE id = %s AND balance + %s >= 0 RETURNING id"


def violated_constraint(exc: IntegrityError) -> str:
    diag = getattr(exc.__cause__, "diag", None)
    return getattr(diag, "constraint_name", None) or ""


@dataclass(frozen=True)
class PostingRow:
    account_id: int
    unit: str
    currency: str
    amount: int


def transaction_insert(
    *, txn: LedgerTransaction, postings: Sequence[PostingRow], booked_on: date | None = None
) -> int | None:
    """Insert `txn` (unsaved; its fields as given) with its postings, in order. Returns the new id, or None when a
    unique constraint says no (the idempotency key exists, or the original was already reversed or released):
    nothing was written then. A concurrent poster of the same key makes this wait for its commit (then None) or
    its rollback (then this one inserts). `booked_on` (a backfill's past day, rare) goes through the ORM; a day
    sealed meanwhile raises the IntegrityError of `BOOKING_DAY_CONSTRAINT`."""
    if booked_on is not None:
        txn.booked_on = booked_on
    if connection.vendor != "postgresql" or booked_on is not None:
        return _transaction_insert_orm(txn=txn, postings=postings)
    with connection.wrap_database_errors, BoundCursor() as cur:
        cur.execute(
            TXN_POST,
            [
                str(txn.kind),
                txn.reason,
                txn.source_type,
                txn.source_id,
                txn.idempotency_key,
                txn.content_hash,
                txn.effective_at,
                txn.reverses_id,
                txn.releases_id,
                txn.lot_expiry_months,
                [p.account_id for p in postings],
                [str(p.unit) for p in postings],
                [p.currency for p in postings],
                [p.amount for p in postings],
            ],
            prepare=True,  # planned once per connection: every single posting (redemption's hot path) runs it
        )
        row = cur.cursor.fetchone()
    if row is None:
        return None
    txn.id = row[0]
    txn._state.adding, txn._state.db = False, connection.alias
    return txn.id


def _transaction_insert_orm(*, txn: LedgerTransaction, postings: Sequence[PostingRow]) -> int | None:
    try:
        with transaction.atomic():  # a savepoint: the unique index answers, the caller's transaction goes on
            txn.save(force_insert=True)
    except IntegrityError as exc:
        if violated_constraint(exc) == BOOKING_DAY_CONSTRAINT:
            raise  # not a duplicate: the past day it is booked on was sealed meanwhile
        return None
    Posting.objects.bulk_create(
        [
            Posting(transaction=txn, account_id=p.account_id, unit=p.unit, currency=p.currency, amount=p.amount)
            for p in postings
        ]
    )
    return txn.id


def balance_apply(*, account_id: int, delta: int) -> bool:
    """Add `delta` to a floored account's cached balance unless it would go below zero; False when it would
    (nothing changed). The row lock this takes is held until commit: callers go in account-id order."""
    if connection.vendor != "postgresql":
        return bool(Account.objects.filter(id=account_id, balance__gte=-delta).update(balance=F("balance") + delta))
    with connection.wrap_database_errors, BoundCursor() as cur:
        cur.execute(BALANCE_APPLY, [delta, account_id, delta], prepare=True)
        return cur.cursor.fetchone() is not None
