"""Shared helpers of the ledger tests: credits, and the invariants asserted after every randomized or
concurrent test."""

import itertools
from datetime import UTC, datetime

from django.db import connection

from backend.ledger.selectors import balance_drift, unbalanced_transactions
from backend.ledger.services import ActionCredit

_ids = itertools.count(1)


def credit(resident_id, *, points=100, grams=500, key=None, pending=False, effective_at=None, months=12):
    n = next(_ids)
    return ActionCredit(
        idempotency_key=key or f"test-action:{resident_id}:{n}",
        resident_id=resident_id,
        methodology="metro_ride",
        grams=grams,
        points=points,
        reason="Metro ride 8.2 km, 2026-11-24",
        source_type="action",
        source_id=n,
        effective_at=effective_at or datetime.now(UTC),
        pending=pending,
        points_expiry_months=months,
    )


def assert_ledger_invariants():
    assert unbalanced_transactions() == []
    _, drift = balance_drift()
    assert drift == []
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM ledger_account WHERE balance < 0")
        assert cur.fetchone()[0] == 0
        # every lot: issued = left + consumed
        cur.execute(
            "SELECT count(*) FROM ledger_pointslot l LEFT JOIN (SELECT lot_id, sum(amount) s"
            " FROM ledger_lotconsumption GROUP BY lot_id) c ON c.lot_id = l.id"
            " WHERE l.amount <> l.remaining + coalesce(c.s, 0)"
        )
        assert cur.fetchone()[0] == 0
