"""Offsets gauges for /metrics, read from the database at scrape time (backend/core/metrics.py registers them).
Both are cheap reads: the deficit account has a posting per uncovered refund or repayment only, and failed
events are found through a partial index."""

from django.conf import settings
from prometheus_client.core import GaugeMetricFamily


class OffsetsCollector:
    """`offsets_reward_fund_deficit_minor{currency}`: what the reward fund owes after refunds it could not cover;
    `offsets_stripe_events_failed`: Stripe events given up after STRIPE_EVENT_MAX_ATTEMPTS (retry them in the
    admin). Alert on either above zero."""

    def collect(self):
        from backend.offsets.fund import deficit_owed
        from backend.offsets.models import StripeEvent

        deficit = GaugeMetricFamily(
            "offsets_reward_fund_deficit_minor",
            "Refunds the reward fund could not cover, not yet repaid by payments (minor units)",
            labels=["currency"],
        )
        deficit.add_metric([settings.OFFSET_CURRENCY], deficit_owed(settings.OFFSET_CURRENCY))
        yield deficit
        failed = GaugeMetricFamily(
            "offsets_stripe_events_failed", "Stripe events that kept failing and are no longer retried automatically"
        )
        failed.add_metric([], StripeEvent.objects.filter(failed_at__isnull=False).count())
        yield failed
