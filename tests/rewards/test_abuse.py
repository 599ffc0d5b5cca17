"""Abuse cases: wrong roles, strange and huge inputs, other people's ids. Always a 4xx in the one error
shape, never a 500, and nothing lost."""

import pytest

from rewards.models import Voucher
from rewards.services import rewards_erase_personal_data
from tests.conftest import client_for
from tests.rewards.helpers import assert_rewards_invariants, balance, give_points, redeem

pytestmark = pytest.mark.django_db


def test_roles(api, make_user, shop, reward_factory, resident_client):
    merchant, staff = shop
    reward = reward_factory(merchant)
    reviewer = client_for(make_user(role="reviewer"))
    assert redeem(api, reward.pk).status_code == 401
    assert redeem(staff.client, reward.pk).status_code == 403
    assert redeem(reviewer, reward.pk).status_code == 403
    assert resident_client.get("/api/v1/merchant/rewards").status_code == 403
    assert resident_client.post("/api/v1/merchant/vouchers/ABCDEFGHJK/redeem").status_code == 403
    assert reviewer.get("/api/v1/merchant/summary").status_code == 403
    admin = client_for(make_user(role="admin"))  # admins act in /admin/, not at a counter
    assert admin.get("/api/v1/merchant/rewards").json()["errors"][0]["code"] == "not_merchant_staff"
    assert api.get("/api/v1/me/vouchers").status_code == 401
    assert staff.client.get("/api/v1/me/vouchers").status_code == 403


@pytest.mark.parametrize(
    "key",
    ["x" * 101, "ключ", "a b", "１２３", "k\x00"],
)
def test_strange_idempotency_keys(resident_client, shop, reward_factory, key):
    reward = reward_factory(shop[0])
    response = redeem(resident_client, reward.pk, key=key)
    assert response.status_code == 400
    assert response.json()["errors"][0]["code"] == "idempotency_key_invalid"


@pytest.mark.parametrize(
    "body",
    [
        [1, 2, 3],
        "text",
        {"a": 1e308},
    ],
)
def test_strange_bodies(resident, resident_client, shop, reward_factory, body):
    reward = reward_factory(shop[0], points_cost=10)
    give_points(resident, 10)
    response = redeem(resident_client, reward.pk, body=body)
    assert response.status_code in (201, 400), response.content


def test_deep_huge_and_odd_requests(resident, resident_client, shop, reward_factory):
    merchant, staff = shop
    reward = reward_factory(merchant, points_cost=10)
    give_points(resident, 10)
    url = f"/api/v1/rewards/{reward.pk}/redeem"
    deep = "[" * 100_000 + "]" * 100_000
    r = resident_client.post(url, deep, content_type="application/json", HTTP_IDEMPOTENCY_KEY="deep")
    assert 400 <= r.status_code < 500
    big = '{"x": "' + "a" * (3 * 1024 * 1024) + '"}'
    r = resident_client.post(url, big, content_type="application/json", HTTP_IDEMPOTENCY_KEY="big")
    assert 400 <= r.status_code < 500
    r = resident_client.post(url, "1e5000", content_type="application/json", HTTP_IDEMPOTENCY_KEY="num")
    assert 400 <= r.status_code < 500
    assert (
        resident_client.post(
            "/api/v1/rewards/99999999999999999999999/redeem", {}, format="json", HTTP_IDEMPOTENCY_KEY="k"
        ).status_code
        == 404
    )
    assert staff.client.post("/api/v1/merchant/vouchers/" + "Z" * 5000 + "/redeem").status_code == 404
    assert (
        staff.client.post("/api/v1/merchant/vouchers/scan", {"qr_payload": "Q" * 100_000}, format="json").status_code
        == 400
    )
    assert (
        staff.client.post("/api/v1/merchant/vouchers/scan", {"qr_payload": {"a": 1}}, format="json").status_code == 400
    )
    assert staff.client.get("/api/v1/merchant/rewards/99999999999999999999999").status_code == 404
    assert (
        staff.client.post(
            "/api/v1/merchant/rewards/99999999999999999999999/stock", {"delta": 1}, format="json"
        ).status_code
        == 404
    )
    for payload in (
        {"title_zh": "x" * 5000, "points_cost": 1},
        {"title_zh": "x", "points_cost": "１２３"},
        {"title_zh": "x", "points_cost": 10**30},
        {"title_zh": "x", "points_cost": -5},
        {"title_zh": "x", "points_cost": 1, "stock": -1},
        {"title_zh": "x", "points_cost": 1, "district": "999999"},
        {
            "title_zh": "x",
            "points_cost": 1,
            "valid_from": "2027-01-01T00:00:00Z",
            "valid_until": "2026-01-01T00:00:00Z",
        },
    ):
        response = staff.client.post("/api/v1/merchant/rewards", payload, format="json")
        assert response.status_code == 400, (payload, response.content)
    assert (
        staff.client.post(f"/api/v1/merchant/rewards/{reward.pk}/stock", {"delta": 10**20}, format="json").status_code
        == 400
    )
    assert staff.client.get("/api/v1/merchant/vouchers?date=2026-02-30").status_code == 400
    assert staff.client.get("/api/v1/merchant/vouchers?status=nope").status_code == 400
    assert balance(resident) == 10 and not Voucher.objects.exists()


def test_erasure_cancels_live_vouchers_and_keeps_settled_ones(make_user, shop, reward_factory):
    from backend.accounts.services import user_erase

    merchant, staff = shop
    reward = reward_factory(merchant, points_cost=10, stock=5)
    resident = make_user()
    give_points(resident, 100)
    client = client_for(resident)
    used = redeem(client, reward.pk).json()["code"]
    staff.client.post(f"/api/v1/merchant/vouchers/{used}/redeem")
    live = redeem(client, reward.pk).json()["code"]
    user_erase(user=resident)

    rewards_erase_personal_data(user=resident)
    rewards_erase_personal_data(user=resident)  # twice: nothing more happens

    assert Voucher.objects.get(code=live).status == "cancelled"
    assert Voucher.objects.get(code=used).status == "redeemed"  # settlement record kept
    assert balance(resident) == 90
    rewards_erase_personal_data(user=staff.user)
    assert not type(staff).objects.filter(pk=staff.pk).exists()
    assert_rewards_invariants()
