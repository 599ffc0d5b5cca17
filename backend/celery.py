"""The Celery app. Every task is safe to run twice: acks_late with reject-on-worker-lost means a task whose
worker dies is delivered again rather than lost, so the services behind tasks are idempotent."""

import gc
import os

from celery import Celery
from celery.schedules import crontab
from celery.signals import worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backend.settings")

# The longest task (the methodology impact preview over a million actions) is bounded by its hard time limit;
# the broker must not hand an unacknowledged task to a second worker before that limit has passed.
TASK_HARD_TIME_LIMIT_S = 30 * 60
VISIBILITY_TIMEOUT_S = TASK_HARD_TIME_LIMIT_S + 15 * 60

# Every periodic task of every app, in one place. Crontabs are Asia/Shanghai (the Celery timezone, set below);
# plain numbers are seconds. Each task is idempotent, so a beat restart that runs one twice does no harm.
BEAT_SCHEDULE = {
    # A worker records that it is consuming the queue (Redis key heartbeat:worker).
    "core-heartbeat": {"task": "core.heartbeat", "schedule": 60.0},
    # Approved versions whose effective_from has come are activated within a minute.
    "methodologies-activate-due": {"task": "methodologies.activate_due_versions", "schedule": 60.0},
    # Ledger, nightly: expire due points lots just after midnight, then compute yesterday's Merkle root once
    # late commits have landed; reconcile cached balances against postings in the quiet hours.
    "ledger-points-expire": {"task": "ledger.points_lots_expire", "schedule": crontab(hour=0, minute=5)},
    "ledger-merkle-root": {"task": "ledger.merkle_root_compute", "schedule": crontab(hour=0, minute=20)},
    "ledger-reconcile": {"task": "ledger.balances_reconcile", "schedule": crontab(hour=3, minute=0)},
    # Partner request nonces older than the replay window are pruned hourly.
    "partners-prune-nonces": {"task": "partners.prune_nonces", "schedule": 3600.0},
    # Actions still `received` after a lost enqueue are processed again; unclaimed actions expire nightly.
    "actions-reconcile": {"task": "actions.reconcile", "schedule": 60.0},
    "actions-expire-unclaimed": {"task": "actions.expire_unclaimed", "schedule": crontab(hour=3, minute=30)},
    # Statistics every minute; leaderboards rebuilt nightly after the ledger's jobs (repairs a Redis outage).
    "stats-aggregate": {"task": "stats.aggregate", "schedule": 60.0},
    "stats-leaderboards-rebuild": {"task": "stats.leaderboards_rebuild", "schedule": crontab(hour=3, minute=40)},
    # Every minute: an unpaid offset reservation is released within a minute of its 30 minutes running out.
    "offsets-expire-reservations": {"task": "offsets.reservations_expire", "schedule": 60.0},
    # Stripe webhook events recorded but not processed (a lost enqueue) are picked up again.
    "offsets-stripe-events-retry": {"task": "offsets.stripe_events_retry", "schedule": 300.0},
    # Merchant settlement: payables waiting for the reward fund are funded as money arrives; each merchant's
    # funded payables of the week just ended are settled on Monday 03:00.
    "offsets-payables-fund": {"task": "offsets.payables_fund", "schedule": 60.0},
    "offsets-settlements-run": {
        "task": "offsets.settlements_run",
        "schedule": crontab(minute=0, hour=3, day_of_week="mon"),
    },
    # Unused vouchers past expires_at: points back to their lots, items back to stock.
    "rewards-vouchers-expire": {"task": "rewards.vouchers_expire", "schedule": 300.0},
}

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
    beat_schedule=BEAT_SCHEDULE,
)
app.autodiscover_tasks()


@worker_process_init.connect
def _freeze_startup_heap(**_kwargs) -> None:
    """Move the objects of start-up (Django, the apps, their modules: ~125k) out of the garbage collector's
    reach. A batch allocates enough to trigger a full collection every few batches, and each one traversed that
    whole heap: about 25 us of a credited action's ~200 us of worker CPU, 8-11 us after (locust/ingest_measure.py
    era figures, issue 17). Nothing of start-up is garbage; what tasks allocate is collected as before."""
    gc.collect()
    gc.freeze()
