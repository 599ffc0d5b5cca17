from celery import shared_task

from rewards import services


@shared_task(
    name="rewards.vouchers_expire",
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=540,
    time_limit=600,
)
def vouchers_expire() -> int:
    """Expire unused vouchers past `expires_at` (points back to their lots, items back to stock). Each voucher
    once, however often this runs; beat sends it every 5 minutes."""
    return services.vouchers_expire_due()
