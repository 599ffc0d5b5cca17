from celery import shared_task

from backend.celery import TASK_HARD_TIME_LIMIT_S
from backend.methodologies import services


@shared_task(
    name="methodologies.activate_due_versions",
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=50,
    time_limit=60,
)
def activate_due_versions_task() -> list[int]:
    """Beat, every minute: activate approved versions whose effective_from has come (retiring their
    predecessors). Safe to run twice: a second run finds nothing due."""
    return services.versions_activate_due()


@shared_task(
    name="methodologies.impact_preview_run",
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=TASK_HARD_TIME_LIMIT_S - 60,
    time_limit=TASK_HARD_TIME_LIMIT_S,
)
def impact_preview_run_task(preview_id: int) -> int:
    """Compute one impact preview. Safe to run twice: a finished preview is left alone."""
    return services.impact_preview_run(preview_id=preview_id).id
