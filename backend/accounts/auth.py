"""Authentication by mobile number, with an atomic brute-force lockout per number. (API requests: JWT against a
cached user row, backend/accounts/authentication.py.)"""

import logging

from django.conf import settings
from django.contrib.auth.backends import ModelBackend
from django.core.cache import cache
from django.utils.translation import gettext_lazy as _
from rest_framework import status

from backend.accounts.authentication import user_may_authenticate  # noqa: F401  (SIMPLE_JWT's rule, by this path)
from backend.accounts.phones import normalize_phone, phone_hash
from backend.core.errors import ApplicationError

logger = logging.getLogger(__name__)


# Django permissions that come with a role (on top of groups and per-user grants): what the admin screens of
# that role need. Admins are superusers; residents and merchant staff do not use the admin.
ROLE_PERMISSIONS = {
    "reviewer": frozenset(
        {
            "actions.view_action",
            "actions.view_actionstatuschange",
            "actions.view_ingestbatch",
            "methodologies.view_methodology",
            "methodologies.view_methodologyversion",
            "methodologies.view_pointspolicyversion",
            "methodologies.view_versiontransition",
            "methodologies.view_impactpreview",
            "ledger.view_account",
            "ledger.view_ledgertransaction",
            "ledger.view_posting",
            "ledger.view_pointslot",
            "ledger.view_merkleroot",
            "ledger.view_reconciliationrun",
        }
    ),
}


class PhoneBackend(ModelBackend):
    """ModelBackend whose username is the phone number as typed (the manager hashes it for the lookup), and
    whose permissions include those of the user's role (ROLE_PERMISSIONS)."""

    def user_can_authenticate(self, user):
        return super().user_can_authenticate(user) and user.status == user.Status.ACTIVE

    def get_group_permissions(self, user_obj, obj=None):
        permissions = super().get_group_permissions(user_obj, obj)
        if not user_obj.is_active or user_obj.is_anonymous or obj is not None:
            return permissions
        return {*permissions, *ROLE_PERMISSIONS.get(getattr(user_obj, "role", ""), ())}


class LoginLocked(ApplicationError):
    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    default_code = "login_locked"
    default_detail = _("Too many failed login attempts for this number. Try again later.")


class InvalidCredentials(ApplicationError):
    status_code = status.HTTP_401_UNAUTHORIZED
    default_code = "invalid_credentials"
    default_detail = _("Phone number or password is wrong.")


class LoginUnavailable(ApplicationError):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "login_unavailable"
    default_detail = _("Login is temporarily unavailable. Please try again shortly.")


def _attempts_key(e164: str) -> str:
    return f"login-attempts:{phone_hash(e164)}"


def login_attempt_register(raw_phone: str) -> str:
    """Count this attempt before checking the password, atomically (Redis INCR), so N parallel attempts
    cannot all read "4 failures so far" and slip past the limit. Raises LoginLocked past the limit.
    The window starts with the first attempt and is not extended by later ones."""
    try:
        e164 = normalize_phone(raw_phone)
    except Exception:
        return ""
    key = _attempts_key(e164)
    try:
        cache.add(key, 0, timeout=settings.LOGIN_WINDOW_SECONDS)
        try:
            attempts = cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.add(key, 1, timeout=settings.LOGIN_WINDOW_SECONDS)
            attempts = 1
    except Exception as exc:
        # Without the counter the lockout cannot be enforced: fail closed (503), never let guesses through.
        logger.warning("login attempt counter unavailable: %s", exc.__class__.__name__)
        raise LoginUnavailable() from None
    if attempts > settings.LOGIN_MAX_ATTEMPTS:
        ttl = getattr(cache, "ttl", None)
        wait = ttl(key) if ttl else settings.LOGIN_WINDOW_SECONDS
        exc = LoginLocked()
        exc.wait = max(int(wait or 0), 1)
        raise exc
    return e164


def login_attempt_succeeded(e164: str) -> None:
    """A correct password clears the failure count for the number."""
    if e164:
        cache.delete(_attempts_key(e164))
