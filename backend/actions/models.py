from decimal import Decimal

from django.conf import settings
from django.db import models


class Action(models.Model):
    """One low-carbon action of a resident (filled by the ingestion pipeline). The methodology impact preview
    reads credited actions."""

    class Status(models.TextChoices):
        RECEIVED = "received"
        UNCLAIMED = "unclaimed"
        REJECTED = "rejected"
        FLAGGED = "flagged"
        PENDING_REVIEW = "pending_review"
        CREDITED = "credited"

    resident = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="actions"
    )
    methodology = models.CharField(max_length=32, db_index=True)  # methodology code
    methodology_version = models.ForeignKey(
        "methodologies.MethodologyVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    occurred_at = models.DateTimeField()
    data = models.JSONField(default=dict)  # numbers stored as decimal strings
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RECEIVED)
    evidence_share = models.DecimalField(max_digits=5, decimal_places=4, default=Decimal(1))
    grams = models.BigIntegerField(default=0)
    points = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["status", "occurred_at"]), models.Index(fields=["resident", "occurred_at"])]

    def __str__(self) -> str:
        return f"{self.methodology} action {self.pk} ({self.status})"
