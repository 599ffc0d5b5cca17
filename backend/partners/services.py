"""Partners: creation, secret rotation, suspension, and the signed-request check."""

import hashlib
import hmac
import re
import secrets
import time
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from rest_framework import status

from backend.core.crypto import decrypt, encrypt
from backend.core.errors import ApplicationError, ConflictError
from backend.partners.models import Partner, PartnerNonce, PartnerSecret

MAX_ACTIVE_SECRETS = 2


class PartnerAuthError(ApplicationError):
    status_code = status.HTTP_401_UNAUTHORIZED
    default_code = "signature_invalid"


def _new_secret() -> str:
    return secrets.token_hex(32)


def _known_methodology_codes() -> set[str] | None:
    try:
        from backend.methodologies.models import Methodology
    except ImportError:  # pragma: no cover - methodologies app not present
        return None
    return set(Methodology.objects.values_list("code", flat=True))


def _subject_kinds_clean(subject_kinds) -> list[str]:
    from backend.actions.models import SubjectKind

    kinds = sorted({k.strip() for k in subject_kinds if k.strip()})
    unknown = [k for k in kinds if k not in SubjectKind.values]
    if unknown:
        raise ApplicationError(
            _("Unknown subject kinds: %s") % ", ".join(unknown), code="unknown_subject_kind", attr="subject_kinds"
        )
    return kinds


@transaction.atomic
def partner_subject_kinds_set(*, partner_id: int, subject_kinds: list[str]) -> Partner:
    """Which kinds of card/account this partner attests links for (POST /partner/links)."""
    partner = Partner.objects.select_for_update().get(pk=partner_id)
    partner.subject_kinds = _subject_kinds_clean(subject_kinds)
    partner.save(update_fields=["subject_kinds"])
    return partner


def _methodologies_clean(methodologies) -> list[str]:
    codes = sorted({c.strip() for c in methodologies if c.strip()})
    known = _known_methodology_codes()
    unknown = [c for c in codes if known is not None and c not in known]
    if unknown:
        raise ApplicationError(
            _("Unknown methodologies: %s") % ", ".join(unknown), code="unknown_methodology", attr="methodologies"
        )
    return codes


@transaction.atomic
def partner_methodologies_set(*, partner_id: int, methodologies: list[str]) -> Partner:
    """Which methodologies this partner may push actions for (others are refused per item)."""
    partner = Partner.objects.select_for_update().get(pk=partner_id)
    partner.methodologies = _methodologies_clean(methodologies)
    partner.save(update_fields=["methodologies"])
    return partner


@transaction.atomic
def partner_create(*, name: str, methodologies: list[str], subject_kinds: list[str] = ()) -> tuple[Partner, str]:
    """Create a partner with its first secret. Returns the partner and the secret in clear (shown once).
    `subject_kinds`: the card/account kinds it may attest links for (none: it cannot link cards)."""
    kinds = _subject_kinds_clean(subject_kinds)
    codes = _methodologies_clean(methodologies)
    try:
        with transaction.atomic():
            partner = Partner.objects.create(name=name, methodologies=codes, subject_kinds=kinds)
    except IntegrityError:
        raise ConflictError(_("A partner with this name exists."), code="partner_exists", attr="name") from None
    secret = _new_secret()
    PartnerSecret.objects.create(partner=partner, secret_encrypted=encrypt(secret))
    return partner, secret


@transaction.atomic
def partner_secret_rotate(*, partner_id: int) -> str:
    """Add a new active secret. With two active already, the oldest is retired: partners switch to the new
    secret at their own pace while the previous one keeps working."""
    partner = Partner.objects.select_for_update().get(pk=partner_id)
    active = list(partner.secrets.filter(status=PartnerSecret.Status.ACTIVE).order_by("created_at", "id"))
    for old in active[: max(0, len(active) - (MAX_ACTIVE_SECRETS - 1))]:
        partner_secret_retire(secret_id=old.pk)
    secret = _new_secret()
    PartnerSecret.objects.create(partner=partner, secret_encrypted=encrypt(secret))
    return secret


@transaction.atomic
def partner_secret_retire(*, secret_id: int) -> None:
    PartnerSecret.objects.filter(pk=secret_id, status=PartnerSecret.Status.ACTIVE).update(
        status=PartnerSecret.Status.RETIRED, retired_at=timezone.now()
    )


@transaction.atomic
def partner_set_status(*, partner_id: int, status: str) -> Partner:
    partner = Partner.objects.select_for_update().get(pk=partner_id)
    partner.status = status
    partner.save(update_fields=["status"])
    return partner


@transaction.atomic
def partner_set_signature_v1(*, partner_id: int, allowed: bool, actor=None) -> Partner:
    """Accept or refuse signature v1 from one partner (refuse it once the partner signs with v2)."""
    partner = Partner.objects.select_for_update().get(pk=partner_id)
    partner.signature_v1_allowed = allowed
    partner.save(update_fields=["signature_v1_allowed"])
    return partner


