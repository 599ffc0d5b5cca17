"""Signed, expiring QR payloads of vouchers (Ed25519), verifiable offline with the published public key.

    payload   = "QT1." + b64url(claims) + "." + b64url(signature)
    claims    = compact JSON, keys sorted: {"c": code, "exp": unix seconds, "kid": key id, "m": merchant id,
                "r": reward id, "v": 1}
    signature = Ed25519(private key, ASCII bytes of "QT1." + b64url(claims))

b64url is base64url without padding. A scanner fetches `GET /api/v1/rewards/qr-key` once (public key, raw 32
bytes in b64url, and its `kid`), then checks a payload offline: the signature over the first two parts, `kid`,
`exp` > now, and `m` = its own merchant. Online, it posts the payload to `POST /api/v1/merchant/vouchers/scan`.
The signature is deterministic, so a voucher's payload is stable (an idempotent replay returns the same bytes).

The key comes from REWARDS_QR_SIGNING_KEY (b64url of a 32-byte Ed25519 seed); without it a development key is
derived from SECRET_KEY (set a real one in production: anyone who knows the secret could mint payloads).
"""

import base64
import hashlib
import json
import time
from functools import lru_cache

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from django.conf import settings
from django.utils.translation import gettext_lazy as _

from backend.core.errors import ApplicationError

PREFIX = "QT1"
MAX_PAYLOAD_CHARS = 512


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@lru_cache(maxsize=4)
def _keys(seed_setting: str, secret_key: str) -> tuple[Ed25519PrivateKey, bytes, str]:
    seed = _unb64(seed_setting) if seed_setting else hashlib.sha256(b"rewards-qr:" + secret_key.encode()).digest()
    private = Ed25519PrivateKey.from_private_bytes(seed)
    public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return private, public, hashlib.sha256(public).hexdigest()[:16]


def signing_keys() -> tuple[Ed25519PrivateKey, bytes, str]:
    return _keys(getattr(settings, "REWARDS_QR_SIGNING_KEY", ""), settings.SECRET_KEY)


def public_key_info() -> dict:
    _private, public, kid = signing_keys()
    return {"alg": "Ed25519", "kid": kid, "public_key": _b64(public), "format": f"{PREFIX}.<claims>.<signature>"}


def qr_sign(*, code: str, merchant_id: int, reward_id: int, expires_at) -> str:
    private, _public, kid = signing_keys()
    claims = {"c": code, "exp": int(expires_at.timestamp()), "kid": kid, "m": merchant_id, "r": reward_id, "v": 1}
    head = f"{PREFIX}.{_b64(json.dumps(claims, sort_keys=True, separators=(',', ':')).encode())}"
    return f"{head}.{_b64(private.sign(head.encode()))}"


def qr_verify(payload: str, *, now: float | None = None) -> dict:
    """Check a payload's signature and expiry; return its claims. 400 `qr_invalid` for anything malformed or
    forged, 409 `voucher_expired` past `exp`."""
    invalid = ApplicationError(_("This QR code is not a valid voucher."), code="qr_invalid", attr="qr_payload")
    if not isinstance(payload, str) or len(payload) > MAX_PAYLOAD_CHARS or not payload.isascii():
        raise invalid
    parts = payload.split(".")
    if len(parts) != 3 or parts[0] != PREFIX:
        raise invalid
    _private, public, kid = signing_keys()
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(_unb64(parts[2]), f"{parts[0]}.{parts[1]}".encode())
        claims = json.loads(_unb64(parts[1]))
    except (InvalidSignature, ValueError, TypeError):
        raise invalid from None
    if not isinstance(claims, dict) or claims.get("kid") != kid or not isinstance(claims.get("c"), str):
        raise invalid
    if not isinstance(claims.get("exp"), int) or not isinstance(claims.get("m"), int):
        raise invalid
    if claims["exp"] <= (now if now is not None else time.time()):
        raise ApplicationError(_("This voucher has expired."), code="voucher_expired", status_code=409)
    return claims
