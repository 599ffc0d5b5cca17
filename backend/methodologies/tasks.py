from celery import shared_task

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
