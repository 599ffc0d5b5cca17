"""Every write on accounts: registration, profile, consents, erasure."""

from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from rest_framework.exceptions import ValidationError
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken
from rest_framework_simplejwt.tokens import RefreshToken

from backend.accounts.models import Consent, District, User
from backend.accounts.phones import mask_phone, normalize_phone, phone_hash
from backend.core.crypto import encrypt
from backend.core.errors import ApplicationError, ConflictError

ERASED_DISPLAY_NAME = "已注销用户"


def _district_or_error(code: str | None) -> District | None:
    if code in (None, ""):
        return None
    district = District.objects.filter(code=code).first()
    if district is None:
        raise ValidationError({"district": [_("Unknown district code.")]}, code="district_unknown")
    return district


@transaction.atomic
def user_create(
    *,
    phone: str,
    password: str | None,
    role: str = User.Role.RESIDENT,
    display_name: str = "",
    district: str | None = None,
    validate: bool = True,
) -> User:
    """Create a user of any role. The number is stored as a keyed hash (lookup) plus ciphertext, never plain."""
    e164 = normalize_phone(phone)
    if role not in User.Role.values:
        raise ValidationError({"role": [_("Unknown role.")]}, code="role_unknown")
    user = User(
        phone_hash=phone_hash(e164),
        phone_encrypted=encrypt(e164),
        phone_masked=mask_phone(e164),
        display_name=display_name,
        district=_district_or_error(district),
        role=role,
    )
    if password:
        if validate:
            try:
                validate_password(password, user)
            except DjangoValidationError as exc:
                raise ValidationError({"password": list(exc.messages)}, code="password_weak") from None
        user.set_password(password)
    else:
        user.set_unusable_password()
    try:
        with transaction.atomic():
            user.save()
    except IntegrityError:
        raise ConflictError(_("This phone number is already registered."), code="phone_taken", attr="phone") from None
    return user


@transaction.atomic
def user_register(
    *,
    phone: str,
    password: str,
    display_name: str,
    district: str | None,
    partner_data_consent: bool,
    statistics_consent: bool = False,
) -> User:
    """A resident signs up: accepting the current privacy policy is part of registering; processing of transit
    and transaction records is a separate, optional consent (PIPL art. 29 / 单独同意)."""
    user = user_create(phone=phone, password=password, display_name=display_name, district=district)
    Consent.objects.create(user=user, kind=Consent.Kind.PRIVACY_POLICY, version=settings.PRIVACY_POLICY_VERSION)
    if partner_data_consent:
        Consent.objects.create(user=user, kind=Consent.Kind.PARTNER_DATA, version=settings.PRIVACY_POLICY_VERSION)
    if statistics_consent:
        Consent.objects.create(user=user, kind=Consent.Kind.STATISTICS, version=settings.PRIVACY_POLICY_VERSION)
    return user


@transaction.atomic
def user_update_profile(*, user: User, display_name: str | None = None, district: str | None = "__keep__") -> User:
    fields = []
    if display_name is not None:
        user.display_name = display_name
        fields.append("display_name")
    if district != "__keep__":
        user.district = _district_or_error(district)
        fields.append("district")
    if fields:
        user.save(update_fields=fields)
    return user


@transaction.atomic
def user_set_role(*, user_id: int, role: str, actor) -> User:
    """An administrator changes someone's role (the admin role is the superuser). Nobody changes their own."""
    user = User.objects.select_for_update().get(pk=user_id)
    if role not in User.Role.values:
        raise ValidationError({"role": [_("Unknown role.")]}, code="role_unknown")
    if user.pk == getattr(actor, "pk", None):
        raise ApplicationError(_("You cannot change your own role."), code="own_role", status_code=403)
    if user.status == User.Status.ERASED:
        raise ConflictError(_("This account is erased."), code="user_erased")
    user.role = role
    user.save(update_fields=["role"])
    return user


