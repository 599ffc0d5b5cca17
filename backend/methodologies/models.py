"""Methodologies (方法学): a stable code plus immutable, reviewed versions of its parameters; the points policy,
versioned and reviewed the same way; the transition log; impact previews of a candidate version."""

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _


class VersionStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    IN_REVIEW = "in_review", "In review"
    APPROVED = "approved", "Approved (scheduled)"
    REJECTED = "rejected", "Rejected"
    ACTIVE = "active", "Active"
    RETIRED = "retired", "Retired"


# Statuses of versions that have been or will be in force (what the pipeline prices actions with).
IN_FORCE_STATUSES = (VersionStatus.APPROVED, VersionStatus.ACTIVE, VersionStatus.RETIRED)


class FormulaType(models.TextChoices):
    PER_DISTANCE = "per_distance"
    PER_TRIP = "per_trip"
    PER_STEP = "per_step"
    PER_MASS = "per_mass"
    PER_ENERGY = "per_energy"
    PER_ITEM = "per_item"
    APPLIANCE = "appliance"


class ListCacheInvalidating(models.Model):
    """Every save or delete invalidates the cached public list (backend/methodologies/cache.py)."""

    class Meta:
        abstract = True

    def save(self, *args, **kwargs):
        super().save(*args, **kwargs)
        from backend.methodologies.cache import methodologies_changed

        methodologies_changed()

    def delete(self, *args, **kwargs):
        result = super().delete(*args, **kwargs)
        from backend.methodologies.cache import methodologies_changed

        methodologies_changed()
        return result


class Methodology(ListCacheInvalidating):
    """A methodology's stable identity. What it pays lives in its versions."""

    code = models.SlugField(max_length=32, unique=True)
    name_zh = models.CharField(max_length=64)
    name_en = models.CharField(max_length=128)
    formula_type = models.CharField(max_length=16, choices=FormulaType.choices)
    # The action data it needs: {"distance_km": {"type": "decimal", "required": true}, "material": {"type":
    # "choice", "choices": [...], "required": true}, ...}; types: decimal, integer, string, choice.
    data_schema = models.JSONField(default=dict)
    description = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("methodology")
        verbose_name_plural = _("methodologies")
        ordering = ["code"]

    def __str__(self) -> str:
        return f"{self.code} {self.name_zh}"


