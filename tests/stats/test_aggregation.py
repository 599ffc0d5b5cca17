"""Daily aggregates: incremental from the watermark, equal to a direct computation from the actions and the
ledger for random data, rebuildable, and never skipping a credit that commits late."""

import random
import threading
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection, transaction
from django.db.models import Sum
from django.utils import timezone

from backend.core.days import day_start
from backend.ledger.models import Posting
from backend.ledger.services import pending_credit_release, pending_credit_reverse, points_spend, transaction_reverse
from backend.stats.aggregation import shanghai_day, stats_aggregate, stats_rebuild
from backend.stats.models import ALL, DailyStat, MonthlyStat, ResidentDay
from tests.stats.helpers import credit, ledger_direct

pytestmark = pytest.mark.django_db
DISTRICTS = ["370202", "370203", "370211"]
METHODS = ["bus_ride", "metro_ride", "bike_ride", "walk_steps"]


def _aggregated() -> dict:
    out = {}
    for r in DailyStat.objects.exclude(methodology=ALL):
        out[(r.day, r.district, r.methodology, r.source)] = {
            "grams": r.grams,
            "points": r.points_issued,
            "actions": r.actions,
            "residents": r.active_residents,
        }
    return out


def _random_history(rng: random.Random, make_resident, n_residents=8, n_actions=60):
    residents = [make_resident(district=rng.choice(DISTRICTS)) for _ in range(n_residents)]
    now = timezone.now()
    actions = []
    for i in range(n_actions):
        pending = rng.random() < 0.25
        a = credit(
            rng.choice(residents),
            at=now - timedelta(days=rng.randint(0, 40), minutes=rng.randint(1, 1400)),
            grams=rng.randint(1, 5000),
            methodology=rng.choice(METHODS),
            source=rng.choice(["partner", "self_report"]) if not pending else "self_report",
            quantity=str(rng.randint(1, 300) / 10),
            pending=pending,
            run_hooks=False,
        )
        actions.append((a, pending))
        if i % 20 == 7:
            stats_aggregate()  # aggregate part-way: increments must add up to the same as one pass
    for a, pending in actions:
        roll = rng.random()
        key = f"action:{a.id}"
        if pending and roll < 0.5:
            pending_credit_release(idempotency_key=key)
        elif pending and roll < 0.8:
            pending_credit_reverse(idempotency_key=key, reason="rejected")
        elif not pending and roll < 0.1:
            txn = Posting.objects.filter(transaction__idempotency_key=key).values_list("transaction_id", flat=True)[0]
            transaction_reverse(transaction_id=txn, reason="correction", idempotency_key=f"fix:{a.id}")
    spent = 0
    for r in residents[:3]:
        balance = r and Posting.objects.filter(account__key=f"resident:{r.id}:points").aggregate(s=Sum("amount"))["s"]
        if balance and balance > 10:
            points_spend(
                resident_id=r.id,
                points=10,
                idempotency_key=f"spend:{r.id}",
                reason="reward",
                source_type="test",
                source_id=r.id,
            )
            spent += 10
    return residents, spent


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_aggregates_equal_direct_computation_from_actions_and_ledger(make_resident, seed):
    # Given random credits, pending credits released or rejected, reversals and spends, aggregated in steps
    rng = random.Random(seed)
    _residents, spent = _random_history(rng, make_resident)
    # When the aggregator catches up
    stats_aggregate()
    # Then every daily cell equals the direct computation, and the totals equal the ledger's
    direct = {k: v for k, v in ledger_direct().items() if v["grams"] or v["points"] or v["actions"]}
    got = {k: v for k, v in _aggregated().items() if v["grams"] or v["points"] or v["actions"]}
    assert got == direct
    ledger_grams = Posting.objects.filter(account__kind="resident", account__name="carbon").aggregate(s=Sum("amount"))
    assert DailyStat.objects.aggregate(s=Sum("grams"))["s"] == ledger_grams["s"]
    assert DailyStat.objects.filter(methodology=ALL).aggregate(s=Sum("points_redeemed"))["s"] == spent
    # and the monthly cells are the days summed
    assert MonthlyStat.objects.aggregate(s=Sum("grams"))["s"] == ledger_grams["s"]
    # and a rebuild of the whole range gives the same rows as the increments did
    before = sorted(
        DailyStat.objects.values_list(
            "day",
            "district",
            "methodology",
            "source",
            "grams",
            "actions",
            "points_issued",
            "points_redeemed",
            "active_residents",
            "quantity",
        )
    )
    days = [d for (d, *_rest) in before]
    stats_rebuild(start=min(days), end=max(days))
    after = sorted(
        DailyStat.objects.values_list(
            "day",
            "district",
            "methodology",
            "source",
            "grams",
            "actions",
            "points_issued",
            "points_redeemed",
            "active_residents",
            "quantity",
        )
    )
    assert after == before