@transaction.atomic
def user_set_status(*, user_id: int, status: str, actor) -> User:
    """Suspend (tokens revoked, no login) or reactivate an account. Erasure is `user_erase`, never a status."""
    if status not in (User.Status.ACTIVE, User.Status.SUSPENDED):
        raise ValidationError({"status": [_("Use erasure to erase an account.")]}, code="status_invalid")
    user = User.objects.select_for_update().get(pk=user_id)
    if user.status == User.Status.ERASED:
        raise ConflictError(_("This account is erased."), code="user_erased")
    if user.pk == getattr(actor, "pk", None):
        raise ApplicationError(_("You cannot change your own status."), code="own_status", status_code=403)
    user.status = status
    user.save(update_fields=["status", "is_superuser"])
    if status == User.Status.SUSPENDED:
        _blacklist_all_tokens(user)
    return user


@transaction.atomic
def consent_set(*, user: User, kind: str, granted: bool) -> Consent | None:
    """Grant or withdraw a consent. Granting twice keeps the live one; withdrawing keeps the history row."""
    live = Consent.objects.select_for_update().filter(user=user, kind=kind, withdrawn_at__isnull=True).first()
    if granted:
        if live is not None:
            return live
        return Consent.objects.create(user=user, kind=kind, version=settings.PRIVACY_POLICY_VERSION)
    if kind == Consent.Kind.PRIVACY_POLICY:
        raise ValidationError(
            {"kind": [_("The privacy policy cannot be withdrawn; delete the account instead.")]},
            code="consent_required",
        )
    if live is not None:
        live.withdrawn_at = timezone.now()
        live.save(update_fields=["withdrawn_at"])
    return live


def user_has_partner_data_consent(*, user_id: int) -> bool:
    return Consent.objects.filter(user_id=user_id, kind=Consent.Kind.PARTNER_DATA, withdrawn_at__isnull=True).exists()


def _blacklist_all_tokens(user: User) -> None:
    outstanding = OutstandingToken.objects.filter(user=user).exclude(blacklistedtoken__isnull=False)
    BlacklistedToken.objects.bulk_create([BlacklistedToken(token=t) for t in outstanding], ignore_conflicts=True)


@transaction.atomic
def user_erase(*, user: User) -> User:
    """PIPL erasure (删除权): deactivate the account and remove or generalise its personal data, in every domain.

    The steps and what each leaves, model by model and column by column, are declared in
    `backend/accounts/erasure.py`. The user row itself stays, anonymised, because ledger accounts are keyed by
    its id: aggregate figures (credited grams per district and day, issued points) stay consistent."""
    from backend.accounts.erasure import erase_user

    user = User.objects.select_for_update().get(pk=user.pk)
    erase_user(user=user)
    user.refresh_from_db()
    return user


def account_erase_prepare(*, user: User, context: dict) -> None:
    """Erasure step 1: remember whether the resident consented to statistics (their district is kept only
    then) before any consent is withdrawn."""
    context["statistics_consent"] = Consent.objects.filter(
        user=user, kind=Consent.Kind.STATISTICS, withdrawn_at__isnull=True
    ).exists()


def _local_month_start(moment):
    from backend.core.days import SHANGHAI

    local = moment.astimezone(SHANGHAI)
    return local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def account_erase_personal_data(*, user: User, context: dict) -> None:
    """Erasure step: the user row loses its phone, name, password, last login and exact sign-up time (the month
    stays), the district unless the resident consented to statistics; consents are withdrawn (the rows are the
    legal trail), every refresh token is blacklisted, groups and permissions dropped."""
    now = timezone.now()
    user.phone_hash = None
    user.phone_encrypted = ""
    user.phone_masked = ""
    user.display_name = ERASED_DISPLAY_NAME
    if not context.get("statistics_consent"):
        user.district = None
    user.status = User.Status.ERASED
    user.is_active = False
    user.erased_at = now
    user.date_joined = _local_month_start(user.date_joined)
    user.set_unusable_password()
    user.last_login = None
    user.save()
    user.groups.clear()
    user.user_permissions.clear()
    Consent.objects.filter(user=user, withdrawn_at__isnull=True).update(withdrawn_at=now)
    _blacklist_all_tokens(user)


def logout(*, refresh_token: str, user: User) -> None:
    """Blacklist one of the user's refresh tokens. Someone else's token is treated as invalid."""
    try:
        token = RefreshToken(refresh_token)
        if str(token.get(api_settings.USER_ID_CLAIM)) != str(user.pk):
            raise TokenError("not this user's token")
        token.blacklist()
    except TokenError:
        raise ApplicationError(_("Token is invalid or expired."), code="token_not_valid", attr="refresh") from None
