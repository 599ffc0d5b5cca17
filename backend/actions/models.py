from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class SubjectKind(models.TextChoices):
    TRANSIT_CARD = "transit_card", _("Transit card (琴岛通)")
    METRO_CARD = "metro_card", _("Metro card")
    BIKE_ACCOUNT = "bike_account", _("Bike-share account")
    RECYCLING_ACCOUNT = "recycling_account", _("Recycling account")
    CHARGING_ACCOUNT = "charging_account", _("Charging account")
    MERCHANT_RECEIPT = "merchant_receipt", _("Merchant receipt")


class SubjectBindingQuerySet(models.QuerySet):
    def live(self):
        return self.filter(ended_at__isnull=True)


class SubjectBinding(models.Model):
    """A resident's card or account at a data partner, attested by the partner (issue 11: a resident never
    binds a card by typing its number). The identifier is personal data: only a keyed hash (for matching
    partner data) and its last four characters (for display) are stored. A binding that moves to another
    resident (the partner is the authority on who holds a card), is unlinked or ended by the partner keeps its
    row with `ended_at`: what was credited while it was live stays explained."""

    class EndReason(models.TextChoices):
        MOVED = "moved", _("Linked to another resident by the partner")
        PARTNER_ENDED = "partner_ended", _("Ended by the partner (card lost, account closed)")
        RESIDENT_UNLINKED = "resident_unlinked", _("Unlinked by the resident")

    resident = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="bindings")
    kind = models.CharField(max_length=32, choices=SubjectKind.choices)
    identifier_hash = models.CharField(max_length=64)
    identifier_last4 = models.CharField(max_length=4)
    partner = models.ForeignKey(
        "partners.Partner",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The partner that attested the link.",
    )
    created_at = models.DateTimeField(default=timezone.now)
    ended_at = models.DateTimeField(null=True, blank=True)
    end_reason = models.CharField(max_length=32, choices=EndReason.choices, blank=True, default="")

    objects = SubjectBindingQuerySet.as_manager()

    class Meta:
        verbose_name = _("subject binding")
        verbose_name_plural = _("subject bindings")
        ordering = ["-created_at", "-id"]
        constraints = [
            # One live binding per card: the database, not a check-then-insert, decides (a partial unique
            # index; ended bindings stay as history).
            models.UniqueConstraint(
                fields=["kind", "identifier_hash"],
                condition=Q(ended_at__isnull=True),
                name="binding_subject_live_unique",
            ),
            models.CheckConstraint(
                condition=Q(ended_at__isnull=True, end_reason="") | Q(ended_at__isnull=False) & ~Q(end_reason=""),
                name="binding_end_reason_matches",
            ),
        ]
        indexes = [models.Index(fields=["resident", "kind"], name="binding_resident_kind")]

    def __str__(self) -> str:
        return f"{self.kind} ****{self.identifier_last4}"