def test_aggregate_is_idempotent_and_incremental(make_resident):
    resident = make_resident(district="370202")
    # Both credits on one Asia/Shanghai day whatever the hour the suite runs (now - 1 h and now - 2 h straddle
    # midnight in Shanghai between 16:00 and 18:00 UTC, which made two rows): yesterday's noon and an hour before.
    now = day_start(shanghai_day(timezone.now()) - timedelta(days=1)) + timedelta(hours=13)
    credit(resident, at=now - timedelta(hours=1), grams=100, run_hooks=False)
    stats_aggregate()
    stats_aggregate()  # nothing new: nothing counted twice
    assert DailyStat.objects.aggregate(s=Sum("grams"))["s"] == 100
    credit(resident, at=now - timedelta(hours=2), grams=50, run_hooks=False)
    stats_aggregate()
    assert DailyStat.objects.aggregate(s=Sum("grams"))["s"] == 150
    row = DailyStat.objects.get(methodology="bus_ride")
    assert (row.actions, row.active_residents) == (2, 1)
    assert ResidentDay.objects.get(methodology="bus_ride").quantity == 3


def test_aggregation_in_small_slices_equals_one_pass(make_resident):
    residents = [make_resident() for _ in range(3)]
    now = timezone.now()
    for i in range(7):
        credit(residents[i % 3], at=now - timedelta(days=i % 2, minutes=i), grams=10 + i, run_hooks=False)
    from backend.ledger.models import LedgerTransaction

    result = stats_aggregate(slice_transactions=2)
    assert result["horizon"] > max(LedgerTransaction.objects.values_list("created_at", flat=True))
    direct = {k: v for k, v in ledger_direct().items() if v["grams"]}
    assert {k: v for k, v in _aggregated().items() if v["grams"]} == direct


def test_new_residents_and_any_methodology_row(make_resident):
    a = make_resident(district="370202")
    make_resident(district="370202")
    now = timezone.now()
    credit(a, at=now, grams=10, methodology="bus_ride", run_hooks=False)
    credit(a, at=now, grams=10, methodology="metro_ride", run_hooks=False)
    stats_aggregate()
    row = DailyStat.objects.get(day=shanghai_day(now), district="370202", methodology=ALL, source=ALL)
    assert row.new_residents == 2
    assert row.active_residents == 1  # one resident in two methodologies is one active resident


def test_stats_rebuild_command_shows_progress_and_repairs(make_resident):
    resident = make_resident(district="370203")
    at = timezone.now() - timedelta(days=1)
    credit(resident, at=at, grams=700, run_hooks=False)
    stats_aggregate()
    DailyStat.objects.all().delete()
    ResidentDay.objects.all().update(grams=1)  # damage
    err, out = StringIO(), StringIO()
    day = shanghai_day(at).isoformat()
    call_command("stats_rebuild", "--from", day, "--to", day, stdout=out, stderr=err)
    assert "rebuilt 1 day(s)" in out.getvalue()
    assert "ledger" in err.getvalue()  # the progress bar
    assert DailyStat.objects.get(methodology="bus_ride").grams == 700


@pytest.mark.parametrize(
    "args", [["--from", "2026-13-01", "--to", "2026-01-01"], ["--from", "2026-02-01", "--to", "2026-01-01"]]
)
def test_stats_rebuild_command_rejects_bad_ranges(args):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError):
        call_command("stats_rebuild", *args)


@pytest.mark.django_db(transaction=True)
def test_a_credit_committed_late_is_not_skipped(make_resident):
    """A credit whose transaction started first but commits after a later one was aggregated: a watermark on
    ids or on the clock would skip it for ever; the open-transaction horizon waits for it."""
    if connection.vendor != "postgresql":
        pytest.skip("the horizon reads pg_stat_activity")
    slow, fast = make_resident(district="370202"), make_resident(district="370202")
    at = timezone.now() - timedelta(hours=1)
    for r in (slow, fast):  # accounts exist beforehand: the two writers share no row lock
        credit(r, at=at, grams=1, run_hooks=False)
    posted, release = threading.Event(), threading.Event()
    errors = []

    def slow_writer():
        try:
            with transaction.atomic():
                credit(slow, at=at, grams=111, run_hooks=False)
                posted.set()
                assert release.wait(10)
        except Exception as exc:  # surface in the main thread
            errors.append(exc)
        finally:
            connection.close()

    t = threading.Thread(target=slow_writer)
    t.start()
    assert posted.wait(10)
    credit(fast, at=at, grams=222, run_hooks=False)  # committed now, while the slow one is still open
    stats_aggregate()
    release.set()
    t.join(10)
    assert not errors
    stats_aggregate()
    assert DailyStat.objects.filter(methodology="bus_ride").aggregate(s=Sum("grams"))["s"] == 2 + 111 + 222
