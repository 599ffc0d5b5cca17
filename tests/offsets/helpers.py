"""Forged Stripe events (what localstripe never sends: refunds, cancellations, duplicates, disorder) and the
offsets invariants asserted after every flow."""

import itertools
import json
import time

import stripe
from django.db import connection

from tests.ledger.helpers import assert_ledger_invariants
from tests.offsets.conftest import WEBHOOK_SECRET

_ids = itertools.count(1)


def event(kind: str, obj: dict, event_id: str | None = None) -> dict:
    return {
        "id": event_id or f"evt_forged_{time.monotonic_ns()}_{next(_ids)}",
        "object": "event",
        "type": kind,
        "created": int(time.time()),
        "data": {"object": obj},
    }


def intent_event(kind: str, order, event_id=None) -> dict:
    obj = {
        "id": order.payment_intent_id,
        "object": "payment_intent",
        "amount": order.amount_fen,
        "currency": order.currency.lower(),
        "metadata": {"order_id": str(order.id)},
        "status": {"payment_intent.succeeded": "succeeded"}.get(kind, "canceled"),
    }
    return event(kind, obj, event_id)


def refund_event(order, *, amount_refunded=None, event_id=None) -> dict:
    refunded = order.amount_fen if amount_refunded is None else amount_refunded
    obj = {
        "id": f"ch_forged_{order.id}",
        "object": "charge",
        "payment_intent": order.payment_intent_id,
        "amount": order.amount_fen,
        "amount_refunded": refunded,
        "refunded": refunded >= order.amount_fen,
        "currency": "cny",
    }
    return event("charge.refunded", obj, event_id)


def signed(evt: dict, *, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> tuple[str, str]:
    body = json.dumps(evt)
    return body, stripe.WebhookSignature.generate_signature_header(body, secret, timestamp=timestamp)


def deliver(client, evt: dict, **kwargs):
    body, header = signed(evt, **kwargs)
    return client.post(
        "/api/v1/stripe/webhook", data=body, content_type="application/json", HTTP_STRIPE_SIGNATURE=header
    )


def assert_offsets_invariants():
    """Inventory adds up (ranges explain every batch counter), serial ranges never overlap, money balances."""
    assert_ledger_invariants()
    with connection.cursor() as cur:
        cur.execute(
            "SELECT b.id FROM offsets_certificationbatch b LEFT JOIN ("
            " SELECT batch_id,"
            "  sum(CASE WHEN state='available' THEN r.end - r.start + 1 ELSE 0 END) a,"
            "  sum(CASE WHEN state='reserved' THEN r.end - r.start + 1 ELSE 0 END) r,"
            "  sum(CASE WHEN state='sold' THEN r.end - r.start + 1 ELSE 0 END) s,"
            "  sum(CASE WHEN state='void' THEN r.end - r.start + 1 ELSE 0 END) v"
            " FROM offsets_serialrange r GROUP BY batch_id) x ON x.batch_id = b.id"
            " WHERE coalesce(x.a,0) <> b.available_kg OR coalesce(x.r,0) <> b.reserved_kg"
            " OR coalesce(x.s,0) <> b.sold_kg OR coalesce(x.v,0) <> b.void_kg"
        )
        assert cur.fetchall() == []
        cur.execute(
            "SELECT count(*) FROM offsets_serialrange a JOIN offsets_serialrange b ON a.batch_id = b.batch_id"
            " AND a.id < b.id AND a.start <= b.end AND b.start <= a.end"
        )
        assert cur.fetchone()[0] == 0
        # Every paid or refunded order's money went in once (and came out once when refunded).
        cur.execute(
            "SELECT count(*) FROM offsets_offsetorder o WHERE o.status IN ('paid', 'refunded')"
            " AND o.payment_txn_id IS NULL"
        )
        assert cur.fetchone()[0] == 0
        # Sold serials belong to paid orders only; reserved ones to reserved orders only.
        cur.execute(
            "SELECT count(*) FROM offsets_serialrange r JOIN offsets_offsetorder o ON o.id = r.order_id"
            " WHERE (r.state = 'sold' AND o.status <> 'paid') OR (r.state = 'reserved' AND o.status <> 'reserved')"
        )
        assert cur.fetchone()[0] == 0


def fund_balance() -> int:
    from backend.offsets.selectors import reward_fund_balance

    return reward_fund_balance()
