"""Merchant API: own rewards, stock, image, vouchers, summary, staff; isolation between merchants (404)."""

import io
import json
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone
from PIL import Image

from rewards.models import Merchant, MerchantStaff, Reward
from tests.conftest import PASSWORD, client_for, next_phone
from tests.rewards.helpers import give_points, redeem

pytestmark = pytest.mark.django_db


def codes(response):
    return [e["code"] for e in response.json()["errors"]]


def png(size=(64, 48), color="green", fmt="PNG") -> io.BytesIO:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format=fmt)
    buf.seek(0)
    buf.name = "pic.png"
    return buf


def test_create_merchant_command_prints_json():
    out = io.StringIO()
    call_command(
        "create_merchant",
        "--name=海边咖啡",
        "--district=370202",
        f"--staff-phone={next_phone()}",
        f"--staff-password={PASSWORD}",
        "--json",
        stdout=out,
    )
    payload = json.loads(out.getvalue())
    assert set(payload) == {"merchant_id", "staff_user_id"}
    staff = MerchantStaff.objects.get(user_id=payload["staff_user_id"])
    assert staff.merchant_id == payload["merchant_id"] and staff.is_manager
    assert staff.user.role == "merchant_staff"
    assert Merchant.objects.get(pk=payload["merchant_id"]).district_id == "370202"


def test_merchant_manages_its_rewards(shop):
    _merchant, staff = shop
    c = staff.client
    created = c.post(
        "/api/v1/merchant/rewards",
        {"title_zh": "咖啡", "points_cost": 300, "stock": 10, "limit_count": 1, "limit_period": "day"},
        format="json",
    )
    assert created.status_code == 201, created.json()
    rid = created.json()["id"]
    assert c.patch(f"/api/v1/merchant/rewards/{rid}", {"title_en": "Coffee"}, format="json").json()["title_en"] == (
        "Coffee"
    )
    assert c.post(f"/api/v1/merchant/rewards/{rid}/stock", {"delta": 5}, format="json").json()["stock"] == 15
    too_many = c.post(f"/api/v1/merchant/rewards/{rid}/stock", {"delta": -16}, format="json")
    assert too_many.status_code == 409 and codes(too_many) == ["stock_insufficient"]
    assert c.post(f"/api/v1/merchant/rewards/{rid}/pause").json()["status"] == "paused"
    assert c.post(f"/api/v1/merchant/rewards/{rid}/resume").json()["status"] == "active"
    assert c.post(f"/api/v1/merchant/rewards/{rid}/archive").json()["status"] == "archived"
    assert codes(c.post(f"/api/v1/merchant/rewards/{rid}/resume")) == ["reward_status_invalid"]
    assert [r["id"] for r in c.get("/api/v1/merchant/rewards").json()["results"]] == [rid]
    bad = c.post("/api/v1/merchant/rewards", {"title_zh": "x", "points_cost": 1, "limit_count": 2}, format="json")
    assert bad.status_code == 400 and codes(bad) == ["limit_invalid"]


def test_image_is_reencoded_and_bounded(shop, reward_factory):
    merchant, staff = shop
    reward = reward_factory(merchant)
    url = f"/api/v1/merchant/rewards/{reward.pk}/image"
    ok = staff.client.post(url, {"image": png()}, format="multipart")
    assert ok.status_code == 200, ok.json()
    stored = Reward.objects.get(pk=reward.pk).image
    with Image.open(stored.path) as img:
        assert img.format == "JPEG"
    garbage = io.BytesIO(b"not an image at all" * 10)
    garbage.name = "x.png"
    assert codes(staff.client.post(url, {"image": garbage}, format="multipart")) == ["image_invalid"]
    huge = io.BytesIO(b"\x89PNG\r\n\x1a\n" + b"0" * (2 * 1024 * 1024 + 1))
    huge.name = "big.png"
    assert codes(staff.client.post(url, {"image": huge}, format="multipart")) == ["image_too_large"]
    # a decompression bomb: a tiny file that claims 30000 x 30000 pixels
    bomb = png(size=(1, 1))
    data = bytearray(bomb.getvalue())
    data[16:24] = (30000).to_bytes(4, "big") + (30000).to_bytes(4, "big")
    bomb = io.BytesIO(bytes(data))
    bomb.name = "bomb.png"
    assert staff.client.post(url, {"image": bomb}, format="multipart").status_code == 400


