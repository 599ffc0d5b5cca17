"""drf-spectacular glue: every operation documents the one error shape for the statuses it can return."""

from drf_spectacular import openapi
from drf_spectacular.utils import OpenApiExample, OpenApiResponse
from rest_framework import serializers
from rest_framework.permissions import AllowAny


class ErrorItemSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Stable snake_case machine-readable code, e.g. `insufficient_points`.")
    detail = serializers.CharField(help_text="Human-readable message in the request's language.")
    attr = serializers.CharField(allow_null=True, help_text="The offending field (dotted path) or null.")


class ErrorResponseSerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=["validation_error", "client_error", "server_error"])
    errors = ErrorItemSerializer(many=True)


def _error(code: str, detail: str, error_type: str = "client_error", attr=None) -> OpenApiResponse:
    return OpenApiResponse(
        response=ErrorResponseSerializer,
        description=detail,
        examples=[
            OpenApiExample(
                code,
                value={"type": error_type, "errors": [{"code": code, "detail": detail, "attr": attr}]},
                response_only=True,
            )
        ],
    )


def _errors_for(method: str, requires_auth: bool, has_path_params: bool) -> dict:
    errors = {}
    if method in ("POST", "PUT", "PATCH"):
        errors["400"] = _error("required", "This field is required.", "validation_error", "field")
    if requires_auth:
        errors["401"] = _error("not_authenticated", "Authentication credentials were not provided.")
        errors["403"] = _error("permission_denied", "You do not have permission to perform this action.")
    if has_path_params:
        errors["404"] = _error("not_found", "Not found.")
    errors["405"] = _error("method_not_allowed", 'Method "PUT" not allowed.')
    errors["429"] = _error("throttled", "Request was throttled. Expected available in 30 seconds.")
    errors["500"] = _error("server_error", "A server error occurred.", "server_error")
    return errors


class AutoSchema(openapi.AutoSchema):
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
        permissions = getattr(self.view, "permission_classes", [])
        requires_auth = not all(p is AllowAny for p in permissions) if permissions else True
        has_path_params = "{" in self.path
        for code, response in _errors_for(self.method, requires_auth, has_path_params).items():
            if code not in responses:
                responses[code] = self._get_response_for_code(response, code, direction=direction)
        return responses
