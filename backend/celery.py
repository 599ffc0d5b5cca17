"""The Celery app. Every task is safe to run twice: acks_late with reject-on-worker-lost means a task whose
worker dies is delivered again rather than lost, so the services behind tasks are idempotent."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backend.settings")

# The longest task (the methodology impact preview over a million actions) is bounded by its hard time limit;
# the broker must not hand an unacknowledged task to a second worker before that limit has passed.
TASK_HARD_TIME_LIMIT_S = 30 * 60
VISIBILITY_TIMEOUT_S = TASK_HARD_TIME_LIMIT_S + 15 * 60

app = Celery("backend")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_time_limit=TASK_HARD_TIME_LIMIT_S,
    task_soft_time_limit=TASK_HARD_TIME_LIMIT_S - 60,
    broker_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT_S},
    broker_connection_retry_on_startup=True,
    task_serializer="json",
    accept_content=["json"],
    timezone="Asia/Shanghai",
    enable_utc=True,
    worker_hijack_root_logger=False,
    # The beat schedule lives in code: each domain app adds its entries in BEAT_SCHEDULE below.
    beat_schedule={"core-heartbeat": {"task": "core.heartbeat", "schedule": 60.0}},
)
app.autodiscover_tasks()


def add_beat_entry(name: str, task: str, schedule, **options) -> None:
    """Domain apps register their periodic tasks here (called from their AppConfig.ready)."""
    app.conf.beat_schedule[name] = {"task": task, "schedule": schedule, **options}