def test_staff_of_one_merchant_never_reach_another(merchant_factory, reward_factory, resident, resident_client):
    (a, a_staff), (_b, b_staff) = merchant_factory(), merchant_factory()
    reward = reward_factory(a, points_cost=10, stock=5)
    give_points(resident, 100)
    code = redeem(resident_client, reward.pk).json()["code"]
    c = b_staff.client
    base = f"/api/v1/merchant/rewards/{reward.pk}"
    for response in [
        c.get(base),
        c.patch(base, {"title_zh": "hijack"}, format="json"),
        c.post(f"{base}/pause"),
        c.post(f"{base}/archive"),
        c.post(f"{base}/stock", {"delta": 100}, format="json"),
        c.post(f"{base}/image", {"image": png()}, format="multipart"),
        c.post(f"/api/v1/merchant/vouchers/{code}/redeem"),
        c.delete(f"/api/v1/merchant/staff/{a_staff.user_id}"),
    ]:
        assert response.status_code == 404, (response.request["PATH_INFO"], response.json())
    assert c.get("/api/v1/merchant/rewards").json()["results"] == []
    assert c.get("/api/v1/merchant/vouchers?status=issued").json()["results"] == []
    assert Reward.objects.get(pk=reward.pk).title_zh != "hijack"
    assert a_staff.client.get("/api/v1/merchant/vouchers?status=issued").json()["results"][0]["code"] == code


def test_vouchers_and_daily_summary(shop, reward_factory, resident, resident_client):
    merchant, staff = shop
    reward = reward_factory(merchant, points_cost=10, face_value_minor=500)
    give_points(resident, 100)
    for _ in range(3):
        code = redeem(resident_client, reward.pk).json()["code"]
        staff.client.post(f"/api/v1/merchant/vouchers/{code}/redeem")
    redeem(resident_client, reward.pk)  # issued, not redeemed
    listed = staff.client.get("/api/v1/merchant/vouchers").json()["results"]
    assert len(listed) == 3 and {v["status"] for v in listed} == {"redeemed"}
    summary = staff.client.get("/api/v1/merchant/summary").json()
    today = timezone.localdate().isoformat()
    assert summary == [{"day": today, "vouchers": 3, "points": 30, "face_value_minor": 1500, "currency": "CNY"}]
    far = (timezone.localdate() - timedelta(days=400)).isoformat()
    assert codes(staff.client.get(f"/api/v1/merchant/summary?date_from={far}")) == ["date_range_invalid"]


def test_manager_adds_and_removes_staff(shop):
    _merchant, manager = shop
    added = manager.client.post(
        "/api/v1/merchant/staff", {"phone": next_phone(), "password": PASSWORD, "display_name": "小王"}, format="json"
    )
    assert added.status_code == 201, added.json()
    member = MerchantStaff.objects.get(user_id=added.json()["user_id"])
    member_client = client_for(member.user)
    assert member_client.get("/api/v1/merchant/rewards").status_code == 200
    forbidden = member_client.post("/api/v1/merchant/staff", {"phone": next_phone(), "password": PASSWORD})
    assert forbidden.status_code == 403 and codes(forbidden) == ["manager_required"]
    assert manager.client.delete(f"/api/v1/merchant/staff/{member.user_id}").status_code == 204
    assert client_for(member.user).get("/api/v1/merchant/rewards").status_code in (401, 403)
    assert len(manager.client.get("/api/v1/merchant/staff").json()["results"]) == 1


def test_admin_screens_render_and_act_through_services(make_user, shop, reward_factory, resident, resident_client):
    from django.test import Client

    merchant, _staff = shop
    reward = reward_factory(merchant, points_cost=10, stock=3)
    give_points(resident, 100)
    code = redeem(resident_client, reward.pk).json()["code"]
    admin_user = make_user(role="admin")
    client = Client()
    assert client.login(username=admin_user.raw_phone, password=PASSWORD)
    voucher_id = type(reward).objects.get(pk=reward.pk).vouchers.get(code=code).pk
    for url in [
        "/admin/rewards/merchant/",
        f"/admin/rewards/merchant/{merchant.pk}/change/",
        "/admin/rewards/reward/",
        f"/admin/rewards/reward/{reward.pk}/change/",
        "/admin/rewards/voucher/",
        f"/admin/rewards/voucher/{voucher_id}/change/",
    ]:
        assert client.get(url).status_code == 200, url
    assert client.get("/admin/rewards/voucher/add/").status_code == 403
    response = client.post("/admin/rewards/reward/", {"action": "pause", "_selected_action": [reward.pk]}, follow=True)
    assert response.status_code == 200
    assert Reward.objects.get(pk=reward.pk).status == "paused"


def test_voucher_expiry_is_on_the_beat_schedule():
    from backend.celery import app

    entry = app.conf.beat_schedule["rewards-vouchers-expire"]
    assert entry["task"] == "rewards.vouchers_expire"
