"""Beat wiring, tasks that call one service, and aggregation run twice at once."""

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.db.models import Sum
from django.utils import timezone

from backend.celery import app
from backend.stats import tasks
from backend.stats.models import DailyStat
from tests.stats.helpers import credit


def test_beat_schedules_aggregation_and_nightly_rebuild():
    schedule = app.conf.beat_schedule
    assert schedule["stats-aggregate"]["task"] == "stats.aggregate"
    assert schedule["stats-leaderboards-rebuild"]["task"] == "stats.leaderboards_rebuild"
    assert tasks.aggregate.name == "stats.aggregate" and tasks.aggregate.acks_late


@pytest.mark.django_db
def test_tasks_run_their_service(make_resident):
    credit(make_resident(), at=timezone.now() - timedelta(minutes=1), grams=10, run_hooks=False)
    tasks.aggregate.apply().get()
    tasks.aggregate.apply().get()  # safe twice: nothing counted again
    assert DailyStat.objects.aggregate(s=Sum("grams"))["s"] == 10
    boards = tasks.leaderboards_rebuild.apply().get()
    assert any(key.endswith(":city") and n == 1 for key, n in boards.items())


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("attempt", range(3))
def test_two_aggregations_at_once_count_each_credit_once(make_resident, attempt):
    if connection.vendor != "postgresql":
        pytest.skip("row locks")
    residents = [make_resident() for _ in range(3)]
    for i, r in enumerate(residents):
        credit(r, at=timezone.now() - timedelta(minutes=5), grams=100 + i, run_hooks=False)
    barrier = threading.Barrier(2)
    errors = []

    def run():
        try:
            barrier.wait(5)
            tasks.aggregate.apply().get()
        except Exception as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert not errors
    assert DailyStat.objects.filter(methodology="bus_ride").aggregate(s=Sum("grams"))["s"] == 303