class LinkCode(models.Model):
    """A one-time code a resident types into a partner's app to link a card or account there (issue 11).
    Only a keyed hash is stored; 8 characters without look-alikes, valid 10 minutes, single use."""

    resident = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=32, choices=SubjectKind.choices)
    code_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    used_by = models.ForeignKey(
        "partners.Partner", null=True, blank=True, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    binding = models.ForeignKey(
        SubjectBinding, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )

    class Meta:
        indexes = [models.Index(fields=["resident", "expires_at"], name="linkcode_resident_expiry")]
        constraints = [
            models.CheckConstraint(
                condition=Q(used_at__isnull=True, used_by__isnull=True) | Q(used_at__isnull=False),
                name="linkcode_used_fields",
            )
        ]

    def __str__(self) -> str:
        return f"link code #{self.pk} ({self.kind})"


class IngestBatch(models.Model):
    """One signed partner request that was accepted (audit trail; the unit the pipeline is enqueued by)."""

    partner = models.ForeignKey("partners.Partner", on_delete=models.PROTECT, related_name="batches")
    nonce = models.CharField(max_length=128)
    received_at = models.DateTimeField(default=timezone.now)
    submitted = models.PositiveIntegerField(default=0)
    accepted = models.PositiveIntegerField(default=0)
    duplicates = models.PositiveIntegerField(default=0)
    rejected = models.PositiveIntegerField(default=0)
    # Set once none of the batch's actions is `received` any more (pipeline/process.py). The reconciler finds
    # work through the batches still without it: the action table has no index on its status (see Action).
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("ingest batch")
        verbose_name_plural = _("ingest batches")
        indexes = [
            models.Index(fields=["received_at"], name="ingestbatch_unprocessed", condition=Q(processed_at__isnull=True))
        ]

    def __str__(self) -> str:
        return f"batch {self.pk} of partner {self.partner_id}"


# The statuses that wait for a reviewer (Action.needs_review).
REVIEW_STATUSES = ("flagged", "pending_review")


class Action(models.Model):
    """One low-carbon action: a partner's record or a resident's self-report, and what became of it."""

    class Status(models.TextChoices):
        RECEIVED = "received", _("Received")
        UNCLAIMED = "unclaimed", _("Unclaimed (no bound resident yet)")
        REJECTED = "rejected", _("Rejected")
        FLAGGED = "flagged", _("Flagged for review")
        PENDING_REVIEW = "pending_review", _("Pending review")
        CREDITED = "credited", _("Credited")
        CAPPED = "capped", _("Over the daily cap")

    class Source(models.TextChoices):
        PARTNER = "partner", _("Partner data")
        SELF_REPORT = "self_report", _("Self-report")

    # Few indexes on purpose, and none on what processing changes: an action is inserted `received` (with its
    # resident when the card is bound at submission) and updated once when processed. No index names `status`,
    # in its columns or its conditions, so that update is a heap-only (HOT) update in the page the insert left
    # room in (fillfactor, migration 0010) and writes no index entry; `needs_review` and `resident` change only
    # for the few actions that go to review or are bound late. Users and versions are never deleted, so their
    # PROTECT foreign keys need no index of their own.
    resident = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="actions",
        db_index=False,
    )
    methodology = models.CharField(max_length=32)
    methodology_version = models.ForeignKey(
        "methodologies.MethodologyVersion",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,
    )
    occurred_at = models.DateTimeField()
    data = models.JSONField(default=dict)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RECEIVED)
    evidence_share = models.DecimalField(max_digits=5, decimal_places=4, default=Decimal(1))
    grams = models.BigIntegerField(default=0)
    points = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    # --- ingestion (issue 5) ---
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.PARTNER)
    partner = models.ForeignKey(
        "partners.Partner", null=True, blank=True, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    batch = models.ForeignKey(
        IngestBatch, null=True, blank=True, on_delete=models.PROTECT, related_name="actions", db_index=False
    )
    external_id = models.CharField(max_length=128, null=True, blank=True)
    subject_kind = models.CharField(max_length=32, choices=SubjectKind.choices, blank=True, default="")
    subject_hash = models.CharField(max_length=64, blank=True, default="")
    subject_last4 = models.CharField(max_length=4, blank=True, default="")
    reason = models.CharField(max_length=64, blank=True, default="", help_text="Why rejected / flagged / capped.")
    breakdown = models.JSONField(default=dict, blank=True)
    quantity = models.DecimalField(max_digits=18, decimal_places=6, default=Decimal(0))
    credited_quantity = models.DecimalField(max_digits=18, decimal_places=6, default=Decimal(0))
    capped_quantity = models.DecimalField(max_digits=18, decimal_places=6, default=Decimal(0))
    points_policy_version = models.ForeignKey(
        "methodologies.PointsPolicyVersion",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,
    )
    evidence = models.FileField(upload_to="evidence/%Y/%m/", blank=True, default="")
    processed_at = models.DateTimeField(null=True, blank=True)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)
    review_note = models.TextField(blank=True, default="")
    # `status` in (flagged, pending_review), kept by the writers of status and checked by the database: the
    # review queue's index condition (a condition on `status` itself would make every processing update non-HOT).
    needs_review = models.BooleanField(default=False)

    class Meta:
        verbose_name = _("action")
        verbose_name_plural = _("actions")
        indexes = [
            models.Index(fields=["resident", "occurred_at"]),
            # Unclaimed actions (no resident) are looked up by subject when a card is bound, and expired by
            # age: a partial index on what processing does not change.
            models.Index(
                fields=["subject_kind", "subject_hash", "occurred_at"],
                name="action_unbound_subject",
                condition=Q(resident__isnull=True),
            ),
            models.Index(fields=["resident", "-id"], name="action_resident_recent"),
            models.Index(fields=["batch"], name="action_batch"),  # the worker reads a batch's actions
            models.Index(fields=["id"], name="action_review_queue", condition=Q(needs_review=True)),
        ]
        constraints = [
            # Exactly once per partner record: resubmission is a duplicate, never a second credit.
            models.UniqueConstraint(fields=["partner", "external_id"], name="action_partner_external_unique"),
            models.CheckConstraint(condition=Q(grams__gte=0) & Q(points__gte=0), name="action_amounts_non_negative"),
            models.CheckConstraint(
                condition=Q(source="self_report") | (Q(partner__isnull=False) & Q(external_id__isnull=False)),
                name="action_partner_fields",
            ),
            models.CheckConstraint(
                condition=Q(needs_review=True, status__in=REVIEW_STATUSES)
                | (Q(needs_review=False) & ~Q(status__in=REVIEW_STATUSES)),
                name="action_needs_review_matches_status",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.methodology} #{self.pk} ({self.status})"


class ActionStatusChange(models.Model):
    """Every status an action went through, with who (a reviewer) or what (the pipeline) moved it and why."""

    action = models.ForeignKey(Action, on_delete=models.CASCADE, related_name="history")
    status = models.CharField(max_length=16, choices=Action.Status.choices)
    reason = models.CharField(max_length=64, blank=True, default="")
    note = models.TextField(blank=True, default="")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.action_id} -> {self.status}"


