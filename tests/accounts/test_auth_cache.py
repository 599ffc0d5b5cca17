"""The access token's user row comes from a Redis cache (backend/accounts/authentication.py); deactivation,
suspension and erasure still stop a still-valid access token at once, whatever path changed the row."""

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext

from backend.accounts import authentication as auth
from backend.accounts import services
from backend.accounts.models import User
from rewards import catalogue
from tests.conftest import PASSWORD, client_for, next_phone

pytestmark = pytest.mark.skipif(not hasattr(cache, "delete_pattern"), reason="needs Redis (make test)")


def user_queries(client, path="/api/v1/me/wallet") -> tuple[int, int]:
    with CaptureQueriesContext(connection) as ctx:
        status = client.get(path).status_code
    return status, sum('FROM "accounts_user"' in q["sql"] for q in ctx.captured_queries)


@pytest.mark.django_db
def test_second_request_reads_no_user_row(resident):
    client = client_for(resident)
    assert user_queries(client) == (200, 1)
    assert user_queries(client) == (200, 0)
    assert user_queries(client) == (200, 0)


@pytest.mark.django_db
def test_suspended_users_access_token_is_refused_at_once(resident, make_user):
    """Fails before this change: simplejwt only checked is_active per request, and suspension keeps it True."""
    client = client_for(resident)
    assert client.get("/api/v1/me/wallet").status_code == 200  # cached now
    services.user_set_status(user_id=resident.pk, status=User.Status.SUSPENDED, actor=make_user(role="admin"))
    response = client.get("/api/v1/me/wallet")
    assert response.status_code == 401
    assert response.json()["errors"][0]["code"] == "user_inactive"


@pytest.mark.django_db
def test_erased_users_access_token_is_refused_at_once(resident):
    client = client_for(resident)
    assert client.get("/api/v1/me/wallet").status_code == 200
    services.user_erase(user=resident)
    assert client.get("/api/v1/me/wallet").status_code == 401
    assert client.get("/api/v1/me").status_code == 401


@pytest.mark.django_db
def test_erasure_through_the_api_is_refused_on_the_next_request(resident):
    client = client_for(resident)
    assert client.get("/api/v1/me").status_code == 200
    assert client.delete("/api/v1/me").status_code == 204
    assert client.get("/api/v1/me/ledger").status_code == 401


@pytest.mark.django_db
def test_removed_staff_bulk_update_is_refused_at_once(reference_data):
    """staff_remove deactivates with a bulk UPDATE (no post_save): it drops the cached row itself."""
    merchant = catalogue.merchant_create(name_zh="缓存测试商户", name_en="Shop", district="370202")
    manager = catalogue.staff_add(merchant=merchant, phone=next_phone(), password=PASSWORD, is_manager=True)
    cashier = catalogue.staff_add(merchant=merchant, phone=next_phone(), password=PASSWORD)
    client = client_for(cashier.user)
    assert client.get("/api/v1/me").status_code == 200
    catalogue.staff_remove(merchant=merchant, user_id=cashier.user_id)
    assert client.get("/api/v1/me").status_code == 401
    assert client_for(manager.user).get("/api/v1/me").status_code == 200


@pytest.mark.django_db
def test_profile_change_is_seen_by_the_next_request(resident):
    client = client_for(resident)
    assert client.get("/api/v1/me").json()["display_name"] == "居民"
    user = User.objects.get(pk=resident.pk)
    user.display_name = "新名字"
    user.save(update_fields=["display_name"])
    assert client.get("/api/v1/me").json()["display_name"] == "新名字"


@pytest.mark.django_db(transaction=True)
def test_a_read_racing_the_commit_cannot_put_the_old_row_back(reference_data, make_user):
    """A request that loaded the row before the erasure committed tries to cache it after the commit: the marker
    written by the change (SET NX fails on it) keeps the old row out, and the next request reads the database."""
    resident = make_user()
    stale = User.objects.get(pk=resident.pk)  # what a concurrent request read before the commit
    services.user_erase(user=resident)  # commits (transactional test): marker written on commit
    assert cache.add(auth._auth_key(resident.pk), stale, timeout=30) is False
    assert auth.auth_user_get(resident.pk).status == User.Status.ERASED
    assert client_for(stale).get("/api/v1/me/wallet").status_code == 401


@pytest.mark.django_db
def test_refused_users_are_never_cached(resident):
    User.objects.filter(pk=resident.pk).update(is_active=False)
    cache.delete(auth._auth_key(resident.pk))
    assert auth.auth_user_get(resident.pk).is_active is False
    assert cache.get(auth._auth_key(resident.pk)) is None


@pytest.mark.django_db
def test_redis_down_reads_the_database(resident, monkeypatch):
    def broken(*args, **kwargs):
        raise ConnectionError("redis down")

    monkeypatch.setattr(cache, "get", broken)
    monkeypatch.setattr(cache, "add", broken)
    assert auth.auth_user_get(resident.pk).pk == resident.pk


@pytest.mark.django_db
def test_cache_off_reads_every_time(resident, settings):
    settings.AUTH_USER_CACHE_SECONDS = 0
    client = client_for(resident)
    assert user_queries(client) == (200, 1)
    assert user_queries(client) == (200, 1)


@pytest.mark.django_db
def test_unknown_user_is_refused(resident, api):
    from rest_framework_simplejwt.tokens import AccessToken

    token = AccessToken.for_user(resident)
    token["user_id"] = 2**62
    response = api.get("/api/v1/me/wallet", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 401
    assert response.json()["errors"][0]["code"] == "user_not_found"
