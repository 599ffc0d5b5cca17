"""Chinese mobile numbers: validation, E.164 normalisation, masking, keyed hashing."""

import re
import unicodedata

from django.utils.translation import gettext_lazy as _
from rest_framework.exceptions import ValidationError

from backend.core.crypto import keyed_hash

# Mainland mobile numbers: 11 digits starting 13-19, optionally written with +86 / 0086 / 86.
# ASCII digits only: `\d` would also take Arabic-Indic or other Unicode digits.
_MOBILE_RE = re.compile(r"^(?:\+?86|0086)?(1[3-9][0-9]{9})$")
MAX_PHONE_INPUT = 64


def normalize_phone(raw: str) -> str:
    """Return the number in E.164 (+8613800000000) or raise a ValidationError with code `phone_invalid`."""
    # NFKC first: full-width digits and plus sign (１３８… ＋８６), as typed on many Chinese keyboards, are the
    # same number as their ASCII forms, never a second account.
    text = str(raw or "")
    digits = re.sub(r"[\s\-()]", "", unicodedata.normalize("NFKC", text)) if len(text) <= MAX_PHONE_INPUT else ""
    match = _MOBILE_RE.match(digits)
    if not match:
        raise ValidationError(_("Enter a valid mainland China mobile number."), code="phone_invalid")
    return "+86" + match.group(1)


def mask_phone(e164: str) -> str:
    national = e164.removeprefix("+86")
    return f"{national[:3]}****{national[-4:]}"


def phone_hash(e164: str) -> str:
    return keyed_hash("phone", e164)
