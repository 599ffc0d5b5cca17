from celery import shared_task
from django.core.cache import cache
from django.utils import timezone


@shared_task(name="core.heartbeat", acks_late=True, soft_time_limit=20, time_limit=30)
def heartbeat(key: str = "heartbeat:worker") -> str:
    """Record that a worker is consuming the queue (beat sends it every minute; tests use it as a ping)."""
    now = timezone.now().isoformat()
    cache.set(key, now, timeout=300)
    return now
