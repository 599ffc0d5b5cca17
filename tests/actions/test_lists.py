"""List endpoints read with a bounded number of queries, whatever the page holds; residents see only theirs."""

from datetime import timedelta

import pytest
from django.utils import timezone

from backend.actions.services import binding_create
from tests.actions.helpers import ride, signed_post
from tests.conftest import client_for


@pytest.fixture
def busy_resident(api, partner, make_user):
    resident = make_user()
    binding_create(resident=resident, kind="transit_card", identifier="LIST-1")
    start = timezone.now() - timedelta(days=3)
    items = [ride(f"l-{i}", identifier="LIST-1", at=start + timedelta(minutes=50 * i)) for i in range(25)]
    assert signed_post(api, partner.pk, partner.secret, {"actions": items}).status_code == 202
    return resident


@pytest.mark.django_db
def test_my_actions_list_query_count(busy_resident, django_assert_max_num_queries):
    client = client_for(busy_resident)
    with django_assert_max_num_queries(6):
        page = client.get("/api/v1/me/actions", {"page_size": 25}).json()
    assert len(page["results"]) == 25
    assert {a["status"] for a in page["results"]} == {"credited", "capped"}


@pytest.mark.django_db
def test_my_action_detail_query_count(busy_resident, django_assert_max_num_queries):
    client = client_for(busy_resident)
    action_id = client.get("/api/v1/me/actions").json()["results"][0]["id"]
    with django_assert_max_num_queries(6):
        detail = client.get(f"/api/v1/me/actions/{action_id}").json()
    # The stored grams and the breakdown recomputed from version + inputs agree.
    assert detail["breakdown"]["grams"] == detail["grams"]
    assert detail["breakdown"]["parameters"]


@pytest.mark.django_db
def test_actions_filter_by_date_and_methodology(busy_resident):
    from zoneinfo import ZoneInfo

    from backend.actions.models import Action

    client = client_for(busy_resident)
    first = Action.objects.filter(resident=busy_resident).order_by("occurred_at").first()
    day = first.occurred_at.astimezone(ZoneInfo("Asia/Shanghai")).date()
    listed = client.get("/api/v1/me/actions", {"date": day.isoformat(), "page_size": 100}).json()["results"]
    expected = [
        a.id
        for a in Action.objects.filter(resident=busy_resident)
        if a.occurred_at.astimezone(ZoneInfo("Asia/Shanghai")).date() == day
    ]
    assert sorted(a["id"] for a in listed) == sorted(expected)
    assert client.get("/api/v1/me/actions", {"methodology": "metro_ride"}).json()["results"] == []
    assert client.get("/api/v1/me/actions", {"status": "bogus"}).status_code == 400


@pytest.mark.django_db
def test_other_residents_actions_are_404(busy_resident, make_user):
    action_id = client_for(busy_resident).get("/api/v1/me/actions").json()["results"][0]["id"]
    stranger = client_for(make_user())
    assert stranger.get(f"/api/v1/me/actions/{action_id}").status_code == 404
    assert stranger.get("/api/v1/me/actions").json()["results"] == []


@pytest.mark.django_db
def test_review_queue_query_count(api, partner_factory, busy_resident, reviewer, django_assert_max_num_queries):
    other = partner_factory(methodologies=["bus_ride"])
    binding_create(resident=busy_resident, kind="metro_card", identifier="LIST-M")
    start = timezone.now() - timedelta(days=3)
    overlapping = [
        ride(f"o-{i}", kind="metro_card", identifier="LIST-M", at=start + timedelta(minutes=50 * i + 5))
        for i in range(5)
    ]
    signed_post(api, other.pk, other.secret, {"actions": overlapping})
    client = client_for(reviewer)
    with django_assert_max_num_queries(6):
        queue = client.get("/api/v1/admin/reviews").json()["results"]
    assert len(queue) == 5
