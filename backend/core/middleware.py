"""Request size limit: a body over the limit is refused from its Content-Length, before a byte of it is read. The
admin's middleware (sessions, Django's request.user, messages), skipped under /api/."""

from django.conf import settings
from django.contrib.auth import middleware as auth_middleware
from django.contrib.messages import middleware as messages_middleware
from django.contrib.sessions import middleware as session_middleware
from django.http import JsonResponse
from django.utils.translation import gettext as _

from backend.core.errors import error_body, error_item


def request_too_large_response(limit: int) -> JsonResponse:
    detail = _("The request body is larger than %(limit)s bytes.") % {"limit": limit}
    return JsonResponse(error_body("client_error", [error_item("request_too_large", detail)]), status=413)


class RequestSizeLimitMiddleware:
    """413 `request_too_large` when Content-Length exceeds the view's `max_request_bytes` (an attribute of the
    view class; default DATA_UPLOAD_MAX_MEMORY_SIZE). Runs before CSRF and the view, so nothing reads the body.
    Bodies without a Content-Length are still bounded by Django's own limits and the upload handlers."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_view(self, request, view_func, view_args, view_kwargs):
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        view_class = getattr(view_func, "cls", None) or getattr(view_func, "view_class", None)
        limit = getattr(view_class, "max_request_bytes", None) or settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if length > limit:
            return request_too_large_response(limit)
        return None


# ------------------------------------------------------------------------------------------ admin-only middleware


class _NotForApi:
    """Runs the middleware it is mixed into everywhere but under /api/. The API authenticates with JWT only (DRF's
    authentication classes) and answers JSON: sessions, Django's request.user and messages serve the admin and cost
    every API request a little. Under /api/ there is no session at all, so no session can authenticate an API
    request (with or without a CSRF token); DRF sets request.user itself. Django's CsrfViewMiddleware stays as it
    is everywhere (`check --deploy` looks for it; DRF's views are CSRF-exempt, so it costs them little)."""

    def __call__(self, request):
        if request.path_info.startswith("/api/"):
            return self.get_response(request)
        return super().__call__(request)


class SessionMiddleware(_NotForApi, session_middleware.SessionMiddleware):
    pass


class AuthenticationMiddleware(_NotForApi, auth_middleware.AuthenticationMiddleware):
    pass


class MessageMiddleware(_NotForApi, messages_middleware.MessageMiddleware):
    pass
