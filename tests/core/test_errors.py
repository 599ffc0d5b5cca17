"""Every error, whatever raised it, has the one shape."""

import pytest
from django.test import Client

from tests.conftest import PASSWORD, requires_postgres


def assert_error_shape(response, status, error_type, code=None):
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) >= {"type", "errors"}
    assert body["type"] == error_type
    assert body["errors"], body
    for item in body["errors"]:
        assert set(item) == {"code", "detail", "attr"}
        assert item["code"] and item["code"] == item["code"].lower() and " " not in item["code"]
    if code:
        assert body["errors"][0]["code"] == code
    return body


@pytest.mark.django_db
def test_400_validation(api):
    body = assert_error_shape(api.post("/api/v1/auth/register", {}, format="json"), 400, "validation_error")
    assert {e["attr"] for e in body["errors"]} >= {"phone", "password", "display_name", "district"}


@pytest.mark.django_db
def test_400_malformed_json(api):
    response = api.generic("POST", "/api/v1/auth/token", "{not json", content_type="application/json")
    assert_error_shape(response, 400, "client_error", "parse_error")


@pytest.mark.django_db
def test_401_without_token(api):
    assert_error_shape(api.get("/api/v1/me"), 401, "client_error", "not_authenticated")


@pytest.mark.django_db
def test_401_with_garbage_token(api):
    api.credentials(HTTP_AUTHORIZATION="Bearer garbage")
    assert_error_shape(api.get("/api/v1/me"), 401, "client_error", "token_not_valid")


@pytest.mark.django_db
@pytest.mark.urls("tests.core.error_urls")
def test_403_role(resident_client, reviewer_client):
    assert_error_shape(resident_client.get("/api/v1/test/reviewer-only"), 403, "client_error", "permission_denied")
    assert reviewer_client.get("/api/v1/test/reviewer-only").status_code == 200


@pytest.mark.django_db
def test_404_unknown_url_inside_and_outside_the_api(api):
    assert_error_shape(api.get("/api/v1/nothing-here"), 404, "client_error", "not_found")
    assert_error_shape(Client().get("/nothing/at/all"), 404, "client_error", "not_found")


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/api/v1/nothing-here", "/api/v2/wallet", "/api/", "/api/v1/me/wallet/extra"])
def test_404_inside_the_api_is_json_under_debug_too(api, settings, path):
    """`make run` runs with DEBUG: Django would answer its HTML debug page for an unknown URL."""
    settings.DEBUG = True
    assert_error_shape(api.get(path), 404, "client_error", "not_found")
    assert_error_shape(api.post(path, {}, format="json"), 404, "client_error", "not_found")


@pytest.mark.django_db
def test_405(api):
    assert_error_shape(api.put("/api/v1/districts", {}, format="json"), 405, "client_error", "method_not_allowed")


@pytest.mark.django_db
def test_429_login_lockout(api, resident):
    for _ in range(5):
        api.post("/api/v1/auth/token", {"phone": resident.raw_phone, "password": "wrong-one"}, format="json")
    response = api.post("/api/v1/auth/token", {"phone": resident.raw_phone, "password": PASSWORD}, format="json")
    assert_error_shape(response, 429, "client_error", "login_locked")


@pytest.mark.django_db
@pytest.mark.django_db
def test_429_throttle_body(api):
    from rest_framework.throttling import SimpleRateThrottle

    original = SimpleRateThrottle.THROTTLE_RATES
    SimpleRateThrottle.THROTTLE_RATES = {**original, "anon": "1/min"}
    try:
        assert api.get("/api/v1/districts").status_code == 200  # public view: only the throttle applies
        response = api.get("/api/v1/districts")
    finally:
        SimpleRateThrottle.THROTTLE_RATES = original
    assert_error_shape(response, 429, "client_error", "throttled")
    assert int(response["Retry-After"]) > 0


@pytest.mark.django_db
@pytest.mark.urls("tests.core.error_urls")
def test_500_unhandled_in_api_view(caplog):
    client = Client(raise_request_exception=False)
    with caplog.at_level("ERROR"):
        response = client.get("/api/v1/test/boom")
    body = assert_error_shape(response, 500, "server_error", "server_error")
    assert "boom" not in str(body)  # internals never leak to the client


@pytest.mark.django_db
@pytest.mark.urls("tests.core.error_urls")
def test_500_unhandled_in_plain_django_view():
    response = Client(raise_request_exception=False).get("/test/plain-boom")
    assert_error_shape(response, 500, "server_error", "server_error")


@pytest.mark.django_db
def test_error_messages_follow_accept_language(api):
    zh = api.get("/api/v1/me", HTTP_ACCEPT_LANGUAGE="zh-hans").json()["errors"][0]["detail"]
    en = api.get("/api/v1/me", HTTP_ACCEPT_LANGUAGE="en").json()["errors"][0]["detail"]
    assert en == "Authentication credentials were not provided."
    assert zh != en


@requires_postgres
@pytest.mark.django_db
@pytest.mark.urls("tests.core.error_urls")
@pytest.mark.parametrize("kind", ["deadlock", "serialization", "lock_timeout"])
def test_postgresql_giving_up_for_a_concurrent_transaction_is_503_retry_not_500(kind, caplog):
    """A deadlock used to answer 500 server_error: the request did nothing wrong, its transaction was rolled
    back whole, and the same request again can succeed."""
    from backend.accounts.models import District

    before = District.objects.get(code="370202").name_en
    with caplog.at_level("WARNING"):
        response = Client(raise_request_exception=False).post(
            "/api/v1/test/concurrency-failure", {"kind": kind}, content_type="application/json"
        )
    body = assert_error_shape(response, 503, "server_error", "retry")
    assert response["Retry-After"] == "1"
    assert "concurrent'" not in str(body)
    assert District.objects.get(code="370202").name_en == before  # the write before the failure was undone
    assert any("answered 503 retry" in r.getMessage() for r in caplog.records)
