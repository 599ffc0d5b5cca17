"""URL map: the API under /api/v1/, its schema and docs, probes, metrics and the admin."""

from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from backend.core import errors, health, metrics
from backend.stats.dashboard import dashboard_view

handler400 = "backend.core.errors.handler400"
handler403 = "backend.core.errors.handler403"
handler404 = "backend.core.errors.handler404"
handler500 = "backend.core.errors.handler500"

# Django tries the patterns in order and each miss costs (it records every pattern tried): the residents' hot reads
# (wallet and ledger, actions, methodologies, the catalogue) come first. No two modules share a route, so the order
# changes no answer (tests/core/test_url_order.py).
api_v1 = [
    path("", include("backend.ledger.urls")),
    path("", include("backend.actions.urls")),
    path("", include("backend.methodologies.urls")),
    path("", include("rewards.urls")),
    path("", include("backend.accounts.urls")),
    path("", include("backend.stats.urls")),
    path("", include("backend.offsets.urls")),
]

urlpatterns = [
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema"), name="redoc"),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics.metrics_view, name="prometheus-django-metrics"),
    path("admin/stats/dashboard/", dashboard_view, name="stats-dashboard"),
    path("admin/", admin.site.urls),
    # Last: any other /api/ path is a JSON 404 in every mode (under DEBUG Django would answer its HTML page).
    re_path(r"^api/", errors.handler404),
]
