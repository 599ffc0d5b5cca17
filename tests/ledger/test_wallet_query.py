"""The wallet in one query (backend/ledger/selectors.py WALLET_SQL): the same figures as the ORM reference
(`wallet_get_portable`) over every kind of history, and exactly one query per GET /me/wallet."""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.renderers import JSONRenderer

from backend.ledger import tasks
from backend.ledger.apis import WalletSerializer
from backend.ledger.selectors import wallet_get, wallet_get_portable
from backend.ledger.services import (
    action_credits_post_bulk,
    pending_credit_release,
    pending_credit_reverse,
    points_spend,
    transaction_reverse,
)
from tests.conftest import client_for, requires_postgres
from tests.ledger.helpers import credit

pytestmark = [pytest.mark.django_db, requires_postgres]


def spend(resident_id, points, key):
    return points_spend(
        resident_id=resident_id,
        points=points,
        idempotency_key=key,
        reason="voucher",
        source_type="voucher",
        source_id=1,
    )


def history(resident_id: int) -> None:
    """Credits expiring in different months (two on the same day), big amounts, a pending credit released and
    one reversed, a spend, a spend reversed, a credit reversed and an expired lot."""
    now = datetime.now(UTC)
    same_day = now - timedelta(days=3)
    credits = [
        credit(resident_id, points=10**12, grams=9 * 10**15, effective_at=now - timedelta(days=40)),
        credit(resident_id, points=70, grams=500, effective_at=same_day),
        credit(resident_id, points=30, grams=250, effective_at=same_day),
        credit(resident_id, points=50, effective_at=now - timedelta(days=500)),  # expires below
        credit(resident_id, points=11, months=3),
        credit(resident_id, points=12, months=6),
    ]
    ids = action_credits_post_bulk(credits=credits)
    released, rejected = credit(resident_id, points=40, pending=True), credit(resident_id, points=9, pending=True)
    waiting = credit(resident_id, points=8, grams=80, pending=True)
    action_credits_post_bulk(credits=[released, rejected, waiting])
    pending_credit_release(idempotency_key=released.idempotency_key)
    pending_credit_reverse(idempotency_key=rejected.idempotency_key, reason="rejected")
    spent = spend(resident_id, 25, f"w-s1-{resident_id}")
    spend(resident_id, 3, f"w-s2-{resident_id}")
    transaction_reverse(transaction_id=spent, reason="cancelled", idempotency_key=f"w-r1-{resident_id}")
    transaction_reverse(
        transaction_id=ids[credits[4].idempotency_key], reason="fraud", idempotency_key=f"w-r2-{resident_id}"
    )
    tasks.points_lots_expire.delay().get()


def test_one_query_equals_the_orm_reference():
    history(31)
    action_credits_post_bulk(credits=[credit(32, points=5)])
    for resident_id in (31, 32, 33):  # 33: no accounts at all
        assert wallet_get(resident_id=resident_id) == wallet_get_portable(resident_id=resident_id)
    wallet = wallet_get(resident_id=31)
    assert wallet["points_pending"] == 8 and wallet["carbon_pending_g"] == 80
    assert len(wallet["points_expiring"]) == 3
    assert all(type(wallet[k]) is int for k in wallet if k != "points_expiring")
    assert wallet_get(resident_id=33) == {
        "carbon_g": 0,
        "carbon_pending_g": 0,
        "points_balance": 0,
        "points_pending": 0,
        "points_lifetime": 0,
        "points_expiring": [],
    }


def test_wallet_request_is_exactly_one_query(resident):
    history(resident.pk)
    client = client_for(resident)
    assert client.get("/api/v1/me/wallet").status_code == 200  # the first request caches the user row
    with CaptureQueriesContext(connection) as ctx:
        response = client.get("/api/v1/me/wallet")
    assert response.status_code == 200
    assert len(ctx.captured_queries) == 1, [q["sql"] for q in ctx.captured_queries]
    reference = WalletSerializer(wallet_get_portable(resident_id=resident.pk)).data
    assert response.content == JSONRenderer().render(reference)
    assert response.json()["carbon_g"] > 9 * 10**15  # big integers stay exact
