"""The reward fund's money: offset payments in, refunds out, and the deficit a refund can leave behind.

    payment   system:payment_clearing -X  ->  system:reward_fund_deficit +R  (R = min(X, deficit owed))
                                             system:reward_fund          +(X - R)
    refund    system:payment_clearing +X  <-  system:reward_fund          -F  (F = min(X, fund balance))
                                             system:reward_fund_deficit  -(X - F)

The reward fund (`system:reward_fund:<cur>`) is floored: merchant payables are funded from it only when it has
the money (settlement.py), and what was funded or paid to a merchant is never taken back. A refund, though,
always completes: Stripe has already returned the buyer's money, so whatever the fund cannot cover is booked to
the deficit (`system:reward_fund_deficit:<cur>`, an unfloored account whose debit balance is what the fund owes
the platform). The next payments repay the deficit before anything reaches the fund, so waiting payables are
funded only from money the fund really has. Net position = fund balance - deficit owed = money paid in - money
refunded - payables funded (`selectors.reward_fund_statement` checks it against the orders and payables).

Why a lock: the amounts split between fund and deficit depend on their balances, so both account rows are
locked (by id, before the posting locks the fund again) and read under the lock; two payments or refunds at once
never both repay the same deficit or both count on the same balance. The deficit account is touched only by
refunds and the payments that repay it, so its row lock is not a hot spot (payments already queue on the fund).
Lock order: after the offsets rows (services.py) -> deficit and fund account rows by id -> the posting's own.
"""

from django.db.models import Sum

from backend.ledger.models import Account, LedgerTransaction, Posting
from backend.ledger.services import Leg, accounts_ensure, ledger_post


def clearing_key(currency: str) -> str:
    return f"system:payment_clearing:{currency}"


def reward_fund_key(currency: str) -> str:
    return f"system:reward_fund:{currency}"


def deficit_key(currency: str) -> str:
    return f"system:reward_fund_deficit:{currency}"


def deficit_owed(currency: str) -> int:
    """What the fund owes (minor units, >= 0): minus the deficit account's postings. Unfloored accounts keep
    no cached balance, so this is the sum of its postings (one row per uncovered refund or repayment)."""
    total = Posting.objects.filter(account__key=deficit_key(currency)).aggregate(s=Sum("amount"))["s"] or 0
    return -total


def _lock(currency: str) -> tuple[int, int]:
    """Lock the fund and deficit account rows (id order) and return (fund balance, deficit owed)."""
    accounts = accounts_ensure(keys=[reward_fund_key(currency), deficit_key(currency)])
    rows = dict(
        Account.objects.select_for_update()
        .filter(id__in=[a.id for a in accounts.values()])
        .order_by("id")
        .values_list("key", "balance")
    )
    return rows[reward_fund_key(currency)], deficit_owed(currency)


def _legs(*pairs: tuple[str, int]) -> list[Leg]:
    return [Leg(key, amount) for key, amount in pairs if amount]  # a posting is never zero


def payment_post(*, order_id: int, amount: int, currency: str, reason: str) -> int:
    """Post an offset payment: repay the deficit first, the rest into the fund. Call inside the caller's
    transaction, holding the order's row lock (the key `offset-order:<id>:payment` makes it once per order)."""
    _, owed = _lock(currency)
    repay = min(amount, owed)
    return ledger_post(
        kind=LedgerTransaction.Kind.TRANSFER,
        reason=reason,
        source_type="offset_order",
        source_id=order_id,
        idempotency_key=f"offset-order:{order_id}:payment",
        postings=_legs(
            (clearing_key(currency), -amount),
            (deficit_key(currency), repay),
            (reward_fund_key(currency), amount - repay),
        ),
    )


def refund_post(*, order_id: int, amount: int, currency: str, reason: str) -> tuple[int, int]:
    """Post an offset refund: out of the fund as far as it goes, the rest to the deficit. Never fails for want
    of money. Returns (transaction id, shortfall booked to the deficit). Same calling rules as `payment_post`."""
    balance, _ = _lock(currency)
    covered = min(amount, balance)
    txn_id = ledger_post(
        kind=LedgerTransaction.Kind.TRANSFER,
        reason=reason,
        source_type="offset_order",
        source_id=order_id,
        idempotency_key=f"offset-order:{order_id}:refund",
        postings=_legs(
            (clearing_key(currency), amount),
            (reward_fund_key(currency), -covered),
            (deficit_key(currency), -(amount - covered)),
        ),
    )
    return txn_id, amount - covered
