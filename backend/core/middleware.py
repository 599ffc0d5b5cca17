"""Request size limit: a body over the limit is refused from its Content-Length, before a byte of it is read."""

from django.conf import settings
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
