import logging

import pytest

from backend.core.logging import RedactingFilter, redact


@pytest.mark.parametrize(
    "text",
    [
        "login for 13800138000 failed",
        "phone=+8613800138000",
        "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abc",
        '{"password": "hunter2-secret"}',
        "secret=topsecretvalue",
    ],
)
def test_redaction_removes_personal_data_and_secrets(text):
    cleaned = redact(text)
    for needle in ("13800138000", "eyJhbGciOiJIUzI1NiJ9", "hunter2-secret", "topsecretvalue"):
        assert needle not in cleaned


def test_filter_applies_to_args_and_tracebacks():
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "user %s token=%s", ("13912345678", "abc.def"), None)
    try:
        raise ValueError("phone 13912345678")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    RedactingFilter().filter(record)
    assert "13912345678" not in record.getMessage()
    assert "13912345678" not in record.exc_text


@pytest.mark.django_db
def test_request_id_is_echoed(api):
    response = api.get("/healthz", HTTP_X_REQUEST_ID="abc-123")
    assert response["X-Request-ID"] == "abc-123"
    assert len(api.get("/healthz")["X-Request-ID"]) == 32
