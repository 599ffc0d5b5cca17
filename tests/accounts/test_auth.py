import threading

import pytest
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken

from backend.accounts.models import Consent, User
from backend.accounts.phones import phone_hash
from tests.conftest import PASSWORD, client_for, next_phone, requires_postgres

REGISTER = "/api/v1/auth/register"
TOKEN = "/api/v1/auth/token"
REFRESH = "/api/v1/auth/token/refresh"


def register(api, phone, **extra):
    body = {"phone": phone, "password": PASSWORD, "display_name": "小王", "district": "370202", **extra}
    return api.post(REGISTER, body, format="json")


@pytest.mark.django_db
def test_register_stores_phone_hashed_encrypted_and_answers_masked(api):
    response = register(api, "+86 138-0013-8000", partner_data_consent=True)

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["phone"] == "138****8000"
    assert body["role"] == "resident" and body["district"] == "370202"
    user = User.objects.get(pk=body["id"])
    assert user.phone_hash == phone_hash("+8613800138000")
    assert "13800138000" not in user.phone_encrypted and user.phone_encrypted
    assert user.password.startswith("argon2")
    kinds = set(Consent.objects.filter(user=user).values_list("kind", flat=True))
    assert kinds == {"privacy_policy", "partner_data"}


@pytest.mark.django_db
def test_register_without_separate_consent_records_only_the_policy(api):
    response = register(api, next_phone())
    assert response.status_code == 201
    assert list(Consent.objects.filter(user_id=response.json()["id"]).values_list("kind", flat=True)) == [
        "privacy_policy"
    ]


@pytest.mark.django_db
def test_register_same_phone_twice_is_a_conflict(api):
    phone = next_phone()
    assert register(api, phone).status_code == 201
    response = register(api, "+86" + phone)
    assert response.status_code == 409
    assert response.json() == {
        "type": "client_error",
        "errors": [{"code": "phone_taken", "detail": response.json()["errors"][0]["detail"], "attr": "phone"}],
    }


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("field", "value", "code"),
    [("phone", "12345", "phone_invalid"), ("district", "999999", "invalid"), ("password", "12345678", "invalid")],
)
def test_register_rejects_bad_input_with_field_codes(api, field, value, code):
    body = {"phone": next_phone(), "password": PASSWORD, "display_name": "x", "district": "370202", field: value}
    response = api.post(REGISTER, body, format="json")
    assert response.status_code == 400
    payload = response.json()
    assert payload["type"] == "validation_error"
    assert payload["errors"][0]["attr"] == field
    assert all(set(e) == {"code", "detail", "attr"} for e in payload["errors"])
    if field == "phone":
        assert payload["errors"][0]["code"] == code
    assert not User.objects.exists()


@pytest.mark.django_db
def test_login_and_me(api, resident):
    response = api.post(TOKEN, {"phone": resident.raw_phone, "password": PASSWORD}, format="json")
    assert response.status_code == 200
    tokens = response.json()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens['access']}")
    me = api.get("/api/v1/me").json()
    assert me["id"] == resident.id and me["phone"].count("*") == 4


@pytest.mark.django_db
def test_login_wrong_password_is_401_in_error_shape(api, resident):
    response = api.post(TOKEN, {"phone": resident.raw_phone, "password": "nope-nope"}, format="json")
    assert response.status_code == 401
    assert response.json()["errors"][0]["code"] == "invalid_credentials"


@pytest.mark.django_db
def test_refresh_rotates_and_blacklists_the_old_token(api, resident):
    tokens = api.post(TOKEN, {"phone": resident.raw_phone, "password": PASSWORD}, format="json").json()

    rotated = api.post(REFRESH, {"refresh": tokens["refresh"]}, format="json")
    assert rotated.status_code == 200
    assert rotated.json()["refresh"] != tokens["refresh"]
    assert BlacklistedToken.objects.filter(token__token=tokens["refresh"]).exists()

    replay = api.post(REFRESH, {"refresh": tokens["refresh"]}, format="json")
    assert replay.status_code == 401
    assert replay.json()["errors"][0]["code"] == "token_not_valid"
    assert api.post(REFRESH, {"refresh": rotated.json()["refresh"]}, format="json").status_code == 200


@pytest.mark.django_db
def test_logout_blacklists_refresh_token(api, resident):
    tokens = api.post(TOKEN, {"phone": resident.raw_phone, "password": PASSWORD}, format="json").json()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens['access']}")
    assert api.post("/api/v1/auth/logout", {"refresh": tokens["refresh"]}, format="json").status_code == 204
    assert api.post(REFRESH, {"refresh": tokens["refresh"]}, format="json").status_code == 401


@pytest.mark.django_db
def test_logout_refuses_someone_elses_token(api, make_user):
    alice, bob = make_user(), make_user()
    bob_tokens = api.post(TOKEN, {"phone": bob.raw_phone, "password": PASSWORD}, format="json").json()
    response = client_for(alice).post("/api/v1/auth/logout", {"refresh": bob_tokens["refresh"]}, format="json")
    assert response.status_code == 400
    assert api.post(REFRESH, {"refresh": bob_tokens["refresh"]}, format="json").status_code == 200


@pytest.mark.django_db
def test_lockout_after_five_failures_even_for_the_right_password(api, resident):
    for _ in range(5):
        assert api.post(TOKEN, {"phone": resident.raw_phone, "password": "wrong-one"}, format="json").status_code == 401
    locked = api.post(TOKEN, {"phone": resident.raw_phone, "password": PASSWORD}, format="json")
    assert locked.status_code == 429
    assert locked.json()["errors"][0]["code"] == "login_locked"
    assert int(locked["Retry-After"]) > 0


@pytest.mark.django_db
def test_successful_login_resets_the_failure_count(api, resident):
    for _ in range(4):
        api.post(TOKEN, {"phone": resident.raw_phone, "password": "wrong-one"}, format="json")
    assert api.post(TOKEN, {"phone": resident.raw_phone, "password": PASSWORD}, format="json").status_code == 200
    for _ in range(5):
        assert api.post(TOKEN, {"phone": resident.raw_phone, "password": "wrong"}, format="json").status_code == 401


@requires_postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("attempt", range(3))
def test_lockout_holds_under_parallel_attempts(make_user, attempt):
    """20 threads released together with wrong passwords: exactly 5 reach the password check."""
    from django.db import connection
    from rest_framework.test import APIClient

    user = make_user()
    threads_n = 20
    barrier = threading.Barrier(threads_n)
    statuses: list[int] = []
    lock = threading.Lock()

    def attempt_login():
        client = APIClient()
        barrier.wait()
        try:
            code = client.post(TOKEN, {"phone": user.raw_phone, "password": "wrong-pass"}, format="json").status_code
        finally:
            connection.close()
        with lock:
            statuses.append(code)

    threads = [threading.Thread(target=attempt_login) for _ in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert statuses.count(401) == 5
    assert statuses.count(429) == threads_n - 5


@pytest.mark.django_db
def test_login_fails_closed_with_503_while_the_lockout_counter_is_unreachable(api, resident, settings, throwaway_redis):
    from django.test import override_settings

    caches = {"default": {**settings.CACHES["default"], "LOCATION": throwaway_redis.url}}
    if "redis" not in caches["default"]["BACKEND"]:
        pytest.skip("needs the Redis cache (make test)")
    throwaway_redis.stop()
    with override_settings(CACHES=caches):
        response = api.post(TOKEN, {"phone": resident.raw_phone, "password": PASSWORD}, format="json")
    assert response.status_code == 503
    assert response.json()["errors"][0]["code"] == "login_unavailable"
