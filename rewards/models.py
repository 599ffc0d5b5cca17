"""Rewards tables: merchants and their staff, the reward catalogue, vouchers and per-resident limit usage.

Invariants live in the database: stock never below zero (CHECK), one voucher per (resident, Idempotency-Key)
(UNIQUE), a voucher code is unique, a limit-usage row is the claim that enforces "n per period" (upsert with a
guarded `count < limit`, see rewards/locking.py), and a voucher's status matches its timestamps (CHECK).
Points never live here: they are in the ledger (`system:redemption_hold` while a voucher is issued).
"""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class Category(models.TextChoices):
    FOOD = "food", _("Food and drink")
    TRANSPORT = "transport", _("Transport")
    GROCERY = "grocery", _("Grocery")
    CULTURE = "culture", _("Culture and leisure")
    SERVICES = "services", _("Services")
    OTHER = "other", _("Other")


class Merchant(models.Model):
    """A shop or service that lists rewards and validates vouchers at its counters."""

    class Status(models.TextChoices):
        ACTIVE = "active", _("Active")
        SUSPENDED = "suspended", _("Suspended")

    name_zh = models.CharField(max_length=120)
    name_en = models.CharField(max_length=120, blank=True, default="")
    district = models.ForeignKey("accounts.District", on_delete=models.PROTECT, related_name="+")
    address = models.CharField(max_length=255, blank=True, default="")
    category = models.CharField(max_length=16, choices=Category.choices, default=Category.OTHER)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    created_at = models.DateTimeField(default=timezone.now)
    # Stripe Connect account (acct_...) that settlements are transferred to; blank = paid by hand (`manual`).
    stripe_account_id = models.CharField(max_length=255, blank=True, default="")

    class Meta:
        verbose_name = _("merchant")
        verbose_name_plural = _("merchants")

    def __str__(self) -> str:
        return f"{self.name_zh} ({self.pk})"


