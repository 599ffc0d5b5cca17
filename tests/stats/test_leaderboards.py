"""Leaderboards: bumped after commit, equal to PostgreSQL after a Redis flush and rebuild, display names only,
opt-out and erasure, and crediting that survives Redis being down."""

from datetime import timedelta

import pytest
import redis
from django.conf import settings
from django.db.models import Sum
from django.utils import timezone

from backend.core.days import SHANGHAI
from backend.ledger.models import Posting
from backend.stats import leaderboards
from backend.stats.services import leaderboards_rebuild, stats_erase_personal_data
from tests.conftest import client_for
from tests.stats.conftest import flush_boards
from tests.stats.helpers import credit

pytestmark = pytest.mark.django_db
needs_redis = pytest.mark.skipif(not settings.REDIS_URL, reason="needs Redis")


def _this_week_start():
    return leaderboards.current_start("week")


def db_board(scope="city") -> dict[int, int]:
    """This week's grams per listed resident straight from the ledger postings (not from the aggregates)."""
    from backend.actions.models import Action

    start = _this_week_start()
    out: dict[int, int] = {}
    rows = Posting.objects.filter(account__kind="resident", account__name="carbon").values_list(
        "account__owner_id", "amount", "transaction__source_id"
    )
    days = {a.id: a.occurred_at.astimezone(SHANGHAI).date() for a in Action.objects.all()}
    from backend.accounts.models import User

    users = {u.id: u for u in User.objects.all()}
    for owner, amount, source_id in rows:
        u = users[owner]
        if days[source_id] >= start and u.is_active and (scope == "city" or u.district_id == scope):
            out[owner] = out.get(owner, 0) + amount
    hidden = set(leaderboards.LeaderboardPreference.objects.filter(listed=False).values_list("user_id", flat=True))
    return {k: v for k, v in out.items() if v > 0 and k not in hidden}


def redis_board(scope="city") -> dict[int, int]:
    key = leaderboards.board_key("week", _this_week_start(), scope)
    return {int(m): int(s) for m, s in leaderboards.client().zrevrange(key, 0, -1, withscores=True)}


@pytest.fixture
def crowd(make_resident):
    now = timezone.now()
    people = [make_resident(district="370202" if i % 2 else "370203", display_name=f"骑手{i}") for i in range(6)]
    for i, r in enumerate(people):
        for j in range(i + 1):
            credit(r, at=now - timedelta(minutes=j + 1), grams=100 * (i + 1))
    return people


@needs_redis
def test_boards_follow_credits_after_commit(crowd):
    assert redis_board() == db_board()
    assert redis_board("370202") == db_board("370202")


@needs_redis
def test_flushed_redis_rebuilt_equals_the_database(crowd, make_resident):
    # Given boards that drifted (a released pending credit bumps nothing; someone edits Redis by hand)
    extra = make_resident(district="370203")
    credit(extra, at=timezone.now() - timedelta(minutes=3), grams=5000, pending=True, run_hooks=False)
    from backend.actions.models import Action
    from backend.ledger.services import pending_credit_release

    pending_credit_release(idempotency_key=f"action:{Action.objects.get(resident=extra).id}")
    leaderboards.client().zadd(leaderboards.board_key("week", _this_week_start(), "city"), {"999999": 1})
    # When Redis is flushed and the boards rebuilt
    assert flush_boards() > 0
    assert redis_board() == {}
    leaderboards_rebuild()
    # Then every board equals the database
    assert redis_board() == db_board()
    assert redis_board("370203") == db_board("370203")
    assert redis_board("370202") == db_board("370202")
    assert db_board()[extra.id] == 5000


def test_leaderboard_api_names_ranks_and_neighbours(api, crowd):
    body = api.get("/api/v1/leaderboards/week").json()
    assert [e["display_name"] for e in body["entries"]] == [f"骑手{i}" for i in range(5, -1, -1)]
    assert body["entries"][0] == {"rank": 1, "display_name": "骑手5", "grams": 3600, "is_me": False}
    assert body["me"] == [] and body["size"] == 6
    text = str(body)
    assert "139" not in text and "phone" not in text
    me = client_for(crowd[2]).get("/api/v1/leaderboards/week?limit=2").json()
    assert len(me["entries"]) == 2
    assert [(e["rank"], e["is_me"]) for e in me["me"]] == [(2, False), (3, False), (4, True), (5, False), (6, False)]
    district = api.get("/api/v1/leaderboards/month?district=370202").json()
    assert [e["display_name"] for e in district["entries"]] == ["骑手5", "骑手3", "骑手1"]


