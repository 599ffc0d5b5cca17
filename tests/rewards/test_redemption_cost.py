"""What one redemption costs, pinned: the exact database round trips of the hot path (issue 14's throughput:
they were 22 with savepoints, an idempotency SELECT before the claim and the ledger's own look-up; locust/
bench_redeem.py measures the rate), and the hand-written voucher representation equal to DRF's generic one."""

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework import serializers

from backend.ledger.models import LotConsumption, PointsLot
from rewards.apis import VoucherSerializer
from rewards.models import Reward, Voucher
from tests.conftest import client_for, requires_postgres
from tests.rewards.helpers import assert_rewards_invariants, balance, give_points, redeem

# The whole redemption in one statement that is its own transaction (`rewards_redeem`: the reward with its
# merchant and their availability, voucher claim, limit upsert, ledger spend, guarded stock UPDATE; no BEGIN, no
# COMMIT). The JWT user row comes from the auth cache once warm. (It was 9 with one statement per step, 22 before.)
REDEEM_QUERIES = 1


@pytest.mark.django_db(transaction=True)
@requires_postgres
def test_one_redemption_is_one_round_trip(django_assert_num_queries, make_user, merchant_factory, reward_factory):
    """Given residents with points in two lots each and two rewards of two merchants (so nothing is counted
    once by luck), a redemption that spends from both lots costs exactly REDEEM_QUERIES statements, with a
    per-resident limit too (its upsert is inside the one statement). No savepoint, no BEGIN/COMMIT of its own."""
    (shop_a, _), (shop_b, _) = merchant_factory(), merchant_factory()
    popular = reward_factory(shop_a, points_cost=150, stock=10)
    limited = reward_factory(shop_b, points_cost=20, stock=10, limit_count=2, limit_period=Reward.Period.DAY)
    resident, other = make_user(), make_user()
    for user in (resident, other):
        give_points(user, 100)
        give_points(user, 100, months=24)
    client = client_for(resident)
    assert client.get("/api/v1/me").status_code == 200  # warm: the auth cache holds the user row
    assert redeem(client_for(other), popular.pk).status_code == 201  # warm: accounts exist, others' rows too

    with django_assert_num_queries(REDEEM_QUERIES) as captured:
        response = redeem(client, popular.pk)
    assert response.status_code == 201, response.json()
    sql = " ".join(q["sql"] for q in captured.captured_queries).upper()
    assert "SAVEPOINT" not in sql and "FOR UPDATE" not in sql
    with django_assert_num_queries(REDEEM_QUERIES):
        assert redeem(client, limited.pk).status_code == 201

    assert balance(resident) == 200 - 150 - 20
    voucher = Voucher.objects.get(code=response.json()["code"])
    consumed = LotConsumption.objects.filter(transaction__source_id=voucher.pk, transaction__source_type="voucher")
    assert sorted(c.amount for c in consumed) == [50, 100]  # soonest expiry first: all of one lot, half the next
    assert PointsLot.objects.filter(account__key=f"resident:{resident.pk}:points", remaining=0).count() == 1
    assert Reward.objects.get(pk=popular.pk).stock == 8
    assert_rewards_invariants()


@pytest.mark.django_db(transaction=True)
@requires_postgres
def test_a_replay_costs_no_ledger_work(django_assert_num_queries, resident, shop, reward_factory):
    """The same key again: the claim INSERT meets the unique index (ON CONFLICT DO NOTHING: the statement writes
    nothing and returns NULL) and the first voucher is answered; nothing reaches the ledger or the stock."""
    reward = reward_factory(shop[0], points_cost=10, stock=5)
    give_points(resident, 100)
    client = client_for(resident)
    first = redeem(client, reward.pk, key="same-key")
    # the statement (nothing written), the first voucher; the user row comes from the auth cache
    with django_assert_num_queries(2):
        again = redeem(client, reward.pk, key="same-key")
    assert again.status_code == 201 and again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert Reward.objects.get(pk=reward.pk).stock == 4 and balance(resident) == 90


@pytest.mark.django_db
def test_voucher_representation_equals_drfs_generic_output(resident, shop, reward_factory):
    """VoucherSerializer writes its fields out by hand (the hot path); DRF's generic ModelSerializer output of
    the same declared fields must be identical, in every state a voucher can be in."""
    merchant, staff = shop
    reward = reward_factory(merchant, points_cost=10, stock=5, title_en="Coffee")
    give_points(resident, 100)
    client = client_for(resident)
    codes = [redeem(client, reward.pk).json()["code"] for _ in range(3)]
    staff.client.post(f"/api/v1/merchant/vouchers/{codes[0]}/redeem")
    client.post(f"/api/v1/me/vouchers/{codes[1]}/cancel")
    vouchers = list(Voucher.objects.select_related("reward", "merchant").filter(code__in=codes))
    assert {v.status for v in vouchers} == {"issued", "redeemed", "cancelled"}
    vouchers[0].expires_at = timezone.now() + timedelta(microseconds=7)  # DRF's formatting of microseconds
    for voucher in vouchers:
        serializer = VoucherSerializer(voucher)
        assert serializer.data == serializers.ModelSerializer.to_representation(serializer, voucher)
    many = VoucherSerializer(vouchers, many=True).data
    assert [dict(v) for v in many] == [VoucherSerializer(v).data for v in vouchers]
