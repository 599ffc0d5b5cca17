"""Cached public lists (backend/core/list_cache.py): a page is (version, data) and is served only at the version it
was rendered at; its reads travel in the request's throttle or authentication round trip, so a cached list costs one
Redis round trip and no query, anonymous or signed in."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from backend.core import throttling
from backend.core.list_cache import VersionedListCache
from backend.methodologies import cache as methodology_cache
from tests.conftest import client_for
from tests.core.test_throttling import _round_trips

pytestmark = [
    pytest.mark.skipif(throttling._redis_client() is None, reason="needs Redis (make test)"),
    pytest.mark.django_db,
]


def one_trip_no_query(client, path: str):
    assert client.get(path).status_code == 200  # renders and caches the page (and the user row)
    responses = []
    with CaptureQueriesContext(connection) as queries:
        trips = _round_trips(lambda: responses.append(client.get(path)))
    assert responses[0].status_code == 200
    assert (trips, len(queries)) == (1, 0)
    return responses[0].json()


@pytest.mark.parametrize("signed_in", [False, True], ids=["anonymous", "signed-in"])
def test_cached_lists_cost_one_redis_round_trip(api, seeded, reward_factory, merchant_factory, resident, signed_in):
    """Failed before: throttle, cache version and page were three round trips."""
    merchant, _staff = merchant_factory("370202")
    reward_factory(merchant, points_cost=10)
    client = client_for(resident) if signed_in else api
    assert len(one_trip_no_query(client, "/api/v1/rewards")["results"]) == 1
    assert one_trip_no_query(api, "/api/v1/methodologies")["results"]


def test_a_page_rendered_at_an_older_version_is_not_served(api, seeded):
    lists = methodology_cache.LIST
    first = api.get("/api/v1/methodologies").json()
    request = type("Request", (), {})()
    key = methodology_cache.list_key("testserver", "zh-hans", "")
    version, page = lists.lookup(request, key)
    assert page == first
    lists.store(key, version, {"results": "poisoned"})
    assert api.get("/api/v1/methodologies").json() == {"results": "poisoned"}  # proves the page is this key
    methodology_cache.methodologies_changed()
    bumped, page = lists.lookup(request, key)
    assert bumped > version and page is None
    assert api.get("/api/v1/methodologies").json() == first
    lists.store(key, version, {"results": "stale"})  # a reader that read the old version stores late
    assert api.get("/api/v1/methodologies").json() == first


def test_prefetched_reads_are_this_requests_keys_only(resident, merchant_factory, reward_factory):
    """An `affordable` page depends on the balance: nothing is prefetched for it, and it is still right."""
    from tests.rewards.helpers import give_points

    merchant, _ = merchant_factory("370202")
    cheap, dear = reward_factory(merchant, points_cost=10), reward_factory(merchant, points_cost=500)
    give_points(resident, 100)
    client = client_for(resident)
    assert [r["id"] for r in client.get("/api/v1/rewards").json()["results"]] == [dear.pk, cheap.pk]
    assert [r["id"] for r in client.get("/api/v1/rewards?affordable=true").json()["results"]] == [cheap.pk]
    give_points(resident, 1000)
    assert len(client.get("/api/v1/rewards?affordable=true").json()["results"]) == 2


def test_lookup_without_redis_prefetch_is_one_round_trip_and_creates_the_version():
    lists = VersionedListCache(prefix="t:list", version_key="t:list:version", ttl_s=60)
    from django.core.cache import cache

    cache.delete("t:list:version")
    request = type("Request", (), {})()
    version, page = lists.lookup(request, lists.page_key("a"))
    assert version > 0 and page is None
    lists.store(lists.page_key("a"), version, [1, 2])
    found = []
    assert _round_trips(lambda: found.append(lists.lookup(request, lists.page_key("a")))) == 1
    assert found == [(version, [1, 2])]
    lists.bump()
    assert lists.lookup(request, lists.page_key("a")) == (version + 1, None)


def test_a_bump_is_one_round_trip_and_passes_every_stored_version_even_after_the_key_is_lost():
    """The version key evicted or flushed between a page's store and a change: no later version, however many changes
    follow within the page's TTL, is the one that page was stored at (restarting at 1 counted back up to it and
    served the stale page after a few dozen changes); one round trip, no Lua script."""
    from django.core.cache import cache

    lists = VersionedListCache(prefix="t:lost", version_key="t:lost:version", ttl_s=60)
    request = type("Request", (), {})()
    cache.delete("t:lost:version")
    version, _ = lists.lookup(request, lists.page_key("a"))
    for _ in range(50):  # a page stored at a version some changes in
        lists.bump()
    version, _ = lists.lookup(request, lists.page_key("a"))
    lists.store(lists.page_key("a"), version, ["old"])
    cache.delete("t:lost:version")  # evicted
    assert _round_trips(lists.bump) == 1
    for _ in range(100):  # as many changes again, and more, within the page's TTL
        bumped, page = lists.lookup(request, lists.page_key("a"))
        assert bumped != version and page is None
        lists.bump()
    assert lists.lookup(request, lists.page_key("a"))[0] == bumped + 1
