"""API authentication: simplejwt access tokens checked against a short-lived Redis cache of the user row.

Every API request used to load its user row from PostgreSQL (a query and a model per request, most of what an
authenticated read costs). The row is now cached in Redis for AUTH_USER_CACHE_SECONDS, only while the user may
authenticate. Every change to a user row (User.save() or delete(), through any path: services, admin, shell) writes
a short "look in the database" marker over the cached copy at once and again when its transaction commits, so a
deactivated, suspended or erased user's access token is refused from the commit on. The cache is filled with
SET NX, which a marker blocks: a request that read the old row just before the commit cannot put it back. A
bulk `QuerySet.update()` of users sends no signal: such a path calls `auth_user_forget` itself (rewards staff
removal does). Whatever would still slip past the marker (a Redis write lost at that very moment) is bounded by
the entry's TTL. Redis unreachable: the row is read from the database, as before.

One round trip per request: the cached row's GET travels in the same Redis pipeline as the view's throttle counters
for the token's user id (backend/core/throttling.py `prefetch_add`); a refused request gives the counts back.

Signature checks are done once per token and process: `_VERIFIED` maps a raw access token that passed simplejwt's full
validation to its claims (bounded, per process). A later request with the same bytes rebuilds the token from those
claims and runs simplejwt's `verify()` again (expiry against the current time, token type, jti); whatever fails
there goes through the full path again, so the error is simplejwt's own. HMAC verification is deterministic, so
the cache changes nothing a signature check would decide; the only time-dependent claim simplejwt sets is `exp`
(nbf/iat only become more valid as time passes). Access tokens have no blacklist in simplejwt (refresh tokens do);
their revocation is the user-row check above, which runs on every request.

Kept apart from backend/accounts/auth.py, which imports the error module (DRF imports this one early).
"""

import logging

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils.translation import gettext_lazy as _
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.exceptions import AuthenticationFailed, InvalidToken, TokenError
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.tokens import AccessToken
from rest_framework_simplejwt.utils import aware_utcnow

from backend.core import throttling

logger = logging.getLogger(__name__)


def user_may_authenticate(user) -> bool:
    """simplejwt rule: deactivated, suspended and erased users get no tokens, and their still-valid access tokens
    stop at once (CachedUserJWTAuthentication applies it on every request)."""
    return user is not None and user.is_active and user.status == user.Status.ACTIVE


_FORGOTTEN = "forgotten"


def _auth_key(user_id) -> str:
    return f"auth-user:{user_id}"


def _user_load(user_id):
    from backend.accounts.models import User

    return User.objects.filter(**{api_settings.USER_ID_FIELD: user_id}).first()


def _cached_with_throttles(key: str, request, user_id):
    """The cached entry at `key` read in one Redis round trip with the request's throttle counters (they are kept on
    the request for the throttles); a plain cache GET when the cache is not django-redis."""
    client = throttling._redis_client()
    if client is None or request is None:
        return cache.get(key)
    pipe = client.pipeline(transaction=False)
    pipe.get(cache.make_key(key))
    queued = throttling.prefetch_add(pipe, request, user_id)
    reads = throttling.reads_add(pipe, request)  # a cached list's version and page (throttling.reads_add)
    raw, *replies = pipe.execute()
    throttling.prefetch_store(request, queued, replies[: len(replies) - len(reads)])
    throttling.reads_store(request, reads, replies[len(replies) - len(reads) :])
    return None if raw is None else cache.client.decode(raw)


def auth_user_get(user_id, request=None):
    """The user row for an access token's user id (None when there is none), from the cache when it can be. With the
    DRF `request`, its throttles' counters come in the same Redis round trip."""
    ttl = settings.AUTH_USER_CACHE_SECONDS
    if ttl <= 0:
        return _user_load(user_id)
    key = _auth_key(user_id)
    try:
        cached = _cached_with_throttles(key, request, user_id)
    except Exception:
        logger.warning("auth user cache unavailable; reading the database", exc_info=True)
        return _user_load(user_id)
    if cached is not None and not isinstance(cached, str):  # a str is the marker
        return cached
    user = _user_load(user_id)
    if cached is None and user_may_authenticate(user):
        try:
            cache.add(key, user, timeout=ttl)  # NX: never over a marker written by a change
        except Exception:
            logger.warning("could not cache an auth user", exc_info=True)
    return user


def _forget(user_id) -> None:
    try:
        cache.set(_auth_key(user_id), _FORGOTTEN, timeout=max(settings.AUTH_USER_CACHE_SECONDS, 1))
    except Exception:
        logger.warning("could not drop a cached auth user; it expires within AUTH_USER_CACHE_SECONDS", exc_info=True)


def auth_user_forget(user_id) -> None:
    """A user row changed: requests read it from the database, now and from this transaction's commit on."""
    if settings.AUTH_USER_CACHE_SECONDS <= 0:
        return
    _forget(user_id)
    transaction.on_commit(lambda: _forget(user_id))


_VERIFIED: dict[bytes, dict] = {}
VERIFIED_MAX = 4096  # ~1-2 MB per process; a fuller cache starts again (the next use of a token re-verifies it)


def _verified_token(raw_token: bytes):
    """The validated access token for `raw_token` from `_VERIFIED`, its claims re-verified now; None on a miss or
    when the re-verification fails (the caller then runs simplejwt's full validation and its error)."""
    payload = _VERIFIED.get(raw_token)
    if payload is None:
        return None
    token = AccessToken.__new__(AccessToken)  # what Token.__init__ sets, without decoding again
    token.token = raw_token
    token.current_time = aware_utcnow()
    token.payload = dict(payload)  # a request may not change the cached claims
    try:
        token.verify()
    except TokenError:
        _VERIFIED.pop(raw_token, None)
        return None
    return token


def _remember_verified(raw_token: bytes, token) -> None:
    if type(token) is not AccessToken:
        return
    if len(_VERIFIED) >= VERIFIED_MAX:
        _VERIFIED.clear()
    _VERIFIED[raw_token] = dict(token.payload)


class CachedUserJWTAuthentication(JWTAuthentication):
    """simplejwt's JWTAuthentication with the user row from `auth_user_get`, and `user_may_authenticate`
    (active, not suspended, not erased) checked on every request, not only when tokens are issued."""

    def authenticate(self, request):
        self._request = request  # get_user reads the throttles' counters in the user row's round trip
        try:
            return super().authenticate(request)
        except Exception:
            throttling.prefetch_release(request)  # refused: the throttles would not have counted it
            raise
        finally:
            self._request = None

    def get_validated_token(self, raw_token):
        token = _verified_token(raw_token)
        if token is None:
            token = super().get_validated_token(raw_token)
            _remember_verified(raw_token, token)
        return token

    def get_user(self, validated_token):
        try:
            user_id = validated_token[api_settings.USER_ID_CLAIM]
        except KeyError:
            raise InvalidToken(_("Token contained no recognizable user identification")) from None
        user = auth_user_get(user_id, getattr(self, "_request", None))
        if user is None:
            raise AuthenticationFailed(_("User not found"), code="user_not_found")
        if not user_may_authenticate(user):
            raise AuthenticationFailed(_("User is inactive"), code="user_inactive")
        if api_settings.CHECK_REVOKE_TOKEN:
            from rest_framework_simplejwt.utils import get_md5_hash_password

            if validated_token.get(api_settings.REVOKE_TOKEN_CLAIM) != get_md5_hash_password(user.password):
                raise AuthenticationFailed(_("The user's password has been changed."), code="password_changed")
        return user
