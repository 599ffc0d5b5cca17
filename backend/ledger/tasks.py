"""Ledger beat tasks. Each calls one service and is safe to run twice."""

from datetime import date, timedelta

from celery import shared_task

from backend.core.days import local_today
from backend.core.errors import ApplicationError
from backend.ledger import services


@shared_task(
    name="ledger.points_lots_expire", acks_late=True, reject_on_worker_lost=True, soft_time_limit=1500, time_limit=1800
)
def points_lots_expire() -> int:
    """Expire what is left of due points lots (once per lot: the expiry's idempotency key is the lot id)."""
    return services.points_lots_expire()


@shared_task(
    bind=True,
    name="ledger.merkle_root_compute",
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=1500,
    time_limit=1800,
    max_retries=24,
)
def merkle_root_compute(self, day: str | None = None) -> str:
    """Compute the Merkle root of `day` (ISO date; default: yesterday in Asia/Shanghai). Running it twice keeps
    the first root and logs an error if the recomputation differs. While a database transaction begun on that
    day is still open (`day_not_settled`), it retries every five minutes for two hours."""
    target = date.fromisoformat(day) if day else local_today() - timedelta(1)
    try:
        return services.merkle_root_compute(day=target).root
    except ApplicationError as exc:
        if exc.get_codes() != "day_not_settled":
            raise
        raise self.retry(args=[target.isoformat()], countdown=300) from exc


@shared_task(
    name="ledger.balances_reconcile", acks_late=True, reject_on_worker_lost=True, soft_time_limit=1500, time_limit=1800
)
def balances_reconcile() -> int:
    """Nightly: recompute cached balances from postings; report drift (log, metric, admin view)."""
    return services.balances_reconcile().drift_count