def signature_compute(secret: str, timestamp: str, nonce: str, body: bytes) -> str:
    """Signature v1: lowercase hex HMAC-SHA256(secret, "{timestamp}.{nonce}." + raw body)."""
    message = f"{timestamp}.{nonce}.".encode() + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_v2_message(*, method: str, path: str, partner_id: str, timestamp: str, nonce: str, body: bytes) -> bytes:
    """What v2 signs: method, path with query, partner id, timestamp, nonce and the hex SHA-256 of the body, one
    per line. No field may contain a newline (checked on input), so the fields cannot be shifted into each other."""
    lines = [method.upper(), path, partner_id, timestamp, nonce, hashlib.sha256(body).hexdigest()]
    return "\n".join(lines).encode()


def signature_v2_compute(secret: str, **fields) -> str:
    """Signature v2: lowercase hex HMAC-SHA256(secret, signature_v2_message(...))."""
    return hmac.new(secret.encode(), signature_v2_message(**fields), hashlib.sha256).hexdigest()


SIGNATURE_VERSIONS = ("1", "2")
_PARTNER_ID_RE = re.compile(r"[0-9]{1,18}")
_TIMESTAMP_RE = re.compile(r"[0-9]{1,12}")
_NONCE_RE = re.compile(r"[!-~]{1,128}")  # printable ASCII, no spaces or newlines
_SIGNATURE_RE = re.compile(r"[0-9a-f]{64}")


def signed_request_verify(
    *,
    partner_id: str,
    timestamp: str,
    nonce: str,
    signature: str,
    body: bytes,
    version: str = "",
    method: str = "",
    path: str = "",
) -> Partner:
    """Check a signed partner request; raises PartnerAuthError (401) with the documented codes.

    Header values are checked against ASCII patterns before any conversion, so `²`, 5,000 digits or a
    non-ASCII signature are a 401, never a 500. The nonce is NOT recorded here: `partner_nonce_record` does that
    inside the transaction of the request's effect, so a request rejected later (bad body) leaves nothing."""
    version = (version or "1").strip()
    if version not in SIGNATURE_VERSIONS:
        raise PartnerAuthError(
            _("X-Signature-Version must be 1 or 2."), code="signature_version_unsupported", attr="X-Signature-Version"
        )
    partner = None
    if _PARTNER_ID_RE.fullmatch(partner_id or ""):
        partner = Partner.objects.filter(pk=int(partner_id)).first()
    if partner is None:
        raise PartnerAuthError(_("Unknown partner."), code="partner_unknown", attr="X-Partner-Id")
    if not _TIMESTAMP_RE.fullmatch(timestamp or ""):
        raise PartnerAuthError(_("X-Timestamp must be unix seconds."), code="signature_invalid", attr="X-Timestamp")
    if abs(time.time() - int(timestamp)) > settings.PARTNER_SIGNATURE_MAX_SKEW_S:
        raise PartnerAuthError(
            _("The request timestamp is too far from now."), code="signature_expired", attr="X-Timestamp"
        )
    if not _NONCE_RE.fullmatch(nonce or ""):
        raise PartnerAuthError(
            _("X-Nonce is required (1 to 128 printable ASCII characters)."), code="signature_invalid", attr="X-Nonce"
        )
    given = (signature or "").strip().lower()
    if not _SIGNATURE_RE.fullmatch(given):
        raise PartnerAuthError(
            _("X-Signature must be 64 hex characters."), code="signature_invalid", attr="X-Signature"
        )
    if version == "1" and not partner.signature_v1_allowed:
        raise PartnerAuthError(
            _("Signature v1 is turned off for this partner: sign with X-Signature-Version: 2."),
            code="signature_version_not_allowed",
            attr="X-Signature-Version",
        )
    candidates = [decrypt(s.secret_encrypted) for s in partner.secrets.filter(status=PartnerSecret.Status.ACTIVE)]
    # Compare against every active secret in constant time, without stopping at the first match.
    matched = False
    for secret in candidates:
        if version == "2":
            expected = signature_v2_compute(
                secret, method=method, path=path, partner_id=partner_id, timestamp=timestamp, nonce=nonce, body=body
            )
        else:
            expected = signature_compute(secret, timestamp, nonce, body)
        matched |= hmac.compare_digest(expected, given)
    if not matched:
        raise PartnerAuthError(_("The signature does not match."), code="signature_invalid", attr="X-Signature")
    if partner.status != Partner.Status.ACTIVE:
        raise ApplicationError(_("This partner is suspended."), code="partner_suspended", status_code=403)
    return partner


def partner_nonce_record(*, partner: Partner, nonce: str) -> None:
    """Record the nonce in the caller's transaction; a nonce seen before is 409 `nonce_reused`."""
    try:
        with transaction.atomic():
            PartnerNonce.objects.create(partner=partner, nonce=nonce)
    except IntegrityError:
        raise ConflictError(_("This nonce was used before."), code="nonce_reused", attr="X-Nonce") from None


def partner_nonces_prune() -> int:
    """Nonces older than the signature window can never be replayed (the timestamp check fails first)."""
    cutoff = timezone.now() - timedelta(seconds=2 * settings.PARTNER_SIGNATURE_MAX_SKEW_S + 60)
    deleted, _ = PartnerNonce.objects.filter(created_at__lt=cutoff).delete()
    return deleted
