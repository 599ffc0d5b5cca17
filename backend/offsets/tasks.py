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


@shared_task(
    name="offsets.payables_fund", acks_late=True, reject_on_worker_lost=True, soft_time_limit=100, time_limit=120
)
def payables_fund() -> int:
    """Fund waiting merchant payables oldest first from the reward fund (beat every minute, after each capture
    and each offset payment)."""
    from backend.offsets import settlement

    return settlement.payables_fund()


@shared_task(
    name="offsets.settlements_run", acks_late=True, reject_on_worker_lost=True, soft_time_limit=540, time_limit=600
)
def settlements_run() -> dict:
    """Weekly: settle each merchant's funded payables of the week just ended and pay what is due (once)."""
    from backend.offsets import settlement

    return settlement.settlements_run()
