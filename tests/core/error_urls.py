"""URLconf for error-shape tests: the real API plus views that only exist to fail (403, 500, and PostgreSQL
giving up on a transaction because of a concurrent one)."""

from django.db import connection, transaction
from django.urls import path
from rest_framework.response import Response
from rest_framework.views import APIView

from backend.core.permissions import IsReviewer
from backend.urls import handler400, handler403, handler404, handler500  # noqa: F401
from backend.urls import urlpatterns as real_urlpatterns


class ReviewerOnly(APIView):
    permission_classes = [IsReviewer]

    def get(self, request):
        return Response({"ok": True})


class Boom(APIView):
    permission_classes: list = []

    def get(self, request):
        raise RuntimeError("boom: phone 13800138000 token=abc")


class ConcurrencyFailure(APIView):
    """PostgreSQL raises the error it raises for a deadlock or a serialization failure (its own SQLSTATE, so
    psycopg builds its own exception class and Django wraps it as it would the real thing), after a write."""

    permission_classes: list = []

    def post(self, request):
        sqlstate = {"deadlock": "40P01", "serialization": "40001", "lock_timeout": "55P03"}[request.data["kind"]]
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("UPDATE accounts_district SET name_en = name_en || '!' WHERE code = '370202'")
            cursor.execute(f"DO $$ BEGIN RAISE EXCEPTION 'concurrent' USING ERRCODE = '{sqlstate}'; END $$")
        return Response({"ok": True})


def plain_boom(request):
    raise RuntimeError("plain django view")


urlpatterns = [
    path("api/v1/test/reviewer-only", ReviewerOnly.as_view()),
    path("api/v1/test/boom", Boom.as_view()),
    path("api/v1/test/concurrency-failure", ConcurrencyFailure.as_view()),
    path("test/plain-boom", plain_boom),
    *real_urlpatterns,
]
