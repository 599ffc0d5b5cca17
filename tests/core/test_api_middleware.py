"""The admin's middleware (sessions, Django's request.user, messages) is skipped under /api/
(backend/core/middleware.py): an admin session never reaches the API, while the admin keeps its session, login and
CSRF protection, and API responses keep their security headers."""

import pytest
from django.test import Client

from tests.conftest import PASSWORD, client_for

pytestmark = pytest.mark.django_db


def test_an_admin_session_does_not_authenticate_the_api(make_user):
    admin = make_user(role="admin")
    browser = Client()
    assert browser.login(username=admin.raw_phone, password=PASSWORD)
    assert browser.get("/admin/").status_code == 200  # the session works where it belongs
    response = browser.get("/api/v1/me/wallet")
    assert response.status_code == 401
    assert response.json()["errors"][0]["code"] == "not_authenticated"
    assert "sessionid" not in response.cookies and "Cookie" not in response.get("Vary", "")


def test_api_responses_keep_their_headers_and_set_no_cookie(resident):
    response = client_for(resident).get("/api/v1/me/wallet", HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 200
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Language"] == "en"
    assert not response.cookies


def test_admin_keeps_csrf_protection():
    browser = Client(enforce_csrf_checks=True)
    response = browser.post("/admin/login/", {"username": "x", "password": "y"})
    assert response.status_code == 403  # no CSRF token
    page = browser.get("/admin/login/")
    assert page.status_code == 200 and "csrftoken" in page.cookies
