"""The public methodology list is served from Redis (backend/methodologies/cache.py) and every change to a
methodology or a version is visible to the next request."""

from datetime import timedelta

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from backend.methodologies import services
from backend.methodologies.models import Methodology

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(not hasattr(cache, "delete_pattern"), reason="needs Redis (make test)"),
]


def listed(api, **params) -> tuple[dict, int]:
    with CaptureQueriesContext(connection) as ctx:
        response = api.get("/api/v1/methodologies", {"page_size": 100, **params})
    assert response.status_code == 200
    return {m["code"]: m for m in response.json()["results"]}, len(ctx.captured_queries)


def test_second_read_is_served_from_the_cache(api, reference_data):
    first, queries = listed(api)
    assert queries == 2
    again, queries = listed(api)
    assert (again, queries) == (first, 0)
    other_page_size, queries = listed(api, page_size=5)
    assert queries == 2 and len(other_page_size) == 5  # another query string: its own entry


def test_a_changed_methodology_is_seen_at_once(api, reference_data):
    listed(api)
    bus = Methodology.objects.get(code="bus_ride")
    bus.name_en = "Bus (renamed)"
    bus.save(update_fields=["name_en"])
    items, queries = listed(api)
    assert queries == 2 and items["bus_ride"]["name_en"] == "Bus (renamed)"


def test_scheduled_activation_is_seen_at_once(api, make_user, reviewer):
    """The beat task activates a new version (through the services): the next read shows it."""
    approver = make_user(role="reviewer")
    start = timezone.now() + timedelta(hours=2)
    draft = services.methodology_version_create_draft(code="bus_ride", author=reviewer)
    services.methodology_version_update_draft(version_id=draft.id, actor=reviewer, effective_from=start)
    services.methodology_version_submit(version_id=draft.id, actor=reviewer)
    services.methodology_version_approve(version_id=draft.id, actor=approver, note="ok")
    items, _ = listed(api)
    assert items["bus_ride"]["active_version"]["number"] == 1
    assert services.versions_activate_due(now=start + timedelta(seconds=1)) == [draft.id]
    items, queries = listed(api)
    assert queries == 2 and items["bus_ride"]["active_version"]["number"] == draft.number


def test_redis_down_renders_from_the_database(api, reference_data, monkeypatch):
    def broken(*args, **kwargs):
        raise ConnectionError("redis down")

    monkeypatch.setattr(cache, "get", broken)
    monkeypatch.setattr(cache, "set", broken)
    items, queries = listed(api)
    assert len(items) == 11 and queries == 2
