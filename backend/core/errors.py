"""One error shape for the whole API.

    {"type": "validation_error" | "client_error" | "server_error",
     "errors": [{"code": "snake_case", "detail": "human readable", "attr": null | "field.path"}]}

Services raise ApplicationError (or a subclass with its own status); DRF's own exceptions, Django's 404 and
unhandled exceptions are all rendered through `exception_handler`, and Django-level 404/500 (outside DRF
views) through `handler404` / `handler500`.
"""

import logging

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import OperationalError as DatabaseOperationalError
from django.http import Http404, JsonResponse
from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.serializers import as_serializer_error
from rest_framework.views import set_rollback

from backend.core import throttling

logger = logging.getLogger(__name__)


class ApplicationError(exceptions.APIException):
    """A domain rule refused the request. `code` is the stable machine-readable reason."""

    status_code = status.HTTP_400_BAD_REQUEST
    default_detail = _("The request could not be processed.")
    default_code = "application_error"

    def __init__(self, detail=None, code=None, *, attr: str | None = None, status_code: int | None = None):
        super().__init__(detail=detail, code=code)
        self.attr = attr
        if status_code is not None:
            self.status_code = status_code


class ConflictError(ApplicationError):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"


def error_body(error_type: str, errors: list[dict]) -> dict:
    return {"type": error_type, "errors": errors}


def error_item(code: str, detail, attr: str | None = None) -> dict:
    return {"code": str(code), "detail": str(detail), "attr": attr}


def _flatten_validation(detail, prefix: str | None = None) -> list[dict]:
    """Turn DRF's nested ValidationError detail into flat items with dotted attribute paths."""
    items: list[dict] = []
    if isinstance(detail, dict):
        for key, value in detail.items():
            if key in ("non_field_errors", "__all__"):
                attr = prefix
            else:
                attr = f"{prefix}.{key}" if prefix else str(key)
            items.extend(_flatten_validation(value, attr))
    elif isinstance(detail, list):
        for index, value in enumerate(detail):
            if isinstance(value, (dict, list)):
                items.extend(_flatten_validation(value, f"{prefix}.{index}" if prefix else str(index)))
            else:
                items.extend(_flatten_validation(value, prefix))
    else:
        code = getattr(detail, "code", None) or "invalid"
        items.append(error_item(code, detail, prefix))
    return items


class RequestTooLarge(ApplicationError):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "request_too_large"
    default_detail = _("The request body is too large.")


def _concurrency_failure(exc) -> bool:
    """PostgreSQL gave up on this transaction because of a concurrent one (a deadlock, a serialization failure,
    a lock wait past lock_timeout): the whole transaction was rolled back, and the same request again can
    succeed. Every write path takes its locks in one order (rewards/locking.py, backend/accounts/erasure.py),
    so this should not happen; when it does, it is not the server's fault in the sense of a 500."""
    if not isinstance(exc, DatabaseOperationalError):
        return False
    import psycopg

    cause = exc.__cause__
    return isinstance(
        cause, (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure, psycopg.errors.LockNotAvailable)
    )


def _retry_later(exc, context) -> ApplicationError:
    logger.warning(
        "concurrency failure in %s, answered 503 retry: %s",
        context.get("view").__class__.__name__ if context else "?",
        str(exc).splitlines()[0],
    )
    retry = ApplicationError(
        _("A concurrent request got in the way; nothing was changed. Please try again."),
        code="retry",
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
    )
    retry.wait = 1  # Retry-After: 1
    return retry


def exception_handler(exc, context):
    if context and context.get("request") is not None:  # stopped before its throttles ran: nothing counted
        throttling.prefetch_release(context["request"])
    if isinstance(exc, RequestDataTooBig):
        exc = RequestTooLarge()
    elif isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(as_serializer_error(exc))
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    elif isinstance(exc, RequestDataTooBig):  # a body over DATA_UPLOAD_MAX_MEMORY_SIZE is the client's error
        exc = ApplicationError(_("The request body is too large."), code="request_too_large", status_code=413)
    elif isinstance(exc, RecursionError):  # JSON nested deeper than the parser's recursion limit
        exc = exceptions.ParseError(_("The JSON is nested too deeply."))
    elif _concurrency_failure(exc):
        exc = _retry_later(exc, context)

    if not isinstance(exc, exceptions.APIException):
        # Unhandled: log with the traceback (the request id ties it to the access log), answer in our shape.
        logger.exception("unhandled error in %s", context.get("view").__class__.__name__ if context else "?")
        set_rollback()
        return Response(
            error_body("server_error", [error_item("server_error", _("A server error occurred."))]),
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )

    headers = {}
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header
    if getattr(exc, "wait", None):
        headers["Retry-After"] = str(int(exc.wait))

    if isinstance(exc, exceptions.ValidationError):
        body = error_body("validation_error", _flatten_validation(exc.detail))
    else:
        error_type = "server_error" if exc.status_code >= 500 else "client_error"
        detail = exc.detail
        if isinstance(detail, dict) and "detail" in detail and "code" in detail:
            # simplejwt's InvalidToken carries {"detail", "code", "messages"}: keep its code, drop the internals.
            items = [error_item(detail["code"], detail["detail"], getattr(exc, "attr", None))]
        elif isinstance(detail, (dict, list)):
            items = _flatten_validation(detail)
        else:
            items = [error_item(getattr(detail, "code", None) or exc.default_code, detail, getattr(exc, "attr", None))]
        body = error_body(error_type, items)
    set_rollback()
    return Response(body, status=exc.status_code, headers=headers)


def handler404(request, exception=None):
    return JsonResponse(error_body("client_error", [error_item("not_found", _("Not found."))]), status=404)


def handler500(request):
    return JsonResponse(
        error_body("server_error", [error_item("server_error", _("A server error occurred."))]), status=500
    )


def handler403(request, exception=None):
    return JsonResponse(
        error_body("client_error", [error_item("permission_denied", _("You do not have permission."))]), status=403
    )


def handler400(request, exception=None):
    return JsonResponse(error_body("client_error", [error_item("bad_request", _("Bad request."))]), status=400)
