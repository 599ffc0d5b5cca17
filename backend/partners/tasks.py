from celery import shared_task

from backend.partners.services import partner_nonces_prune


@shared_task(name="partners.prune_nonces", acks_late=True, soft_time_limit=120, time_limit=180)
def prune_nonces() -> int:
    """Delete nonces too old to be replayed (their timestamps fail the window check anyway)."""
    return partner_nonces_prune()