class GovernedVersion(models.Model):
    """Fields and rules shared by every reviewed, versioned rule set (methodology versions, points policy)."""

    number = models.PositiveIntegerField()
    status = models.CharField(max_length=16, choices=VersionStatus.choices, default=VersionStatus.DRAFT)
    effective_from = models.DateTimeField(null=True, blank=True)
    effective_to = models.DateTimeField(null=True, blank=True)
    notes = models.TextField(blank=True, default="")
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    submitted_at = models.DateTimeField(null=True, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    decision_note = models.TextField(blank=True, default="")
    activated_at = models.DateTimeField(null=True, blank=True)
    retired_at = models.DateTimeField(null=True, blank=True)
    # Four eyes on retirement too: the first reviewer's request is recorded here; a different reviewer retires.
    retire_requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    retire_requested_at = models.DateTimeField(null=True, blank=True)

    PARENT_FIELD = ""

    class Meta:
        abstract = True

    @property
    def parent(self):
        return getattr(self, self.PARENT_FIELD)

    @property
    def parent_id(self) -> int:
        return getattr(self, f"{self.PARENT_FIELD}_id")


class MethodologyVersion(ListCacheInvalidating, GovernedVersion):
    """One immutable (once submitted) set of parameters of a methodology. draft -> in_review -> approved |
    rejected; approved -> active -> retired. Exactly one active per methodology (partial unique index)."""

    methodology = models.ForeignKey(Methodology, on_delete=models.PROTECT, related_name="versions")
    # {"baseline_g_per_pkm": {"value": "75", "unit": "g CO2e/pkm"}, ...}; validated against the formula type.
    parameters = models.JSONField(default=dict)
    validity_rules = models.JSONField(default=dict)
    # {"unit": "actions"|"distance_km"|"steps"|"mass_kg"|"energy_kwh"|"count", "limit": "6"} or null.
    daily_cap = models.JSONField(null=True, blank=True)
    # {"partner": "1", "merchant_receipt": "1", "self_report": "0.5"}: share of the reduction each level earns.
    evidence_shares = models.JSONField(default=dict)
    evidence_description = models.TextField(blank=True, default="")
    self_report_allowed = models.BooleanField(default=False)
    # [{"title": "...", "url": "...", "note": "..."}]
    sources = models.JSONField(default=list)

    PARENT_FIELD = "methodology"
    # The one list of a version's content: what is validated, compared (diff, admin side by side) and seeded.
    CONTENT_FIELDS = ("parameters", "validity_rules", "daily_cap", "evidence_shares", "self_report_allowed", "sources")

    class Meta:
        verbose_name = _("methodology version")
        verbose_name_plural = _("methodology versions")
        ordering = ["methodology_id", "number"]
        constraints = [
            models.UniqueConstraint(fields=["methodology", "number"], name="methodology_version_number_unique"),
            # The database, not only the service, guarantees one active version per methodology.
            models.UniqueConstraint(
                fields=["methodology"], condition=Q(status="active"), name="methodology_one_active_version"
            ),
            models.CheckConstraint(
                condition=Q(effective_to__isnull=True)
                | Q(effective_from__isnull=False, effective_to__gte=models.F("effective_from")),
                name="methodology_version_window_ordered",
            ),
            models.CheckConstraint(
                condition=~Q(status__in=["in_review", "approved", "active", "retired"])
                | Q(effective_from__isnull=False),
                name="methodology_version_submitted_has_start",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.methodology.code} v{self.number} ({self.status})"


class PointsPolicy(models.Model):
    """The one points policy (a parent row, so versions are locked and numbered like methodology versions)."""

    code = models.SlugField(max_length=32, unique=True, default="default")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "points policies"

    def __str__(self) -> str:
        return self.code


class PointsPolicyVersion(GovernedVersion):
    """How many points a gram CO2e earns and how long points live. New versions apply to new credits only."""

    policy = models.ForeignKey(PointsPolicy, on_delete=models.PROTECT, related_name="versions")
    points_per_gram = models.DecimalField(max_digits=12, decimal_places=6, default=Decimal(1))
    lot_expiry_months = models.PositiveSmallIntegerField(default=12)

    PARENT_FIELD = "policy"

    class Meta:
        verbose_name = _("points policy version")
        verbose_name_plural = _("points policy versions")
        ordering = ["policy_id", "number"]
        constraints = [
            models.UniqueConstraint(fields=["policy", "number"], name="points_policy_version_number_unique"),
            models.UniqueConstraint(fields=["policy"], condition=Q(status="active"), name="points_policy_one_active"),
            models.CheckConstraint(condition=Q(points_per_gram__gte=0), name="points_per_gram_not_negative"),
            models.CheckConstraint(condition=Q(lot_expiry_months__gte=1), name="points_lot_expiry_positive"),
            models.CheckConstraint(
                condition=Q(effective_to__isnull=True)
                | Q(effective_from__isnull=False, effective_to__gte=models.F("effective_from")),
                name="points_policy_window_ordered",
            ),
        ]

    def __str__(self) -> str:
        return f"points policy v{self.number} ({self.status})"


class VersionTransition(models.Model):
    """Who moved which version from what to what, when, and why. Append-only."""

    methodology_version = models.ForeignKey(
        MethodologyVersion, null=True, blank=True, on_delete=models.CASCADE, related_name="transitions"
    )
    points_policy_version = models.ForeignKey(
        PointsPolicyVersion, null=True, blank=True, on_delete=models.CASCADE, related_name="transitions"
    )
    from_status = models.CharField(max_length=16, blank=True, default="")
    to_status = models.CharField(max_length=16)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    note = models.TextField(blank=True, default="")
    at = models.DateTimeField()

    class Meta:
        ordering = ["at", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(methodology_version__isnull=False, points_policy_version__isnull=True)
                | Q(methodology_version__isnull=True, points_policy_version__isnull=False),
                name="transition_exactly_one_version",
            )
        ]

    def __str__(self) -> str:
        return f"{self.from_status or '-'} -> {self.to_status} at {self.at:%Y-%m-%d %H:%M}"


class ImpactPreview(models.Model):
    """What the verified actions of the last `days` days would have earned under a candidate version."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    version = models.ForeignKey(MethodologyVersion, on_delete=models.CASCADE, related_name="previews")
    days = models.PositiveSmallIntegerField(default=30)
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    progress_done = models.BigIntegerField(default=0)
    progress_total = models.BigIntegerField(default=0)
    result = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("impact preview")
        verbose_name_plural = _("impact previews")
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"preview {self.pk} of version {self.version_id} ({self.status})"
