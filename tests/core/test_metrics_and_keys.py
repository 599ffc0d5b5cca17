"""/metrics needs the bearer token; production refuses keys that are unset or fall back to SECRET_KEY."""

import pytest

from tests.core.test_settings_and_schema import REAL_SECRET, run_manage

GOOD = {
    "SECRET_KEY": REAL_SECRET,
    "DATABASE_URL": "postgres://u:p@127.0.0.1:1/x",
    "REDIS_URL": "redis://127.0.0.1:1/0",
    "FIELD_HASH_KEY": "h" + REAL_SECRET[1:],
    "FIELD_ENCRYPTION_KEY": "l1ZCqXzKE7RJfmw0a2m0m7yvMpG4xu0y1p4mGfXfH2c=",
    "JWT_SIGNING_KEY": "j" + REAL_SECRET[1:],
    "STRIPE_SECRET_KEY": "sk_live_example",
    "STRIPE_WEBHOOK_SECRET": "whsec_example",
}


@pytest.mark.django_db
def test_metrics_needs_the_bearer_token(client, settings):
    settings.METRICS_TOKEN = "m" * 40
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    ok = client.get("/metrics", HTTP_AUTHORIZATION="Bearer " + "m" * 40)
    assert ok.status_code == 200 and b"django_http_requests" in ok.content


@pytest.mark.django_db
def test_metrics_closed_without_a_token(client, settings):
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 401


KEYS = ["FIELD_HASH_KEY", "FIELD_ENCRYPTION_KEY", "JWT_SIGNING_KEY"]


@pytest.mark.parametrize("value", ["", REAL_SECRET], ids=["unset", "equal_to_secret_key"])
def test_production_refuses_keys_unset_or_equal_to_secret_key(value):
    # One start-up names every offending key, so one run checks all three.
    result = run_manage("check", DJANGO_ENV="production", **(GOOD | dict.fromkeys(KEYS, value)))
    assert result.returncode != 0
    assert "Refusing to start" in result.stderr
    for name in KEYS:
        assert f"{name} must be set and differ from SECRET_KEY" in result.stderr, result.stderr[-500:]


def test_production_starts_with_separate_keys():
    result = run_manage("check", DJANGO_ENV="production", **GOOD)
    assert result.returncode == 0, result.stderr[-800:]
