from datetime import timedelta

from celery import shared_task

from backend.actions import impact, services
from backend.celery import TASK_HARD_TIME_LIMIT_S


@shared_task(name="actions.process_batch", acks_late=True, soft_time_limit=240, time_limit=300)
def process_batch(batch_id: int) -> dict:
    """Process the `received` actions of one partner batch. Safe to run twice (see pipeline.actions_process)."""
    return services.batch_process(batch_id=batch_id)


@shared_task(name="actions.reconcile", acks_late=True, soft_time_limit=540, time_limit=600)
def reconcile(older_than_s: int | None = None) -> int:
    """Beat: process actions left `received` (broker down at submission, worker killed mid-batch)."""
    if older_than_s is None:
        return services.actions_reconcile()
    return services.actions_reconcile(older_than=timedelta(seconds=older_than_s))


@shared_task(name="actions.expire_unclaimed", acks_late=True, soft_time_limit=540, time_limit=600)
def expire_unclaimed() -> int:
    """Beat: delete unclaimed partner records older than 30 days."""
    return services.unclaimed_expire()


@shared_task(
    name="actions.impact_preview_run",
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=TASK_HARD_TIME_LIMIT_S - 60,
    time_limit=TASK_HARD_TIME_LIMIT_S,
)
def impact_preview_run_task(preview_id: int) -> int:
    """Compute one methodology version's impact preview. Safe to run twice: a finished preview is left alone."""
    return impact.impact_preview_run(preview_id=preview_id).id
