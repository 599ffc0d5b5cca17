"""Chinese mobile numbers: validation, E.164 normalisation, masking, keyed hashing."""

import re

from django.utils.translation import gettext_lazy as _
from rest_framework.exceptions import ValidationError

from backend.core.crypto import keyed_hash

# Mainland mobile numbers: 11 digits starting 13-19, optionally written with +86 / 0086 / 86.
_MOBILE_RE = re.compile(r"^(?:\+?86|0086)?(1[3-9]\d{9})$")


def normalize_phone(raw: str) -> str:
    """Return the number in E.164 (+8613800000000) or raise a ValidationError with code `phone_invalid`."""
    digits = re.sub(r"[\s\-()]", "", str(raw or ""))
    match = _MOBILE_RE.match(digits)
    if not match:
        raise ValidationError(_("Enter a valid mainland China mobile number."), code="phone_invalid")
    return "+86" + match.group(1)


def mask_phone(e164: str) -> str:
    national = e164.removeprefix("+86")
    return f"{national[:3]}****{national[-4:]}"


def phone_hash(e164: str) -> str:
    return keyed_hash("phone", e164)
