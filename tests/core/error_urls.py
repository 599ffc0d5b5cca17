"""URLconf for error-shape tests: the real API plus two views that only exist to fail (403 and 500)."""

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


def plain_boom(request):
    raise RuntimeError("plain django view")


urlpatterns = [
    path("api/v1/test/reviewer-only", ReviewerOnly.as_view()),
    path("api/v1/test/boom", Boom.as_view()),
    path("test/plain-boom", plain_boom),
    *real_urlpatterns,
]
