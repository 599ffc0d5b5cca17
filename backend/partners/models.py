from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class Partner(models.Model):
    """A data partner (transit operator, metro, bike-share, recycling stations ...). Not a user: it signs its
    requests with an HMAC secret (up to two active at once, so secrets rotate without downtime)."""

    class Status(models.TextChoices):
        ACTIVE = "active", _("Active")
        SUSPENDED = "suspended", _("Suspended")

    name = models.CharField(max_length=128, unique=True)
    # Methodology codes this partner may submit (checked per action: `methodology_not_allowed`).
    methodologies = models.JSONField(default=list)
    # Subject kinds (SubjectKind values) this partner attests card/account links for (POST /partner/links):
    # another kind is 403 `subject_kind_not_allowed`.
    subject_kinds = models.JSONField(default=list, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    # Signature v1 signs only timestamp, nonce and body. It stays accepted until an admin turns it off for the
    # partner (after the partner moved to v2: X-Signature-Version: 2).
    signature_v1_allowed = models.BooleanField(
        default=True, help_text="Accept signature v1 (timestamp.nonce.body) besides v2 from this partner."
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("partner")
        verbose_name_plural = _("partners")

    def __str__(self) -> str:
        return self.name


class PartnerSecret(models.Model):
    """An HMAC secret, stored encrypted (Fernet). Retired secrets stay for the audit trail."""

    class Status(models.TextChoices):
        ACTIVE = "active", _("Active")
        RETIRED = "retired", _("Retired")

    partner = models.ForeignKey(Partner, on_delete=models.CASCADE, related_name="secrets")
    secret_encrypted = models.TextField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    created_at = models.DateTimeField(default=timezone.now)
    retired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status="active", retired_at__isnull=True) | Q(status="retired", retired_at__isnull=False),
                name="partner_secret_retired_at_matches_status",
            )
        ]

    def __str__(self) -> str:
        return f"secret #{self.pk} of {self.partner_id} ({self.status})"


class PartnerNonce(models.Model):
    """Nonces of accepted signed requests. Recorded in the request's own transaction, so a rejected request
    leaves none behind and a replay of an accepted one hits the unique constraint (409 nonce_reused)."""

    partner = models.ForeignKey(Partner, on_delete=models.CASCADE, related_name="+")
    nonce = models.CharField(max_length=128)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["partner", "nonce"], name="partner_nonce_unique")]

    def __str__(self) -> str:
        return f"{self.partner_id}:{self.nonce}"
