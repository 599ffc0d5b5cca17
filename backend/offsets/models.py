"""Offsets: certified inventory (batches of credited actions with per-kilogram serial ranges), company buyers,
orders paid through Stripe, retirement certificates and the Stripe events that drive them.

Lock order everywhere (see services): StripeEvent -> OffsetOrder -> CertificationBatch (by id) -> SerialRange
-> ledger accounts. The database keeps inventory right: a batch's counters always add up to its certified
kilograms and none is negative (CHECK), each action is certified at most once (UNIQUE), each PaymentIntent
belongs to one order (UNIQUE), each Stripe event is applied once (PRIMARY KEY + processed_at under a row lock).
"""

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class Buyer(models.Model):
    """The company behind a `buyer` account: name and unified social credit code (统一社会信用代码)."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, primary_key=True, related_name="buyer"
    )
    company_name = models.CharField(max_length=200)
    tax_id = models.CharField(max_length=18, unique=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("buyer")
        verbose_name_plural = _("buyers")

    def __str__(self) -> str:
        return f"{self.company_name} ({self.tax_id})"


class CertificationBatch(models.Model):
    """Credited actions of one methodology and period, certified together. Serial numbers 1..certified_kg, one
    per kilogram CO2e, live as SerialRange rows. A share of the grams (OFFSET_BUFFER_PERCENT, plus the grams
    below a whole kilogram) is kept back as a buffer: reversed actions come out of the buffer first, then out
    of unsold serials (voided), and only then is the batch short (`shortfall_kg`), never by un-selling a serial."""

    class Status(models.TextChoices):
        ACTIVE = "active", _("On sale")
        CLOSED = "closed", _("Closed")

    methodology = models.CharField(max_length=32)
    period_start = models.DateField()
    period_end = models.DateField()
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.ACTIVE)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True, blank=True
    )
    created_at = models.DateTimeField(default=timezone.now)
    action_count = models.PositiveIntegerField(default=0)
    total_grams = models.BigIntegerField(default=0)
    buffer_grams = models.BigIntegerField(default=0)
    certified_kg = models.BigIntegerField(default=0)
    available_kg = models.BigIntegerField(default=0)
    reserved_kg = models.BigIntegerField(default=0)
    sold_kg = models.BigIntegerField(default=0)
    void_kg = models.BigIntegerField(default=0)
    reversed_grams = models.BigIntegerField(default=0)
    shortfall_kg = models.BigIntegerField(default=0)

    class Meta:
        verbose_name = _("certification batch")
        verbose_name_plural = _("certification batches")
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(available_kg__gte=0)
                & Q(reserved_kg__gte=0)
                & Q(sold_kg__gte=0)
                & Q(void_kg__gte=0)
                & Q(buffer_grams__gte=0)
                & Q(reversed_grams__gte=0)
                & Q(shortfall_kg__gte=0),
                name="offsets_batch_counters_gte_0",
            ),
            # Every serial is in exactly one state: overselling would break this sum (or available >= 0).
            models.CheckConstraint(
                condition=Q(certified_kg=F("available_kg") + F("reserved_kg") + F("sold_kg") + F("void_kg")),
                name="offsets_batch_counters_add_up",
            ),
            models.CheckConstraint(
                condition=Q(total_grams=F("certified_kg") * 1000 + F("buffer_grams")),
                name="offsets_batch_grams_add_up",
            ),
            models.CheckConstraint(condition=Q(period_start__lte=F("period_end")), name="offsets_batch_period"),
        ]

    def __str__(self) -> str:
        return f"{self.code} {self.methodology} {self.period_start}..{self.period_end}"

    @property
    def code(self) -> str:
        return f"QDCI-{self.pk:06d}"


class CertifiedAction(models.Model):
    """An action certified in a batch: at most one batch, ever (the primary key is the action)."""

    action = models.OneToOneField("actions.Action", on_delete=models.PROTECT, primary_key=True, related_name="+")
    batch = models.ForeignKey(CertificationBatch, on_delete=models.PROTECT, related_name="actions")
    grams = models.BigIntegerField()
    reversed_at = models.DateTimeField(null=True, blank=True)
    reversal_reason = models.CharField(max_length=200, blank=True, default="")

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(grams__gt=0), name="offsets_certified_grams_gt_0")]

    def __str__(self) -> str:
        return f"action {self.action_id} in batch {self.batch_id}"


class SerialRange(models.Model):
    """Serials start..end (inclusive) of a batch, all in one state; reserved and sold ranges belong to an order.
    Ranges split when part of them is taken and merge again when given back."""

    class State(models.TextChoices):
        AVAILABLE = "available"
        RESERVED = "reserved"
        SOLD = "sold"
        VOID = "void"

    batch = models.ForeignKey(CertificationBatch, on_delete=models.PROTECT, related_name="ranges")
    start = models.BigIntegerField()
    end = models.BigIntegerField()
    state = models.CharField(max_length=10, choices=State.choices)
    order = models.ForeignKey("OffsetOrder", null=True, blank=True, on_delete=models.PROTECT, related_name="ranges")

    class Meta:
        ordering = ["batch_id", "start"]
        indexes = [models.Index(fields=["batch", "state", "start"], name="offsets_range_batch_state")]
        constraints = [
            models.CheckConstraint(condition=Q(start__gte=1) & Q(start__lte=F("end")), name="offsets_range_bounds"),
            models.CheckConstraint(
                condition=(Q(state__in=["reserved", "sold"]) & Q(order__isnull=False))
                | (Q(state__in=["available", "void"]) & Q(order__isnull=True)),
                name="offsets_range_order_iff_held",
            ),
            models.UniqueConstraint(fields=["batch", "start"], name="offsets_range_start_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.batch_id}:{self.start}-{self.end} {self.state}"

    @property
    def size(self) -> int:
        return self.end - self.start + 1


class OffsetOrder(models.Model):
    """A buyer's order: reserved inventory, a PaymentIntent, and what Stripe's events made of it."""

    class Status(models.TextChoices):
        RESERVED = "reserved", _("Reserved, awaiting payment")
        PAID = "paid", _("Paid, certificate issued")
        RELEASED = "released", _("Released (not paid)")
        REFUNDED = "refunded", _("Refunded, certificate revoked")
        PAID_UNFULFILLED = "paid_unfulfilled", _("Paid after release, inventory gone: refund in Stripe")

    buyer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="offset_orders")
    batch = models.ForeignKey(
        CertificationBatch, null=True, blank=True, on_delete=models.PROTECT, related_name="orders"
    )
    quantity_kg = models.BigIntegerField()
    price_cny_per_t = models.DecimalField(max_digits=12, decimal_places=2)
    amount_fen = models.BigIntegerField()
    currency = models.CharField(max_length=3, default="CNY")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RESERVED)
    idempotency_key = models.CharField(max_length=64, blank=True, default="")
    payment_intent_id = models.CharField(max_length=255, null=True, blank=True, unique=True)
    client_secret = models.CharField(max_length=255, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    reserved_until = models.DateTimeField()
    paid_at = models.DateTimeField(null=True, blank=True)
    released_at = models.DateTimeField(null=True, blank=True)
    release_reason = models.CharField(max_length=32, blank=True, default="")
    refund_seen_at = models.DateTimeField(null=True, blank=True)
    refunded_at = models.DateTimeField(null=True, blank=True)
    payment_txn_id = models.BigIntegerField(null=True, blank=True)
    # The part of a refund the reward fund could not cover, booked to system:reward_fund_deficit (fund.py).
    refund_shortfall_fen = models.BigIntegerField(default=0)

    class Meta:
        verbose_name = _("offset order")
        verbose_name_plural = _("offset orders")
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["reserved_until"], condition=Q(status="reserved"), name="offsets_order_due"),
            models.Index(fields=["buyer", "-id"], name="offsets_order_buyer"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(quantity_kg__gt=0) & Q(amount_fen__gt=0), name="offsets_order_positive"),
            models.CheckConstraint(
                condition=Q(refund_shortfall_fen__gte=0) & Q(refund_shortfall_fen__lte=F("amount_fen")),
                name="offsets_order_shortfall_in_range",
            ),
            models.UniqueConstraint(
                fields=["buyer", "idempotency_key"], condition=~Q(idempotency_key=""), name="offsets_order_idem"
            ),
        ]

    def __str__(self) -> str:
        return f"order {self.pk}: {self.quantity_kg} kg ({self.status})"


class Certificate(models.Model):
    """A retirement certificate: a public record (company, quantity, serial ranges, methodologies, status).
    Company name and code are copied at issue so the record stays what was certified."""

    class Status(models.TextChoices):
        ISSUED = "issued", _("Valid")
        REVOKED = "revoked", _("Revoked")

    order = models.OneToOneField(OffsetOrder, on_delete=models.PROTECT, related_name="certificate")
    buyer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="offset_certificates")
    code = models.CharField(max_length=32, unique=True)
    company_name = models.CharField(max_length=200)
    tax_id = models.CharField(max_length=18)
    quantity_kg = models.BigIntegerField()
    serial_ranges = models.JSONField(default=list)
    methodologies = models.JSONField(default=list)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.ISSUED)
    issued_at = models.DateTimeField(default=timezone.now)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("certificate")
        verbose_name_plural = _("certificates")
        ordering = ["-id"]
        constraints = [models.CheckConstraint(condition=Q(quantity_kg__gt=0), name="offsets_cert_qty_gt_0")]

    def __str__(self) -> str:
        return f"certificate {self.code} ({self.status})"


class StripeEvent(models.Model):
    """A verified Stripe event, recorded when received and applied once by a Celery task; `processed_at` is set
    in the same database transaction as the event's effect. An attempt that raises is counted (in a transaction
    of its own, after the rollback); after STRIPE_EVENT_MAX_ATTEMPTS the event is `failed` (`failed_at`): no
    longer retried automatically, listed in the admin, retried from there by hand."""

    event_id = models.CharField(max_length=255, primary_key=True)
    type = models.CharField(max_length=64)
    payload = models.JSONField()
    received_at = models.DateTimeField(default=timezone.now)
    processed_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=32, blank=True, default="")
    failed_attempts = models.PositiveIntegerField(default=0)
    last_error = models.CharField(max_length=500, blank=True, default="")
    failed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("stripe event")
        verbose_name_plural = _("stripe events")
        ordering = ["-received_at"]
        indexes = [
            models.Index(
                fields=["received_at"],
                condition=Q(processed_at__isnull=True, failed_at__isnull=True),
                name="offsets_event_todo",
            ),
            models.Index(fields=["failed_at"], condition=Q(failed_at__isnull=False), name="offsets_event_failed"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(processed_at__isnull=True) | Q(failed_at__isnull=True), name="offsets_event_done_or_failed"
            )
        ]

    def __str__(self) -> str:
        return f"{self.event_id} {self.type}"


class MerchantPayable(models.Model):
    """What the platform owes a merchant for one voucher captured at its counter (the reward's face value), in
    minor units. Created in the capture's transaction (one per voucher: UNIQUE), funded from the reward fund
    (`system:reward_fund:<cur>` -> `merchant:<id>:money:<cur>`) oldest first when the fund has the money, and
    settled at most once (a single `settlement` column, set by a guarded UPDATE)."""

    class Status(models.TextChoices):
        WAITING_FUNDS = "waiting_funds", _("Waiting for funds")
        FUNDED = "funded", _("Funded")
        SETTLED = "settled", _("In a settlement")

    voucher = models.OneToOneField("rewards.Voucher", on_delete=models.PROTECT, related_name="payable")
    merchant = models.ForeignKey("rewards.Merchant", on_delete=models.PROTECT, related_name="payables")
    amount_minor = models.BigIntegerField()
    currency = models.CharField(max_length=3, default="CNY")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.WAITING_FUNDS)
    created_at = models.DateTimeField(default=timezone.now)
    funded_at = models.DateTimeField(null=True, blank=True)
    funding_txn_id = models.BigIntegerField(null=True, blank=True)
    settlement = models.ForeignKey(
        "offsets.Settlement", null=True, blank=True, on_delete=models.PROTECT, related_name="payables"
    )

    class Meta:
        verbose_name = _("merchant payable")
        verbose_name_plural = _("merchant payables")
        ordering = ["id"]
        indexes = [
            models.Index(fields=["id"], condition=Q(status="waiting_funds"), name="offsets_payable_waiting"),
            models.Index(fields=["merchant", "status"], name="offsets_payable_merchant"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(amount_minor__gt=0), name="offsets_payable_amount_gt_0"),
            # The status says what the columns say: funded rows carry their ledger transaction, settled rows
            # their settlement, and only settled rows have one.
            models.CheckConstraint(
                condition=(
                    Q(status="waiting_funds", funding_txn_id__isnull=True, settlement__isnull=True)
                    | Q(status="funded", funding_txn_id__isnull=False, settlement__isnull=True)
                    | Q(status="settled", funding_txn_id__isnull=False, settlement__isnull=False)
                ),
                name="offsets_payable_status_columns",
            ),
        ]

    def __str__(self) -> str:
        return f"payable {self.pk} to merchant {self.merchant_id}: {self.amount_minor} {self.currency}"


class Settlement(models.Model):
    """A merchant's funded payables of one week (Asia/Shanghai, Monday to Sunday), paid once: by a Stripe Connect
    transfer (`transfer_group` = this id, idempotency key `settlement:<id>`) or by hand (`manual`) when the
    merchant has no connected account. `paying` is a claim with a lease (`claimed_until`): the transfer runs
    outside any database transaction, and a crash after it is retried with the same key, so the provider
    answers with the same transfer."""

    class Status(models.TextChoices):
        PENDING = "pending", _("To pay")
        PAYING = "paying", _("Transfer in progress")
        PAID = "paid", _("Paid")
        MANUAL = "manual", _("To pay by hand")

    merchant = models.ForeignKey("rewards.Merchant", on_delete=models.PROTECT, related_name="settlements")
    period_start = models.DateField()
    period_end = models.DateField()  # inclusive
    currency = models.CharField(max_length=3, default="CNY")
    amount_minor = models.BigIntegerField()
    payable_count = models.PositiveIntegerField()
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    destination = models.CharField(max_length=255, blank=True, default="")  # acct_... fixed at the first claim
    attempts = models.PositiveIntegerField(default=0)
    claimed_until = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True, default="")
    transfer_id = models.CharField(max_length=255, blank=True, default="")
    payout_txn_id = models.BigIntegerField(null=True, blank=True)
    manual_reference = models.CharField(max_length=255, blank=True, default="")
    manual_paid_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True, blank=True
    )
    created_at = models.DateTimeField(default=timezone.now)
    paid_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("settlement")
        verbose_name_plural = _("settlements")
        ordering = ["-period_start", "merchant_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["merchant", "period_start", "currency"], name="offsets_settlement_merchant_period"
            ),
            models.UniqueConstraint(
                fields=["transfer_id"], condition=~Q(transfer_id=""), name="offsets_settlement_transfer_once"
            ),
            models.CheckConstraint(condition=Q(amount_minor__gt=0), name="offsets_settlement_amount_gt_0"),
            models.CheckConstraint(condition=Q(period_start__lte=F("period_end")), name="offsets_settlement_period"),
            models.CheckConstraint(
                condition=Q(status="paid", paid_at__isnull=False, payout_txn_id__isnull=False)
                | (~Q(status="paid") & Q(paid_at__isnull=True, payout_txn_id__isnull=True)),
                name="offsets_settlement_paid_columns",
            ),
        ]

    def __str__(self) -> str:
        return f"settlement {self.pk} of merchant {self.merchant_id} ({self.period_start}, {self.status})"
