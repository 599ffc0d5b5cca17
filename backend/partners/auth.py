"""DRF authentication for data partners: HMAC-signed requests instead of user tokens, with failed attempts
throttled per partner id and per client address."""

import logging

from django.conf import settings
from django.core.cache import cache
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.throttling import BaseThrottle

from backend.partners.services import PartnerAuthError, signed_request_verify

logger = logging.getLogger(__name__)

SIGNING_DOC = """Partner requests carry `X-Partner-Id`, `X-Timestamp` (unix seconds, within 300 s of now),
`X-Nonce` (unique per request, 1-128 printable ASCII characters), `X-Signature-Version: 2` and `X-Signature`:
lowercase hex of HMAC-SHA256(secret, message) where message is, joined by `\\n`: the method (`POST`), the path with
its query (`/api/v1/partner/actions`), the partner id, the timestamp, the nonce and the lowercase hex SHA-256 of
the raw body (of `b""` for a GET). Version 1 (no `X-Signature-Version`, HMAC of `"{timestamp}.{nonce}." + body`)
is accepted until an admin turns it off for the partner. Errors: 401 `partner_unknown`, `signature_invalid`,
`signature_expired`, `signature_version_unsupported`, `signature_version_not_allowed`; 409 `nonce_reused`;
403 `partner_suspended`; 429 `throttled` after too many failed attempts.

```python
import hashlib
import hmac
import json
import time
import uuid


def sign_v2(secret: str, partner_id: int, method: str, path_with_query: str, body: bytes) -> dict:
    # The headers of one v2-signed partner request.
    timestamp, nonce = str(int(time.time())), uuid.uuid4().hex
    lines = [method.upper(), path_with_query, str(partner_id), timestamp, nonce, hashlib.sha256(body).hexdigest()]
    signature = hmac.new(secret.encode(), "\\n".join(lines).encode(), hashlib.sha256).hexdigest()
    return {
        "X-Partner-Id": str(partner_id),
        "X-Timestamp": timestamp,
        "X-Nonce": nonce,
        "X-Signature-Version": "2",
        "X-Signature": signature,
    }


if __name__ == "__main__":
    import requests

    BASE_URL, PARTNER_ID, SECRET = "http://127.0.0.1:8000", 1, "the secret from create_partner"
    body = json.dumps({"actions": []}).encode()
    headers = sign_v2(SECRET, PARTNER_ID, "POST", "/api/v1/partner/actions", body)
    response = requests.post(
        BASE_URL + "/api/v1/partner/actions", data=body, headers={**headers, "Content-Type": "application/json"}
    )
    print(response.status_code, response.json())
```"""

PARTNER_HEADER_PARAMETERS = [
    OpenApiParameter(
        "X-Partner-Id",
        OpenApiTypes.STR,
        OpenApiParameter.HEADER,
        required=True,
        description="The partner's numeric id.",
    ),
    OpenApiParameter(
        "X-Timestamp",
        OpenApiTypes.STR,
        OpenApiParameter.HEADER,
        required=True,
        description="Unix seconds, within 300 s of the server's clock.",
    ),
    OpenApiParameter(
        "X-Nonce",
        OpenApiTypes.STR,
        OpenApiParameter.HEADER,
        required=True,
        description="Unique per request (1-128 printable ASCII characters); a replay is 409.",
    ),
    OpenApiParameter(
        "X-Signature",
        OpenApiTypes.STR,
        OpenApiParameter.HEADER,
        required=True,
        description="Lowercase hex HMAC-SHA256, see the partnerSignature security scheme.",
    ),
    OpenApiParameter(
        "X-Signature-Version",
        OpenApiTypes.STR,
        OpenApiParameter.HEADER,
        required=False,
        enum=["1", "2"],
        description="`2` (recommended); absent means 1.",
    ),
]


class PartnerAuthFailureGuard:
    """Counts failed partner authentications in the cache (Redis) per client address and per claimed partner id;
    past the limit within the window, attempts get 429 before any signature is checked. Fails open when the
    cache is down (a 256-bit HMAC secret cannot be guessed; the counter only spares the database)."""

    def __init__(self, request, partner_id: str):
        self.keys = [("address", f"partner-auth-fail:addr:{BaseThrottle().get_ident(request)}")]
        if partner_id.isascii() and partner_id.isdigit() and len(partner_id) <= 18:
            self.keys.append(("partner", f"partner-auth-fail:partner:{int(partner_id)}"))

    @staticmethod
    def _limit(kind: str) -> int:
        return (
            settings.PARTNER_AUTH_FAILURES_PER_ADDRESS
            if kind == "address"
            else settings.PARTNER_AUTH_FAILURES_PER_PARTNER
        )

    def check(self) -> None:
        try:
            counts = cache.get_many([key for _kind, key in self.keys])
        except Exception:
            logger.warning("partner auth failure counter unavailable; not throttled", exc_info=True)
            return
        for kind, key in self.keys:
            if int(counts.get(key) or 0) >= self._limit(kind):
                raise exceptions.Throttled(wait=settings.PARTNER_AUTH_FAILURE_WINDOW_S)

    def failed(self) -> None:
        window = settings.PARTNER_AUTH_FAILURE_WINDOW_S
        try:
            for _kind, key in self.keys:
                cache.add(key, 0, timeout=window)
                try:
                    cache.incr(key)
                except ValueError:  # expired between add and incr
                    cache.add(key, 1, timeout=window)
        except Exception:
            logger.warning("partner auth failure counter unavailable", exc_info=True)


class PartnerSignatureAuthentication(BaseAuthentication):
    """Signed partner requests (see SIGNING_DOC). Sets request.user to an anonymous user and request.auth to the
    Partner."""

    def authenticate(self, request):
        from django.contrib.auth.models import AnonymousUser

        headers = request.headers
        partner_id = headers.get("X-Partner-Id", "")
        guard = PartnerAuthFailureGuard(request, partner_id)
        guard.check()
        try:
            partner = signed_request_verify(
                partner_id=partner_id,
                timestamp=headers.get("X-Timestamp", ""),
                nonce=headers.get("X-Nonce", ""),
                signature=headers.get("X-Signature", ""),
                version=headers.get("X-Signature-Version", ""),
                method=request.method,
                path=request._request.get_full_path(),
                body=request._request.body,  # the raw bytes that were signed, before any parsing
            )
        except PartnerAuthError:
            guard.failed()
            raise
        return AnonymousUser(), partner

    def authenticate_header(self, request):
        return 'HMAC-SHA256 realm="partner"'


class PartnerSignatureScheme(OpenApiAuthenticationExtension):
    target_class = "backend.partners.auth.PartnerSignatureAuthentication"
    name = "partnerSignature"

    def get_security_definition(self, auto_schema):
        return {"type": "apiKey", "in": "header", "name": "X-Signature", "description": SIGNING_DOC}
