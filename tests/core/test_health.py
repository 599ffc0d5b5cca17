import pytest


@pytest.mark.django_db
def test_healthz(api):
    assert api.get("/healthz").json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_ok(api):
    response = api.get("/readyz")
    assert response.status_code == 200, response.json()
    assert response.json()["checks"]["database"] == "ok"
    assert response.json()["checks"]["migrations"] == "ok"


@pytest.mark.django_db
def test_readyz_503_names_redis_while_it_is_stopped(api, settings, throwaway_redis):
    settings.REDIS_URL = throwaway_redis.url
    assert api.get("/readyz").status_code == 200

    throwaway_redis.stop()

    response = api.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["type"] == "server_error"
    assert body["checks"]["redis"] == "unavailable" and body["checks"]["database"] == "ok"
    assert [e["attr"] for e in body["errors"]] == ["redis"]
    assert body["errors"][0]["code"] == "dependency_unavailable"


@pytest.mark.django_db
def test_metrics_and_docs_are_served(api, settings):
    settings.METRICS_TOKEN = "scrape-token"
    metrics = api.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-token")
    assert metrics.status_code == 200 and b"django_http_requests" in metrics.content
    assert api.get("/api/docs/").status_code == 200
    assert api.get("/api/redoc/").status_code == 200
    schema = api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
