"""Helpers of the rewards tests: points through the ledger services, redemption over the API, and the
rewards invariants asserted after races (on top of the ledger's own)."""

import itertools
import threading
import uuid

from django.db import connection
from django.db.models import Sum

from backend.ledger.models import Account, Posting
from backend.ledger.services import action_credits_post_bulk
from rewards.models import Reward, Voucher
from tests.ledger.helpers import assert_ledger_invariants, credit

_keys = itertools.count(1)


def give_points(user, points, **kw):
    """Credit a resident through the ledger (not through bindings: another issue replaces those)."""
    action_credits_post_bulk(credits=[credit(user.pk, points=points, grams=0, **kw)])


def balance(user) -> int:
    return Account.objects.filter(key=f"resident:{user.pk}:points").values_list("balance", flat=True).first() or 0


def redeem(client, reward_id, key=None, body=None):
    return client.post(
        f"/api/v1/rewards/{reward_id}/redeem",
        body if body is not None else {},
        format="json",
        HTTP_IDEMPOTENCY_KEY=key or f"k-{uuid.uuid4().hex}",
    )


def run_parallel(target, n):
    """n threads behind a barrier, each on its own database connection; returns the results in order."""
    barrier = threading.Barrier(n)
    results, errors = [None] * n, []

    def run(i):
        try:
            barrier.wait()
            results[i] = target(i)
        except Exception as exc:  # pragma: no cover - reported by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    return results


def hold_total() -> int:
    return Posting.objects.filter(account__key="system:redemption_hold").aggregate(s=Sum("amount"))["s"] or 0


def assert_rewards_invariants():
    """The ledger's invariants, plus: the hold equals the issued vouchers' points, each merchant's redeemed
    points equal its redeemed vouchers, no stock below zero."""
    assert_ledger_invariants()
    issued = Voucher.objects.filter(status="issued").aggregate(s=Sum("points_cost"))["s"] or 0
    assert hold_total() == issued
    for merchant_id, points in (
        Voucher.objects.filter(status="redeemed").values_list("merchant_id").annotate(s=Sum("points_cost"))
    ):
        assert Account.objects.get(key=f"merchant:{merchant_id}:points").balance == points
    assert not Reward.objects.filter(stock__lt=0).exists()
