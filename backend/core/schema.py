"""drf-spectacular glue: every operation has a summary and documents the one error shape for each status it
can answer, with its error codes as an enum (so a generated client gets typed errors it can branch on).

Generic statuses are derived from the view (400 for bodies, 401/403 behind authentication, 404 with path
parameters, 405, 415 for bodies, 429, 500). Domain codes (`phone_taken`, `insufficient_points` ...) are
declared per operation id in `backend/core/schema_errors.py`; a test checks every operation against it."""

import re

from drf_spectacular import openapi
from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme
from drf_spectacular.plumbing import get_doc
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema_field
from rest_framework import serializers
from rest_framework.permissions import AllowAny

from backend.core.schema_errors import GENERIC_CODES, OPERATION_ERRORS, STATUS_TYPES


class ErrorItemSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Stable snake_case machine-readable code, e.g. `insufficient_points`.")
    detail = serializers.CharField(help_text="Human-readable message in the request's language.")
    attr = serializers.CharField(allow_null=True, help_text="The offending field (dotted path) or null.")


class ErrorResponseSerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=["validation_error", "client_error", "server_error"])
    errors = ErrorItemSerializer(many=True)


def _enum_field(values: list[str], help_text: str) -> serializers.CharField:
    """A string field documented as an inline enum: no shared enum component, so operations with different
    code sets never collide on a component name."""

    @extend_schema_field({"type": "string", "enum": values})
    class EnumField(serializers.CharField):
        pass

    return EnumField(help_text=help_text)


_ERROR_SERIALIZERS: dict[tuple[int, tuple[str, ...]], type[serializers.Serializer]] = {}


def error_serializer(name: str, status: int, codes: list[str]) -> type[serializers.Serializer]:
    """The error shape with this status's codes as an enum. One component per distinct (status, codes): the
    first operation that needs it names it, later ones with the same codes share it (two components with one
    choice set would collide on the enum's name)."""
    key = (status, tuple(codes))
    if key not in _ERROR_SERIALIZERS:
        item = type(
            f"{name}Item",
            (serializers.Serializer,),
            {
                "code": _enum_field(codes, "Stable snake_case machine-readable code."),
                "detail": serializers.CharField(help_text="Human-readable message in the request's language."),
                "attr": serializers.CharField(allow_null=True, help_text="The offending field (dotted path) or null."),
                "Meta": type("Meta", (), {"ref_name": f"{name}Item"}),
            },
        )
        _ERROR_SERIALIZERS[key] = type(
            name,
            (serializers.Serializer,),
            {
                "type": _enum_field(STATUS_TYPES[status], "validation_error, client_error or server_error."),
                "errors": item(many=True),
                "Meta": type("Meta", (), {"ref_name": name}),
            },
        )
    return _ERROR_SERIALIZERS[key]


def _camel(operation_id: str) -> str:
    return "".join(part.title() for part in re.split(r"[_\W]+", operation_id) if part)


def _generic_statuses(method: str, requires_auth: bool, has_path_params: bool) -> list[int]:
    statuses = []
    if method in ("POST", "PUT", "PATCH"):
        statuses += [400, 413, 415]
    if method in ("POST", "PUT", "PATCH", "DELETE"):
        statuses.append(503)  # `retry`: PostgreSQL gave up on the write for a concurrent one (backend/core/errors.py)
    if requires_auth:
        statuses += [401, 403]
    if has_path_params:
        statuses.append(404)
    return [*statuses, 405, 429, 500]


class CachedUserJWTScheme(SimpleJWTScheme):
    """Our JWT authentication (a cached user row) is simplejwt's scheme on the wire: the same `jwtAuth`."""

    target_class = "backend.accounts.authentication.CachedUserJWTAuthentication"


class AutoSchema(openapi.AutoSchema):
    def get_summary(self) -> str:
        """The first sentence of the view's docstring, else the operation id in words."""
        method = getattr(self.view, getattr(self.view, "action", None) or self.method.lower(), None)
        description = (get_doc(method) or get_doc(self.view.__class__) or "").strip()
        if description:
            first = re.split(r"(?<=[.!?])\s|\n\n", description, maxsplit=1)[0].replace("\n", " ").strip()
            return first.rstrip(".")[:120]
        return self.get_operation_id().replace("_", " ").capitalize()

    def get_override_parameters(self):
        # Signed partner endpoints declare their signature headers (whichever app the endpoint lives in).
        parameters = super().get_override_parameters()
        from backend.partners.auth import PARTNER_HEADER_PARAMETERS, PartnerSignatureAuthentication

        if any(
            isinstance(a, type) and issubclass(a, PartnerSignatureAuthentication)
            for a in getattr(self.view, "authentication_classes", [])
        ):
            parameters = [*PARTNER_HEADER_PARAMETERS, *parameters]
        return parameters

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        operation_id = self.get_operation_id()
        permissions = getattr(self.view, "permission_classes", [])
        requires_auth = not all(p is AllowAny for p in permissions) if permissions else True
        declared = OPERATION_ERRORS.get(operation_id, {})
        statuses = sorted({*_generic_statuses(self.method, requires_auth, "{" in self.path), *declared})
        for status in statuses:
            key = str(status)
            if key in responses:
                continue
            domain = declared.get(status, [])
            codes = sorted({*GENERIC_CODES.get(status, []), *domain})
            name = f"{_camel(operation_id)}Error{status}" if domain else f"Error{status}"
            example_code = domain[0] if domain else codes[0]
            response = OpenApiResponse(
                response=error_serializer(name, status, codes),
                description=", ".join(f"`{c}`" for c in codes),
                examples=[
                    OpenApiExample(
                        example_code,
                        value={
                            "type": STATUS_TYPES[status][-1] if status != 400 else "client_error",
                            "errors": [{"code": example_code, "detail": "…", "attr": None}],
                        },
                        response_only=True,
                    )
                ],
            )
            responses[key] = self._get_response_for_code(response, key, direction=direction)
        return responses
