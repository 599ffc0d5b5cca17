"""Nothing is lost and nothing is credited twice when a worker dies or Redis is down."""

import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import override_settings
from django.utils import timezone

from backend.actions.models import Action
from backend.actions.services import binding_create
from tests.actions.helpers import ride, signed_post
from tests.conftest import CeleryWorker, requires_postgres


def wait_until(predicate, timeout=90, interval=0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


def assert_each_processed_exactly_once(expected: int, statuses=("credited",)):
    """Every action left `received` behind, and each credited one has exactly one ledger transaction."""
    from backend.ledger.models import LedgerTransaction

    actions = list(Action.objects.values_list("id", "status", "grams"))
    assert len(actions) == expected
    assert {s for _, s, _ in actions} <= set(statuses)
    credited = {f"action:{i}" for i, s, _ in actions if s == "credited"}
    assert credited
    keys = list(
        LedgerTransaction.objects.filter(idempotency_key__startswith="action:").values_list(
            "idempotency_key", flat=True
        )
    )
    assert len(keys) == len(set(keys))
    assert set(keys) == credited
    assert all(grams > 0 for _, s, grams in actions if s == "credited")
    assert_cap_usage_matches_credited_quantities()


def assert_cap_usage_matches_credited_quantities():
    """Every resident-day's cap usage is exactly what its credited actions took: nothing counted twice."""
    from collections import defaultdict

    from backend.actions.models import DailyCapUsage
    from backend.actions.pipeline import shanghai_day

    taken = defaultdict(int)
    for resident, methodology, at, quantity in Action.objects.filter(status="credited").values_list(
        "resident_id", "methodology", "occurred_at", "credited_quantity"
    ):
        taken[(resident, methodology, shanghai_day(at))] += quantity
    usage = {(u.resident_id, u.methodology, u.day): u.used for u in DailyCapUsage.objects.all()}
    assert {k: v for k, v in usage.items() if v} == {k: v for k, v in taken.items() if v}
    # Each usage row's reservations (one per action that asked for cap) add up to what it has used.
    for u in DailyCapUsage.objects.all():
        assert sum((Decimal(q) for q in u.reservations.values()), Decimal(0)) == u.used


def use_broker(app, url: str) -> None:
    """Point this process's Celery producer at another broker (drop the pooled connections to the old one)."""
    from kombu import pools

    app.conf.broker_url = url
    app._pool = None
    app.amqp._producer_pool = None
    pools.reset()  # kombu keeps producer pools in a process-wide registry: start it afresh


def many_batches(api, partner, residents, batches, per_batch):
    """Rides spread over residents and days so daily caps never bite."""
    base = timezone.now() - timedelta(days=6)
    for b in range(batches):
        items = []
        for i in range(per_batch):
            n = b * per_batch + i
            items.append(
                ride(
                    f"k-{n}",
                    identifier=f"KILL-{n % residents}",
                    distance_km="2",
                    duration_s=600,
                    at=base + timedelta(minutes=(n // residents) * 11),
                )
            )
        assert signed_post(api, partner.pk, partner.secret, {"actions": items}).status_code == 202


@requires_postgres
@pytest.mark.celery_worker
@pytest.mark.django_db(transaction=True)
def test_worker_killed_mid_batch_every_action_credited_once(api, partner_factory, make_user, celery_worker):
    from backend.actions.tasks import reconcile

    partner = partner_factory(methodologies=["bus_ride"])
    residents = 40
    for r in range(residents):
        binding_create(resident=make_user(), kind="transit_card", identifier=f"KILL-{r}")
    celery_worker.kill()  # submissions queue up with nobody consuming
    batches, per_batch = 12, 500
    many_batches(api, partner, residents, batches, per_batch)
    total = batches * per_batch

    celery_worker.start()
    assert wait_until(lambda: Action.objects.filter(status="credited").exists(), timeout=60)
    celery_worker.kill()  # SIGKILL the whole worker mid-stream
    done_at_kill = Action.objects.filter(status="credited").count()
    assert done_at_kill < total, "the worker finished before it could be killed; raise the batch count"

    celery_worker.start()
    reconcile.delay(older_than_s=0)  # the beat entry would do this within a minute
    assert wait_until(lambda: not Action.objects.filter(status="received").exists(), timeout=120)
    # Rides beyond the daily cap of six are `capped` (no ledger entry); the rest credited once each.
    assert_each_processed_exactly_once(total, statuses=("credited", "capped"))


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_redis_stopped_while_partner_submits(api, partner_factory, make_user, throwaway_redis, tmp_path, settings):
    """Broker and cache on a Redis of the test's own; stop it, submit, start it, and everything is credited."""
    import os

    from django.db import connection

    from backend.actions.tasks import reconcile
    from backend.celery import app

    partner = partner_factory(methodologies=["bus_ride"])
    resident = make_user()
    binding_create(resident=resident, kind="transit_card", identifier="REDIS-1")

    caches = {"default": {**settings.CACHES["default"], "LOCATION": throwaway_redis.url}}
    previous_broker = app.conf.broker_url
    app.conf.task_always_eager = False
    use_broker(app, throwaway_redis.url)
    worker = None
    try:
        with override_settings(CACHES=caches, REDIS_URL=throwaway_redis.url):
            throwaway_redis.stop()
            items = [
                ride(
                    f"r-{i}",
                    identifier="REDIS-1",
                    distance_km="1",
                    duration_s=300,
                    at=timezone.now() - timedelta(hours=3, minutes=-10 * i),
                )
                for i in range(3)
            ]
            response = signed_post(api, partner.pk, partner.secret, {"actions": items})
            assert response.status_code == 202
            assert [r["status"] for r in response.json()["results"]] == ["accepted"] * 3
            assert set(Action.objects.values_list("status", flat=True)) == {"received"}

            throwaway_redis.start()
            db = connection.settings_dict
            env = {
                **os.environ,
                "REDIS_URL": throwaway_redis.url,
                "CELERY_TASK_ALWAYS_EAGER": "false",
                "DATABASE_URL": f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST']}:{db['PORT']}/"
                f"{db['NAME']}",
            }
            worker = CeleryWorker(env, settings.CELERY_TASK_DEFAULT_QUEUE, tmp_path / "worker.log")
            worker.start()
            reconcile.delay(older_than_s=0)
            assert wait_until(lambda: not Action.objects.filter(status="received").exists(), timeout=60)
    finally:
        if worker:
            worker.stop()
        use_broker(app, previous_broker)
    assert_each_processed_exactly_once(3)