class DailyCapUsage(models.Model):
    """How much of a methodology's daily cap a resident has used on one Asia/Shanghai calendar day, and which
    action was given how much of it (`reservations`: action id -> decimal string, adding up to `used`).

    Rows are locked (in sorted order) by the pipeline in a short transaction of its own before crediting
    (pipeline/caps.py), so two workers crediting the same resident at once cannot both take the last ride under
    the cap; if crediting then fails or the worker dies, the retry finds its action's reservation here and uses
    it again instead of taking the cap twice."""

    # No index of its own: the unique (resident, methodology, day) below starts with the resident.
    resident = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", db_index=False)
    methodology = models.CharField(max_length=32)
    day = models.DateField()
    used = models.DecimalField(max_digits=18, decimal_places=6, default=Decimal(0))
    reservations = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["resident", "methodology", "day"], name="cap_usage_unique"),
            models.CheckConstraint(condition=Q(used__gte=0), name="cap_usage_non_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.resident_id} {self.methodology} {self.day}: {self.used}"


class HistoryClaim(models.Model):
    """A history rule's claim, written in the crediting transaction (pipeline/claims.py): the unique key
    (`serial:<methodology>:<SERIAL>`, `month:<methodology>:<subject>:<yyyy-mm>`) lets exactly one action
    of a race win. Dropped when its action is rejected (also on review)."""

    action = models.ForeignKey(Action, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255, unique=True)

    def __str__(self) -> str:
        return f"{self.key} -> {self.action_id}"


class PeriodClaim(models.Model):
    """A time range an action holds for a history rule: a trip [start, end) no trip of another origin of the
    same resident may overlap, or a weighing window [t - w/2, t + w/2) per resident and material. PostgreSQL
    enforces both with exclusion constraints (migration 0007, btree_gist); SQLite by its write lock."""

    class Kind(models.TextChoices):
        TRIP = "trip", _("Trip")
        WINDOW = "window", _("Duplicate window")

    # Indexed by the unique (action, kind) below.
    action = models.ForeignKey(Action, on_delete=models.CASCADE, related_name="+", db_index=False)
    kind = models.CharField(max_length=8, choices=Kind.choices)
    resident = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", db_index=False)
    scope = models.CharField(max_length=96)
    origin = models.CharField(max_length=48, blank=True, default="")
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["action", "kind"], name="period_claim_one_per_kind"),
            models.CheckConstraint(condition=Q(ends_at__gte=models.F("starts_at")), name="period_claim_ordered"),
        ]
        indexes = [models.Index(fields=["resident", "starts_at"], name="period_claim_resident_start")]

    def __str__(self) -> str:
        return f"{self.kind} {self.starts_at}..{self.ends_at} -> {self.action_id}"
