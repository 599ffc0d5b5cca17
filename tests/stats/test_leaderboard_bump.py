"""The after-commit bump of a batch's credits: listed residents only, summed per board and member, exact."""

from datetime import UTC, datetime

import pytest
from django.conf import settings

from backend.ledger.services import ActionCredit
from backend.stats import leaderboards
from backend.stats.models import LeaderboardPreference
from tests.stats.conftest import flush_boards

pytestmark = [pytest.mark.django_db, pytest.mark.skipif(not settings.REDIS_URL, reason="needs Redis")]


def credits_for(*residents, grams=2**40 + 7):
    now = datetime.now(UTC)
    return [
        ActionCredit(f"bump:{r.id}:{n}", r.id, "bus_ride", grams, 1, "ride", "action", n, now)
        for n, r in enumerate(residents * 2)  # two rides each: one increment of their sum per board
    ]


def board(scope):
    key = leaderboards.board_key("week", leaderboards.current_start("week"), scope)
    return {int(m): int(s) for m, s in leaderboards.client().zrange(key, 0, -1, withscores=True)}


def test_the_bump_leaves_out_opted_out_and_inactive_residents_and_keeps_large_sums_exact(make_resident):
    flush_boards()
    listed, other_district = make_resident(district="370202"), make_resident(district="370203")
    opted_out, inactive = make_resident(district="370202"), make_resident(district="370202", is_active=False)
    LeaderboardPreference.objects.create(user=opted_out, listed=False)
    LeaderboardPreference.objects.create(user=listed, listed=True)
    leaderboards.leaderboards_credits_posted(credits_for(listed, other_district, opted_out, inactive))
    total = 2 * (2**40 + 7)  # exact through JSON and Lua's doubles (below 2^53)
    assert board("city") == {listed.id: total, other_district.id: total}
    assert board("370202") == {listed.id: total}
    assert board("370203") == {other_district.id: total}
