"""The public catalogue: filters, ordering, the Redis cache and its invalidation, exact query counts."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from rewards.models import Reward
from tests.conftest import client_for, requires_postgres
from tests.rewards.helpers import give_points, redeem


def listed(client, query=""):
    return client.get(f"/api/v1/rewards{query}").json()["results"]


@pytest.mark.django_db
def test_filters_and_ordering(api, merchant_factory, reward_factory, resident):
    (a, _), (b, _) = merchant_factory("370202"), merchant_factory("370203")
    cheap = reward_factory(a, points_cost=10, category="food")
    dear = reward_factory(b, points_cost=500, category="culture")
    reward_factory(a, points_cost=20, status="paused")
    assert [r["id"] for r in listed(api)] == [dear.pk, cheap.pk]
    assert [r["id"] for r in listed(api, "?ordering=points_cost")] == [cheap.pk, dear.pk]
    assert [r["id"] for r in listed(api, "?district=370203")] == [dear.pk]
    assert [r["id"] for r in listed(api, "?category=food")] == [cheap.pk]
    assert [r["id"] for r in listed(api, f"?merchant={b.pk}")] == [dear.pk]
    give_points(resident, 100)
    assert [r["id"] for r in listed(client_for(resident), "?affordable=true")] == [cheap.pk]
    assert api.get("/api/v1/rewards?affordable=true").status_code == 401
    assert api.get("/api/v1/rewards?district=x").status_code == 400
    assert api.get("/api/v1/rewards?merchant=99999999999999999999999").status_code == 400
    assert api.get(f"/api/v1/rewards/{cheap.pk}").json()["merchant"]["id"] == a.pk
    assert api.get("/api/v1/rewards/99999999999999999999999").status_code == 404


@pytest.mark.django_db(transaction=True)
@requires_postgres
def test_no_stale_read_after_a_change(api, shop, reward_factory, resident):
    """The list is served from Redis (no query at all the second time), yet every change through a service is
    visible on the very next read: the cache version is bumped when the change commits."""
    merchant, staff = shop
    reward = reward_factory(merchant, points_cost=10, stock=5)
    give_points(resident, 100)
    assert listed(api)[0]["stock"] == 5
    with CaptureQueriesContext(connection) as queries:
        assert listed(api)[0]["stock"] == 5
    assert len(queries) == 0  # a cache hit
    Reward.objects.filter(pk=reward.pk).update(stock=4)  # behind the services' back: the cache does not know
    assert listed(api)[0]["stock"] == 5  # (which proves the page really is cached)

    assert redeem(client_for(resident), reward.pk).status_code == 201
    assert listed(api)[0]["stock"] == 3
    staff.client.post(f"/api/v1/merchant/rewards/{reward.pk}/stock", {"delta": 7}, format="json")
    assert listed(api)[0]["stock"] == 10
    staff.client.patch(f"/api/v1/merchant/rewards/{reward.pk}", {"points_cost": 11}, format="json")
    assert listed(api)[0]["points_cost"] == 11
    staff.client.post(f"/api/v1/merchant/rewards/{reward.pk}/pause")
    assert listed(api) == []
    staff.client.post(f"/api/v1/merchant/rewards/{reward.pk}/resume")
    assert len(listed(api)) == 1


@pytest.mark.django_db
def test_catalogue_works_when_redis_is_down(api, shop, reward_factory, settings):
    settings.CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.2, "SOCKET_TIMEOUT": 0.2},
        }
    }
    from django.core.cache import caches

    caches._settings = None
    if hasattr(caches._connections, "default"):
        del caches._connections.default
    reward_factory(shop[0])
    try:
        assert len(listed(api)) == 1
    finally:
        del caches._connections.default


@pytest.mark.django_db
def test_list_query_counts_are_exact(api, django_assert_num_queries, merchant_factory, reward_factory, make_user):
    (a, a_staff), (b, _) = merchant_factory(), merchant_factory()
    resident = make_user()
    give_points(resident, 1000)
    client = client_for(resident)
    for m in (a, b, a, b):
        reward = reward_factory(m, points_cost=10)
        redeem(client, reward.pk)
        code = redeem(client, reward.pk).json()["code"]
        if m == a:
            a_staff.client.post(f"/api/v1/merchant/vouchers/{code}/redeem")
    with django_assert_num_queries(1):  # the page (a cache miss; anonymous)
        assert len(api.get("/api/v1/rewards").json()["results"]) == 4
    # The users' rows are in the auth cache (backend/accounts/authentication.py) after their earlier requests.
    with django_assert_num_queries(1):  # vouchers with reward and merchant
        assert len(client.get("/api/v1/me/vouchers").json()["results"]) == 8
    with django_assert_num_queries(2):  # merchant link, rewards
        assert len(a_staff.client.get("/api/v1/merchant/rewards").json()["results"]) == 2
    with django_assert_num_queries(2):  # merchant link, vouchers with reward
        assert len(a_staff.client.get("/api/v1/merchant/vouchers").json()["results"]) == 2
    with django_assert_num_queries(2):  # merchant link, the grouped summary
        assert a_staff.client.get("/api/v1/merchant/summary").json()[0]["vouchers"] == 2
