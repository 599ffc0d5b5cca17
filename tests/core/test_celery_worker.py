import pytest

from backend.celery import app
from backend.core.tasks import heartbeat


def test_celery_configuration_is_crash_safe():
    conf = app.conf
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.broker_transport_options["visibility_timeout"] > conf.task_time_limit
    assert "core-heartbeat" in conf.beat_schedule


@pytest.mark.celery_worker
def test_a_real_worker_consumes_the_queue(celery_worker):
    from django.core.cache import cache

    heartbeat.delay(key="heartbeat:from-test")
    celery_worker.wait_ready()  # the ping goes after our task on the same queue, prefetch 1
    assert cache.get("heartbeat:from-test")