@pytest.mark.parametrize(
    ("url", "status"),
    [
        ("/api/v1/leaderboards/year", 404),
        ("/api/v1/leaderboards/week?district=999999", 400),
        ("/api/v1/leaderboards/week?limit=0", 400),
        ("/api/v1/leaderboards/week?limit=101", 400),
        ("/api/v1/leaderboards/week?limit=1e5000", 400),
    ],
)
def test_leaderboard_bad_input(api, reference_data, url, status):
    assert api.get(url).status_code == status


def test_opt_out_and_erasure_remove_residents(api, crowd):
    top = crowd[5]
    me = client_for(top)
    assert me.get("/api/v1/me/leaderboard-listing").json() == {"listed": True}
    from django.test import TestCase

    with TestCase.captureOnCommitCallbacks(execute=True):
        assert me.put("/api/v1/me/leaderboard-listing", {"listed": False}, format="json").json() == {"listed": False}
    names = [e["display_name"] for e in api.get("/api/v1/leaderboards/week").json()["entries"]]
    assert "骑手5" not in names
    assert me.get("/api/v1/leaderboards/week").json()["me"] == []
    with TestCase.captureOnCommitCallbacks(execute=True):
        me.put("/api/v1/me/leaderboard-listing", {"listed": True}, format="json")
    assert api.get("/api/v1/leaderboards/week").json()["entries"][0]["display_name"] == "骑手5"
    # Erasure: gone at once (read filter) and from Redis (the erasure hook)
    gone = crowd[4]
    gone.status, gone.is_active, gone.phone_hash = "erased", False, None
    gone.save()
    names = [e["display_name"] for e in api.get("/api/v1/leaderboards/week").json()["entries"]]
    assert "骑手4" not in names
    stats_erase_personal_data(user=gone)
    if settings.REDIS_URL:
        assert gone.id not in redis_board()
        leaderboards_rebuild()
        assert gone.id not in redis_board()


def test_listing_bad_input(resident_client):
    assert resident_client.put("/api/v1/me/leaderboard-listing", {"listed": "maybe"}, format="json").status_code == 400
    assert resident_client.put("/api/v1/me/leaderboard-listing", {}, format="json").status_code == 400


def test_redis_down_never_breaks_crediting_and_reads_fall_back(api, make_resident, monkeypatch, caplog):
    # Given Redis unreachable (a port nobody listens on)
    from tests.conftest import free_port

    dead = redis.Redis(port=free_port(), socket_connect_timeout=0.2, socket_timeout=0.2, decode_responses=True)
    monkeypatch.setattr(leaderboards, "_client", dead)
    monkeypatch.setattr(settings, "REDIS_URL", "redis://127.0.0.1:1/0")
    r = make_resident(display_name="无网")
    # When a credit is posted, its after-commit hook fails
    credit(r, at=timezone.now() - timedelta(minutes=1), grams=42)
    # Then the credit stands, the failure is logged, and the board is served from PostgreSQL
    assert Posting.objects.filter(account__key=f"resident:{r.id}:carbon").aggregate(s=Sum("amount"))["s"] == 42
    assert "leaderboard update skipped" in caplog.text
    body = api.get("/api/v1/leaderboards/week").json()
    assert body["source"] == "database"
    assert body["entries"] == [{"rank": 1, "display_name": "无网", "grams": 42, "is_me": False}]


@needs_redis
def test_leaderboard_query_count(api, crowd, django_assert_num_queries):
    # names of the listed residents in one query, whatever the board's length (two rows of everything)
    with django_assert_num_queries(1):
        body = api.get("/api/v1/leaderboards/week").json()
    assert len(body["entries"]) == 6
    user = client_for(crowd[0])
    with django_assert_num_queries(2):  # the user, the names
        assert len(user.get("/api/v1/leaderboards/week").json()["me"]) == 3


@pytest.mark.django_db(transaction=True)
def test_listing_set_twenty_times_at_once(make_resident):
    import threading

    from django.db import connection

    from backend.stats.models import LeaderboardPreference

    if connection.vendor != "postgresql":
        pytest.skip("row locks")
    me = make_resident()
    barrier, statuses = threading.Barrier(20), []

    def put(i):
        try:
            barrier.wait(5)
            statuses.append(
                client_for(me).put("/api/v1/me/leaderboard-listing", {"listed": i % 2 == 0}, format="json").status_code
            )
        finally:
            connection.close()

    threads = [threading.Thread(target=put, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert statuses == [200] * 20
    assert LeaderboardPreference.objects.filter(user=me).count() == 1
