"""/metrics (Prometheus) behind a bearer token: `Authorization: Bearer $METRICS_TOKEN`. Without METRICS_TOKEN
configured, /metrics answers 401 to everyone (closed, never public)."""

import hmac

from django.conf import settings
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django_prometheus import exports

from backend.core.errors import error_body, error_item


@never_cache
def metrics(request):
    token = settings.METRICS_TOKEN
    given = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, value = given.partition(" ")
    if not token or scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), token.encode()):
        response = JsonResponse(
            error_body("client_error", [error_item("not_authenticated", "A valid metrics bearer token is required.")]),
            status=401,
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return exports.ExportToDjangoView(request)
