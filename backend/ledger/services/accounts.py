"""Ledger accounts: what an account key means (`account_spec`) and creating accounts on first use in key order
(`accounts_ensure`). The key scheme is described in the package docstring (`backend.ledger.services`)."""

from collections.abc import Iterable
from dataclasses import dataclass

from django.db import connection

from backend.core.bulk import BoundCursor
from backend.ledger.models import (
    Account,
    Unit,
)

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
    # What the money reward fund owes after refunds it could not cover (a debit balance, repaid first by the
    # next payments): unfloored, so it may go below zero while the floored fund never does.
    "reward_fund_deficit": Unit.MONEY,
}
# System money accounts that must never go below zero: a cached balance with CHECK (balance >= 0). The money
# reward fund (`system:reward_fund:CNY`) is paid into by offset sales and pays merchants' settlements; it is
# touched once per payment, refund or payable, so the row lock is not a hot spot. (`system:reward_fund` without
# a currency stays the points account of the same name.)
FLOORED_SYSTEM_MONEY = {"reward_fund"}


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
        cur.execute(ACCOUNT_SELECT, [keys], prepare=True)
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
