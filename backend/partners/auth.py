"""DRF authentication for data partners: HMAC-signed requests instead of user tokens."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication

from backend.partners.services import signed_request_verify


class PartnerSignatureAuthentication(BaseAuthentication):
    """Headers X-Partner-Id, X-Timestamp, X-Nonce, X-Signature = hex HMAC-SHA256(secret,
    "{timestamp}.{nonce}." + raw body). Sets request.user to an anonymous user and request.auth to the Partner."""

    def authenticate(self, request):
        from django.contrib.auth.models import AnonymousUser

        headers = request.headers
        partner = signed_request_verify(
            partner_id=headers.get("X-Partner-Id", ""),
            timestamp=headers.get("X-Timestamp", ""),
            nonce=headers.get("X-Nonce", ""),
            signature=headers.get("X-Signature", ""),
            body=request._request.body,  # the raw bytes that were signed, before any parsing
        )
        return AnonymousUser(), partner

    def authenticate_header(self, request):
        return 'HMAC-SHA256 realm="partner"'


class PartnerSignatureScheme(OpenApiAuthenticationExtension):
    target_class = "backend.partners.auth.PartnerSignatureAuthentication"
    name = "partnerSignature"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "X-Signature",
            "description": (
                "Partner requests carry `X-Partner-Id`, `X-Timestamp` (unix seconds, within 300 s of now), "
                "`X-Nonce` (unique per request) and `X-Signature`: lowercase hex of "
                'HMAC-SHA256(secret, "{timestamp}.{nonce}." + raw body). Errors: 401 `partner_unknown`, '
                "`signature_invalid`, `signature_expired`; 409 `nonce_reused`; 403 `partner_suspended`."
            ),
        }
