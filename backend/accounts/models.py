from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class District(models.Model):
    """One of Qingdao's ten districts (GB/T 2260 code), seeded by a data migration."""

    code = models.CharField(primary_key=True, max_length=6)
    name_zh = models.CharField(max_length=32)
    name_en = models.CharField(max_length=64)
    co2_intensity_target_pct = models.DecimalField(max_digits=4, decimal_places=1)

    class Meta:
        verbose_name = _("district")
        verbose_name_plural = _("districts")
        ordering = ["code"]

    def __str__(self) -> str:
        return f"{self.code} {self.name_zh}"


class UserManager(BaseUserManager):
    def get_by_natural_key(self, phone):
        # The admin login form and ModelBackend pass the phone number as typed; look it up by keyed hash.
        from backend.accounts.phones import normalize_phone, phone_hash

        try:
            e164 = normalize_phone(phone)
        except Exception:
            raise self.model.DoesNotExist from None
        return self.get(phone_hash=phone_hash(e164))

    def create_user(self, phone, password=None, **extra):
        from backend.accounts.services import user_create

        return user_create(phone=phone, password=password, **extra)

    def create_superuser(self, phone, password=None, **extra):
        from backend.accounts.services import user_create

        return user_create(phone=phone, password=password, role=User.Role.ADMIN, **extra)


class User(AbstractBaseUser, PermissionsMixin):
    """A person. Login by mobile number (stored as a keyed hash + ciphertext) and password (Argon2)."""

    class Role(models.TextChoices):
        RESIDENT = "resident", _("Resident")
        MERCHANT_STAFF = "merchant_staff", _("Merchant staff")
        REVIEWER = "reviewer", _("Reviewer")
        ADMIN = "admin", _("Administrator")
        BUYER = "buyer", _("Company buyer (offsets)")

    class Status(models.TextChoices):
        ACTIVE = "active", _("Active")
        SUSPENDED = "suspended", _("Suspended")
        ERASED = "erased", _("Erased (PIPL)")

    # Null once erased: the unique lookup key of a deleted person must not block a new registration.
    phone_hash = models.CharField(max_length=64, unique=True, null=True, editable=False)
    phone_encrypted = models.TextField(blank=True, default="", editable=False)
    phone_masked = models.CharField(max_length=16, blank=True, default="", editable=False)
    display_name = models.CharField(max_length=64, blank=True, default="")
    district = models.ForeignKey(District, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.RESIDENT)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    is_active = models.BooleanField(default=True)
    date_joined = models.DateTimeField(default=timezone.now)
    erased_at = models.DateTimeField(null=True, blank=True)

    objects = UserManager()

    USERNAME_FIELD = "phone_hash"
    REQUIRED_FIELDS: list[str] = []

    class Meta:
        verbose_name = _("user")
        verbose_name_plural = _("users")
        constraints = [
            models.CheckConstraint(
                condition=Q(status="erased") | Q(phone_hash__isnull=False), name="user_phone_unless_erased"
            ),
            models.CheckConstraint(condition=~Q(status="erased") | Q(is_active=False), name="user_erased_inactive"),
        ]

    def __str__(self) -> str:
        return f"{self.display_name or 'user'} ({self.phone_masked or self.pk})"

    def get_full_name(self) -> str:
        """What the admin greets: the display name, else the masked number, never the 64-character hash."""
        return self.display_name or self.phone_masked or f"#{self.pk}"

    def get_short_name(self) -> str:
        return self.get_full_name()

    @property
    def is_staff(self) -> bool:
        """Reviewers and admins use the Django admin; what they may do there is set by permissions."""
        return self.is_active and self.role in (self.Role.ADMIN, self.Role.REVIEWER)

    def save(self, *args, **kwargs):
        # The admin role is the superuser; keep Django's flag derived from the role, never set on its own.
        self.is_superuser = self.role == self.Role.ADMIN and self.is_active
        if kwargs.get("update_fields") is not None and "role" in kwargs["update_fields"]:
            kwargs["update_fields"] = {*kwargs["update_fields"], "is_superuser"}
        adding = self._state.adding
        super().save(*args, **kwargs)
        if not adding:  # a changed row: requests stop using the cached copy (backend/accounts/authentication.py)
            from backend.accounts.authentication import auth_user_forget

            auth_user_forget(self.pk)

    def delete(self, *args, **kwargs):
        from backend.accounts.authentication import auth_user_forget

        pk = self.pk
        result = super().delete(*args, **kwargs)
        auth_user_forget(pk)
        return result


class Consent(models.Model):
    """A recorded consent: the privacy policy (version) and, separately, processing of transit and transaction
    records (PIPL 单独同意). Withdrawal sets withdrawn_at; a new grant is a new row, so history is kept."""

    class Kind(models.TextChoices):
        PRIVACY_POLICY = "privacy_policy", _("Privacy policy")
        PARTNER_DATA = "partner_data", _("Processing of transit and transaction records")
        # Whether the district stays with the anonymised account after erasure (city statistics by district).
        STATISTICS = "statistics", _("Use of my district in city statistics, also after account deletion")

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="consents")
    kind = models.CharField(max_length=32, choices=Kind.choices)
    version = models.CharField(max_length=32)
    granted_at = models.DateTimeField(default=timezone.now)
    withdrawn_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-granted_at", "-id"]
        constraints = [
            # At most one live consent of a kind per user.
            models.UniqueConstraint(
                fields=["user", "kind"], condition=Q(withdrawn_at__isnull=True), name="consent_one_live_per_kind"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} v{self.version} ({'withdrawn' if self.withdrawn_at else 'active'})"
