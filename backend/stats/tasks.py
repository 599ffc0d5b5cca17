"""Celery tasks of the statistics app: each calls one service and is safe to run twice."""

from celery import shared_task

from backend.stats import services


@shared_task(name="stats.aggregate", acks_late=True, reject_on_worker_lost=True, time_limit=600, soft_time_limit=540)
def aggregate() -> dict:
    """Aggregate the ledger since the watermark (idempotent: a second run finds nothing new)."""
    result = services.stats_aggregate()
    return {k: str(v) for k, v in result.items()}


@shared_task(
    name="stats.leaderboards_rebuild", acks_late=True, reject_on_worker_lost=True, time_limit=900, soft_time_limit=840
)
def leaderboards_rebuild() -> dict:
    """Rebuild the current week's and month's leaderboards from PostgreSQL."""
    return services.leaderboards_rebuild()
