"""Redemption, capture at the counter, cancel and expiry through the API (PostgreSQL)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from backend.ledger.models import Account, LedgerTransaction, PointsLot
from rewards import qr
from rewards.models import Reward, RewardLimitUsage, Voucher
from rewards.services import CODE_ALPHABET, vouchers_expire_due
from rewards.tasks import vouchers_expire
from tests.rewards.helpers import assert_rewards_invariants, balance, give_points, hold_total, redeem

pytestmark = pytest.mark.django_db


def codes(response):
    return [e["code"] for e in response.json()["errors"]]


def test_redeem_issues_a_voucher_and_holds_the_points(resident, resident_client, shop, reward_factory):
    merchant, _staff = shop
    reward = reward_factory(merchant, points_cost=120, stock=5, voucher_validity_days=7)
    give_points(resident, 200)

    response = redeem(resident_client, reward.pk)

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["status"] == "issued"
    assert len(body["code"]) >= 10 and set(body["code"]) <= set(CODE_ALPHABET)
    assert body["qr_payload"].startswith("QT1.")
    claims = qr.qr_verify(body["qr_payload"])
    assert claims["c"] == body["code"] and claims["m"] == merchant.pk
    assert body["points_cost"] == 120
    assert balance(resident) == 80
    assert hold_total() == 120
    assert Reward.objects.get(pk=reward.pk).stock == 4
    assert_rewards_invariants()


def test_points_come_from_the_soonest_expiring_lots(resident, resident_client, shop, reward_factory):
    reward = reward_factory(shop[0], points_cost=150)
    now = timezone.now()
    give_points(resident, 100, effective_at=now - timedelta(days=200))  # expires sooner
    give_points(resident, 100, effective_at=now)

    assert redeem(resident_client, reward.pk).status_code == 201

    lots = list(PointsLot.objects.filter(account__key=f"resident:{resident.pk}:points").order_by("expires_at"))
    assert [lot.remaining for lot in lots] == [0, 50]


def test_refusals_have_their_codes(resident, resident_client, shop, reward_factory, make_user):
    merchant = shop[0]
    give_points(resident, 100)
    poor = reward_factory(merchant, points_cost=500)
    assert codes(redeem(resident_client, poor.pk)) == ["insufficient_points"]
    empty = reward_factory(merchant, stock=0)
    assert codes(redeem(resident_client, empty.pk)) == ["reward_out_of_stock"]
    paused = reward_factory(merchant, status="paused")
    assert codes(redeem(resident_client, paused.pk)) == ["reward_not_available"]
    later = reward_factory(merchant, valid_from=timezone.now() + timedelta(days=1))
    assert codes(redeem(resident_client, later.pk)) == ["reward_not_available"]
    elsewhere = reward_factory(merchant, district="370203")
    assert codes(redeem(resident_client, elsewhere.pk)) == ["reward_not_available"]
    assert redeem(resident_client, 987654321).status_code == 404
    missing = resident_client.post(f"/api/v1/rewards/{poor.pk}/redeem", {}, format="json")
    assert missing.status_code == 400 and codes(missing) == ["idempotency_key_required"]
    assert balance(resident) == 100 and hold_total() == 0
    assert not Voucher.objects.exists()


@pytest.mark.parametrize("period", ["day", "week", "month", "ever"])
def test_per_resident_limit(resident, resident_client, shop, reward_factory, period):
    reward = reward_factory(shop[0], points_cost=10, limit_count=2, limit_period=period)
    give_points(resident, 100)
    assert redeem(resident_client, reward.pk).status_code == 201
    second = redeem(resident_client, reward.pk).json()
    third = redeem(resident_client, reward.pk)
    assert third.status_code == 409 and codes(third) == ["reward_limit_reached"]
    # cancelling gives the claim back
    assert resident_client.post(f"/api/v1/me/vouchers/{second['code']}/cancel").status_code == 200
    assert redeem(resident_client, reward.pk).status_code == 201
    assert RewardLimitUsage.objects.get(reward=reward).count == 2


def test_idempotency_same_key_same_voucher_other_body_422(resident, resident_client, shop, reward_factory):
    reward = reward_factory(shop[0], points_cost=10, stock=10)
    other = reward_factory(shop[0], points_cost=10)
    give_points(resident, 100)
    first = redeem(resident_client, reward.pk, key="order-1")
    again = redeem(resident_client, reward.pk, key="order-1")
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert balance(resident) == 90 and Reward.objects.get(pk=reward.pk).stock == 9
    reused = redeem(resident_client, reward.pk, key="order-1", body={"note": "x"})
    assert reused.status_code == 422 and codes(reused) == ["idempotency_key_reused"]
    reused = redeem(resident_client, other.pk, key="order-1")
    assert reused.status_code == 422 and codes(reused) == ["idempotency_key_reused"]
    assert Voucher.objects.count() == 1


def test_capture_at_the_counter_moves_the_hold_to_the_merchant(resident, resident_client, shop, reward_factory):
    merchant, staff = shop
    reward = reward_factory(merchant, points_cost=70)
    give_points(resident, 100)
    code = redeem(resident_client, reward.pk).json()["code"]

    done = staff.client.post(f"/api/v1/merchant/vouchers/{code.lower()}/redeem")

    assert done.status_code == 200, done.json()
    assert done.json()["status"] == "redeemed"
    assert Account.objects.get(key=f"merchant:{merchant.pk}:points").balance == 70
    assert hold_total() == 0 and balance(resident) == 30
    again = staff.client.post(f"/api/v1/merchant/vouchers/{code}/redeem")
    assert again.status_code == 409 and codes(again) == ["voucher_already_redeemed"]
    cancel = resident_client.post(f"/api/v1/me/vouchers/{code}/cancel")
    assert codes(cancel) == ["voucher_already_redeemed"]
    assert_rewards_invariants()


def test_scan_checks_signature_expiry_and_merchant(resident, resident_client, shop, merchant_factory, reward_factory):
    merchant, staff = shop
    _other, other_staff = merchant_factory()
    reward = reward_factory(merchant, points_cost=10)
    give_points(resident, 100)
    payload = redeem(resident_client, reward.pk).json()["qr_payload"]
    tampered = payload[:-3] + ("AAA" if not payload.endswith("AAA") else "BBB")
    bad = staff.client.post("/api/v1/merchant/vouchers/scan", {"qr_payload": tampered}, format="json")
    assert bad.status_code == 400 and codes(bad) == ["qr_invalid"]
    garbage = staff.client.post("/api/v1/merchant/vouchers/scan", {"qr_payload": "QT1.e30.x"}, format="json")
    assert codes(garbage) == ["qr_invalid"]
    foreign = other_staff.client.post("/api/v1/merchant/vouchers/scan", {"qr_payload": payload}, format="json")
    assert foreign.status_code == 404 and codes(foreign) == ["voucher_not_found"]
    ok = staff.client.post("/api/v1/merchant/vouchers/scan", {"qr_payload": payload}, format="json")
    assert ok.status_code == 200 and ok.json()["status"] == "redeemed"
    with pytest.raises(Exception) as exc:
        qr.qr_verify(payload, now=timezone.now().timestamp() + 400 * 86400)
    assert exc.value.get_codes() == "voucher_expired"


def test_public_key_endpoint_verifies_payloads_offline(api, resident, resident_client, shop, reward_factory):
    import base64

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    reward = reward_factory(shop[0], points_cost=10)
    give_points(resident, 10)
    payload = redeem(resident_client, reward.pk).json()["qr_payload"]
    key = api.get("/api/v1/rewards/qr-key").json()
    raw = base64.urlsafe_b64decode(key["public_key"] + "==")
    head, _, sig = payload.rpartition(".")
    Ed25519PublicKey.from_public_bytes(raw).verify(base64.urlsafe_b64decode(sig + "=="), head.encode())


def test_cancel_returns_points_to_their_lots_and_stock_once(resident, resident_client, shop, reward_factory):
    reward = reward_factory(shop[0], points_cost=150, stock=3)
    now = timezone.now()
    give_points(resident, 100, effective_at=now - timedelta(days=200))
    give_points(resident, 100, effective_at=now)
    expiries = sorted(PointsLot.objects.values_list("expires_at", flat=True))
    code = redeem(resident_client, reward.pk).json()["code"]

    first = resident_client.post(f"/api/v1/me/vouchers/{code}/cancel")
    second = resident_client.post(f"/api/v1/me/vouchers/{code}/cancel")

    assert first.status_code == 200 and first.json()["status"] == "cancelled"
    assert second.status_code == 409 and codes(second) == ["voucher_cancelled"]
    assert balance(resident) == 200 and hold_total() == 0
    assert Reward.objects.get(pk=reward.pk).stock == 3
    restored = PointsLot.objects.filter(kind="restored").order_by("expires_at")
    assert [(lot.remaining, lot.expires_at) for lot in restored] == [(100, expiries[0]), (50, expiries[1])]
    assert LedgerTransaction.objects.filter(kind="reversal").count() == 1
    assert_rewards_invariants()


def test_expiry_task_returns_points_and_stock_once(resident, resident_client, shop, reward_factory):
    merchant, staff = shop
    reward = reward_factory(merchant, points_cost=40, stock=2, voucher_validity_days=1)
    give_points(resident, 100)
    code = redeem(resident_client, reward.pk).json()["code"]
    live = redeem(resident_client, reward.pk).json()["code"]
    Voucher.objects.filter(code=code).update(expires_at=timezone.now() - timedelta(seconds=1))

    counter = staff.client.post(f"/api/v1/merchant/vouchers/{code}/redeem")
    assert counter.status_code == 409 and codes(counter) == ["voucher_expired"]
    assert vouchers_expire.delay().get() == 1
    assert vouchers_expire_due() == 0

    assert Voucher.objects.get(code=code).status == "expired"
    assert Voucher.objects.get(code=live).status == "issued"
    assert balance(resident) == 60 and Reward.objects.get(pk=reward.pk).stock == 1
    assert codes(staff.client.post(f"/api/v1/merchant/vouchers/{code}/redeem")) == ["voucher_expired"]
    assert codes(resident_client.post(f"/api/v1/me/vouchers/{code}/cancel")) == ["voucher_expired"]
    assert_rewards_invariants()


def test_my_vouchers_lists_only_mine(resident, resident_client, make_user, shop, reward_factory):
    from tests.conftest import client_for

    reward = reward_factory(shop[0], points_cost=10)
    other = make_user()
    give_points(resident, 100)
    give_points(other, 100)
    mine = redeem(resident_client, reward.pk).json()["code"]
    theirs = redeem(client_for(other), reward.pk).json()["code"]
    listed = resident_client.get("/api/v1/me/vouchers").json()["results"]
    assert [v["code"] for v in listed] == [mine]
    assert resident_client.get(f"/api/v1/me/vouchers/{theirs}").status_code == 404
    cancel = resident_client.post(f"/api/v1/me/vouchers/{theirs}/cancel")
    assert cancel.status_code == 404 and codes(cancel) == ["voucher_not_found"]
