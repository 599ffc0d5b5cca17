"""The per-process cache of verified access tokens (backend/accounts/authentication.py `_VERIFIED`): a token's
signature is checked once, but expiry, tampering and the user-row check still refuse it on every request."""

import time
from datetime import timedelta

import pytest
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from backend.accounts import authentication as auth
from backend.accounts import services
from backend.accounts.models import User


def bearer(token) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def error_code(response) -> str:
    return response.json()["errors"][0]["code"]


@pytest.fixture(autouse=True)
def empty_cache():
    auth._VERIFIED.clear()
    yield
    auth._VERIFIED.clear()


@pytest.mark.django_db
def test_second_use_skips_the_signature_check(resident, monkeypatch):
    token = str(AccessToken.for_user(resident))
    assert bearer(token).get("/api/v1/me/wallet").status_code == 200
    assert token.encode() in auth._VERIFIED

    from rest_framework_simplejwt.backends import TokenBackend

    monkeypatch.setattr(TokenBackend, "decode", lambda *a, **k: pytest.fail("decoded again"))
    assert bearer(token).get("/api/v1/me/wallet").status_code == 200


@pytest.mark.django_db
def test_cached_token_is_refused_once_it_expires(resident):
    token = AccessToken.for_user(resident)
    token.set_exp(lifetime=timedelta(seconds=1))
    raw = str(token)
    assert bearer(raw).get("/api/v1/me/wallet").status_code == 200  # verified and cached
    assert raw.encode() in auth._VERIFIED
    time.sleep(1.2)
    response = bearer(raw).get("/api/v1/me/wallet")
    assert response.status_code == 401
    assert error_code(response) == "token_not_valid"
    assert raw.encode() not in auth._VERIFIED


@pytest.mark.django_db
def test_tampered_token_is_refused_while_the_genuine_one_is_cached(resident, make_user):
    genuine = str(AccessToken.for_user(resident))
    assert bearer(genuine).get("/api/v1/me/wallet").status_code == 200
    header, claims, signature = genuine.split(".")
    # Another user's claims under the genuine signature, and the genuine claims under a changed signature.
    other = str(AccessToken.for_user(make_user())).split(".")[1]
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    for forged in (f"{header}.{other}.{signature}", f"{header}.{claims}.{flipped}", f"{header}.{claims}."):
        response = bearer(forged).get("/api/v1/me/wallet")
        assert response.status_code == 401, forged
        assert error_code(response) == "token_not_valid"
        assert forged.encode() not in auth._VERIFIED


@pytest.mark.django_db
def test_refresh_token_is_not_an_access_token_even_when_cached(resident):
    from rest_framework_simplejwt.tokens import RefreshToken

    refresh = RefreshToken.for_user(resident)
    assert bearer(refresh).get("/api/v1/me/wallet").status_code == 401
    assert bearer(refresh.access_token).get("/api/v1/me/wallet").status_code == 200
    assert str(refresh).encode() not in auth._VERIFIED


@pytest.mark.django_db
def test_cached_token_of_a_suspended_user_is_refused_at_once(resident, make_user):
    token = str(AccessToken.for_user(resident))
    assert bearer(token).get("/api/v1/me/wallet").status_code == 200
    services.user_set_status(user_id=resident.pk, status=User.Status.SUSPENDED, actor=make_user(role="admin"))
    response = bearer(token).get("/api/v1/me/wallet")
    assert response.status_code == 401
    assert error_code(response) == "user_inactive"


@pytest.mark.django_db
def test_cache_stays_bounded(resident, monkeypatch):
    monkeypatch.setattr(auth, "VERIFIED_MAX", 3)
    for _ in range(7):
        assert bearer(AccessToken.for_user(resident)).get("/api/v1/me/wallet").status_code == 200
        assert len(auth._VERIFIED) <= 3


@pytest.mark.django_db
def test_a_request_cannot_change_the_cached_claims(resident):
    raw = str(AccessToken.for_user(resident))
    assert bearer(raw).get("/api/v1/me/wallet").status_code == 200
    token = auth._verified_token(raw.encode())
    token["user_id"] = 2**62
    assert str(auth._verified_token(raw.encode())["user_id"]) == str(resident.pk)
