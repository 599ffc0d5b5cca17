"""Celery tasks of the offsets domain: each calls one service and is safe to run twice."""

from celery import shared_task

from backend.offsets import services


@shared_task(
    name="offsets.stripe_event_process", acks_late=True, reject_on_worker_lost=True, soft_time_limit=100, time_limit=120
)
def stripe_event_process(*, event_id: str) -> str:
    """Apply one recorded Stripe event (once, whatever the number of deliveries)."""
    return services.stripe_event_process(event_id=event_id)


@shared_task(
    name="offsets.reservations_expire", acks_late=True, reject_on_worker_lost=True, soft_time_limit=280, time_limit=300
)
def reservations_expire() -> int:
    """Release unpaid reservations past their time (beat, every minute)."""
    return services.reservations_expire()


@shared_task(
    name="offsets.stripe_events_retry", acks_late=True, reject_on_worker_lost=True, soft_time_limit=100, time_limit=120
)
def stripe_events_retry() -> int:
    """Enqueue events that were recorded but never processed (beat, every five minutes)."""
    return services.stripe_events_retry()