class MerchantStaff(models.Model):
    """A user with role `merchant_staff` working for exactly one merchant. Managers add and remove staff."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="merchant_staff")
    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, related_name="staff")
    is_manager = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "merchant staff"

    def __str__(self) -> str:
        return f"staff {self.user_id} of merchant {self.merchant_id}"


class Reward(models.Model):
    """Something a resident buys with points. `stock` NULL means unlimited; the per-resident limit counts
    redemptions per Asia/Shanghai calendar period (cancelled and expired vouchers give their claim back)."""

    class Status(models.TextChoices):
        ACTIVE = "active", _("Active")
        PAUSED = "paused", _("Paused")
        ARCHIVED = "archived", _("Archived")

    class Period(models.TextChoices):
        DAY = "day", _("Per day")
        WEEK = "week", _("Per week")
        MONTH = "month", _("Per month")
        EVER = "ever", _("Ever")

    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, related_name="rewards")
    title_zh = models.CharField(max_length=120)
    title_en = models.CharField(max_length=120, blank=True, default="")
    description_zh = models.TextField(max_length=2000, blank=True, default="")
    description_en = models.TextField(max_length=2000, blank=True, default="")
    category = models.CharField(max_length=16, choices=Category.choices, default=Category.OTHER)
    image = models.ImageField(upload_to="rewards/", blank=True, default="")
    points_cost = models.PositiveIntegerField()
    stock = models.IntegerField(null=True, blank=True)
    limit_count = models.PositiveIntegerField(null=True, blank=True)
    limit_period = models.CharField(max_length=8, choices=Period.choices, blank=True, default="")
    valid_from = models.DateTimeField(default=timezone.now)
    valid_until = models.DateTimeField(null=True, blank=True)
    voucher_validity_days = models.PositiveSmallIntegerField(default=30)
    district = models.ForeignKey("accounts.District", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    face_value_minor = models.BigIntegerField(default=0)
    currency = models.CharField(max_length=3, default="CNY")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("reward")
        verbose_name_plural = _("rewards")
        indexes = [
            models.Index(fields=["merchant", "-id"], name="reward_merchant"),
            models.Index(fields=["status", "-id"], name="reward_status"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(stock__isnull=True) | Q(stock__gte=0), name="reward_stock_gte_0"),
            models.CheckConstraint(condition=Q(points_cost__gt=0), name="reward_points_cost_gt_0"),
            models.CheckConstraint(condition=Q(face_value_minor__gte=0), name="reward_face_value_gte_0"),
            models.CheckConstraint(
                condition=Q(voucher_validity_days__gte=1) & Q(voucher_validity_days__lte=366),
                name="reward_voucher_validity_range",
            ),
            models.CheckConstraint(
                condition=(Q(limit_count__isnull=True) & Q(limit_period=""))
                | (Q(limit_count__gte=1) & ~Q(limit_period="")),
                name="reward_limit_count_iff_period",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.title_zh} ({self.pk})"


class Voucher(models.Model):
    """A redeemed reward: points held in `system:redemption_hold` until the merchant captures them at the
    counter (`redeemed`), or given back when the resident cancels or the voucher expires."""

    class Status(models.TextChoices):
        ISSUED = "issued", _("Issued")
        REDEEMED = "redeemed", _("Redeemed")
        CANCELLED = "cancelled", _("Cancelled")
        EXPIRED = "expired", _("Expired")

    # Every index of this table is written by each redemption (the hot path): only those a query needs.
    # Unique through `voucher_code_unique` (a constraint: no second, LIKE-only index of the code).
    code = models.CharField(max_length=16)
    reward = models.ForeignKey(Reward, on_delete=models.PROTECT, related_name="vouchers")
    # merchant and resident: their lookups use the composite indexes below (leading column), no index of their own
    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, related_name="vouchers", db_index=False)
    # PROTECT: vouchers are settlement records. Erasure anonymises the user row, which stays.
    resident = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="vouchers", db_index=False
    )
    idempotency_key = models.CharField(max_length=100)
    request_hash = models.CharField(max_length=64)
    points_cost = models.PositiveIntegerField()
    face_value_minor = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    limit_period_key = models.CharField(max_length=16, blank=True, default="")
    stock_taken = models.BooleanField(default=False)  # one item left a limited stock (given back on release)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ISSUED)
    issued_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    redeemed_at = models.DateTimeField(null=True, blank=True)
    redeemed_by = models.ForeignKey(  # indexed only once set (`voucher_redeemed_by`): not at issue
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    closed_at = models.DateTimeField(null=True, blank=True)  # cancelled or expired

    class Meta:
        verbose_name = _("voucher")
        verbose_name_plural = _("vouchers")
        indexes = [
            models.Index(fields=["resident", "-id"], name="voucher_resident"),
            models.Index(fields=["merchant", "-id"], name="voucher_merchant"),
            models.Index(
                fields=["merchant", "redeemed_at"],
                condition=Q(redeemed_at__isnull=False),
                name="voucher_merchant_redeemed",
            ),
            models.Index(fields=["redeemed_by"], condition=Q(redeemed_by__isnull=False), name="voucher_redeemed_by"),
            models.Index(fields=["expires_at"], condition=Q(status="issued"), name="voucher_issued_due"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["code"], name="voucher_code_unique"),
            # The idempotency claim: a second request with the same key finds the first voucher.
            models.UniqueConstraint(fields=["resident", "idempotency_key"], name="voucher_resident_idem_key"),
            models.CheckConstraint(
                condition=(Q(status="redeemed") & Q(redeemed_at__isnull=False))
                | (~Q(status="redeemed") & Q(redeemed_at__isnull=True)),
                name="voucher_redeemed_at_iff_redeemed",
            ),
            models.CheckConstraint(
                condition=(Q(status__in=["cancelled", "expired"]) & Q(closed_at__isnull=False))
                | (~Q(status__in=["cancelled", "expired"]) & Q(closed_at__isnull=True)),
                name="voucher_closed_at_iff_closed",
            ),
        ]

    def __str__(self) -> str:
        return f"voucher {self.code} ({self.status})"


class RewardLimitUsage(models.Model):
    """How many vouchers a resident holds of one reward in one period (`2026-11-27`, `2026-W48`, `2026-11`,
    `ever`). Written by one guarded upsert in the redemption transaction: the row is the claim."""

    reward = models.ForeignKey(Reward, on_delete=models.PROTECT, related_name="+")
    resident = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    period_key = models.CharField(max_length=16)
    count = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["reward", "resident", "period_key"], name="reward_limit_usage_unique"),
            models.CheckConstraint(condition=Q(count__gte=0), name="reward_limit_usage_gte_0"),
        ]

    def __str__(self) -> str:
        return f"{self.resident_id} x{self.count} of reward {self.reward_id} in {self.period_key}"
