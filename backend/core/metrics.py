"""/metrics for Prometheus, behind a bearer token (`Authorization: Bearer $METRICS_TOKEN`; without METRICS_TOKEN
configured it answers 401 to everyone: closed, never public): every gunicorn worker's counters (multiprocess
mode), plus gauges read from the database at scrape time.

Under gunicorn each worker is a process of its own: without PROMETHEUS_MULTIPROC_DIR a scrape shows whichever
worker answered. With it (infra/stack.sh, infra/gunicorn.conf.py) every process writes its samples to files in
that folder and a scrape adds them up. Figures computed elsewhere (the nightly ledger reconciliation runs in a
Celery worker, on another host in production) are read from the database when scraped, not set in a process
memory the scrape never sees."""

import hmac
import os

import prometheus_client
from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from prometheus_client import multiprocess
from prometheus_client.core import GaugeMetricFamily


class LedgerDriftCollector:
    """`ledger_balance_drift_accounts`: drift found by the latest reconciliation run (-1: none has run yet)."""

    def collect(self):
        from backend.ledger.models import ReconciliationRun

        latest = ReconciliationRun.objects.filter(finished_at__isnull=False).order_by("-finished_at").first()
        gauge = GaugeMetricFamily(
            "ledger_balance_drift_accounts",
            "Floored accounts whose cached balance differed from their postings at the latest reconciliation",
        )
        gauge.add_metric([], latest.drift_count if latest else -1)
        yield gauge


def metrics_registry() -> prometheus_client.CollectorRegistry:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = prometheus_client.CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = prometheus_client.CollectorRegistry()
        registry.register(_DefaultRegistryCollector())
    registry.register(LedgerDriftCollector())
    registry.register(_offsets_collector())
    return registry


def _offsets_collector():
    from backend.offsets.metrics import OffsetsCollector  # the reward fund's deficit, failed Stripe events

    return OffsetsCollector()


class _DefaultRegistryCollector:
    """This process's own metrics (runserver, a single worker)."""

    def collect(self):
        yield from prometheus_client.REGISTRY.collect()


@never_cache
def metrics_view(request):
    from backend.core.errors import error_body, error_item

    token = settings.METRICS_TOKEN
    scheme, _, value = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    if not token or scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), token.encode()):
        response = JsonResponse(
            error_body("client_error", [error_item("not_authenticated", "A valid metrics bearer token is required.")]),
            status=401,
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(
        prometheus_client.generate_latest(metrics_registry()), content_type=prometheus_client.CONTENT_TYPE_LATEST
    )
