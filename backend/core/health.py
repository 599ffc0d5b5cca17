"""Liveness and readiness probes (outside /api/v1, no authentication, no throttling)."""

import redis
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from backend.core.errors import error_item


@never_cache
@require_GET
def healthz(request):
    """The process is alive and serving. Checks nothing else on purpose (a restart would not fix a database)."""
    return JsonResponse({"status": "ok"})


def _check_database() -> None:
    with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
        cursor.execute("SELECT 1")


def _check_migrations() -> None:
    executor = MigrationExecutor(connections[DEFAULT_DB_ALIAS])
    pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
    if pending:
        raise RuntimeError(f"{len(pending)} migrations not applied")


def _check_redis() -> str:
    if not settings.REDIS_URL:
        return "not_configured"
    client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
    try:
        client.ping()
    finally:
        client.close()
    return "ok"


@never_cache
@require_GET
def readyz(request):
    """Ready to take traffic: database reachable, Redis reachable (when configured), migrations applied.
    503 names each failing dependency, in the API's error shape."""
    checks: dict[str, str] = {}
    errors = []
    for name, check in (("database", _check_database), ("redis", _check_redis), ("migrations", _check_migrations)):
        try:
            checks[name] = check() or "ok"
        except Exception as exc:  # any failure of a dependency is a "not ready", never a 500
            checks[name] = "unavailable"
            errors.append(error_item("dependency_unavailable", f"{name}: {exc.__class__.__name__}", name))
    if errors:
        return JsonResponse({"type": "server_error", "errors": errors, "checks": checks}, status=503)
    return JsonResponse({"status": "ok", "checks": checks})
