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

The package, along the flow of a posting (each module imports only the ones above it):
    accounts.py    account keys (`account_spec`), creating accounts on first use (`accounts_ensure`)
    lots.py        consuming points lots soonest expiry first; the default lot handler of a posting
    single.py      the statements of one posting, one round trip each: the transaction with its postings
                   (INSERT ... ON CONFLICT DO NOTHING on the idempotency key), a floored balance (guarded UPDATE)
    posting.py     `_post_one` (the one write path), `ledger_post`, `ledger_post_bulk`, `action_credits_post_bulk`,
                   `ledger_backfill` (importing history: book on the past day a transaction happened)
    verbs.py       release / reject a pending credit, spend points, reverse a transaction, expire due lots
    integrity.py   reconciliation of cached balances, daily Merkle roots (reads through the selectors)
Lot expiry dates are pure functions in `backend.ledger.expiry`, shared with the selectors, which never import
the services. Import from this package, not from its modules: this face is the public API.
"""

from backend.core.days import SHANGHAI
from backend.ledger.expiry import lot_expires_at, lot_last_valid_day
from backend.ledger.services.accounts import (
    ACCOUNT_INSERT,
    ACCOUNT_SELECT,
    FLOORED_SYSTEM_MONEY,
    MERCHANT_ACCOUNTS,
    RESIDENT_ACCOUNTS,
    SYSTEM_ACCOUNTS,
    AccountRow,
    AccountSpec,
    account_spec,
    accounts_ensure,
    resident_account_key,
)
from backend.ledger.services.integrity import balances_reconcile, merkle_root_compute
from backend.ledger.services.posting import (
    BALANCE_UPDATE,
    LOT_UPSERT,
    POSTING_COPY,
    POSTING_TYPES,
    TXN_INSERT,
    ActionCredit,
    Kind,
    LedgerEntry,
    Leg,
    LotHandler,
    action_credits_post_bulk,
    ledger_backfill,
    ledger_backfilling,
    ledger_post,
    ledger_post_bulk,
)
from backend.ledger.services.verbs import (
    pending_credit_release,
    pending_credit_reverse,
    points_lots_expire,
    points_spend,
    transaction_reverse,
)

__all__ = [
    "ACCOUNT_INSERT",
    "ACCOUNT_SELECT",
    "BALANCE_UPDATE",
    "FLOORED_SYSTEM_MONEY",
    "LOT_UPSERT",
    "MERCHANT_ACCOUNTS",
    "POSTING_COPY",
    "POSTING_TYPES",
    "RESIDENT_ACCOUNTS",
    "SHANGHAI",
    "SYSTEM_ACCOUNTS",
    "TXN_INSERT",
    "AccountRow",
    "AccountSpec",
    "ActionCredit",
    "Kind",
    "LedgerEntry",
    "Leg",
    "LotHandler",
    "account_spec",
    "accounts_ensure",
    "action_credits_post_bulk",
    "balances_reconcile",
    "ledger_backfill",
    "ledger_backfilling",
    "ledger_post",
    "ledger_post_bulk",
    "lot_expires_at",
    "lot_last_valid_day",
    "merkle_root_compute",
    "pending_credit_release",
    "pending_credit_reverse",
    "points_lots_expire",
    "points_spend",
    "resident_account_key",
    "transaction_reverse",
]
