"""Ledger tables: accounts, immutable transactions and postings, points lots, Merkle day roots.

The database carries the invariants (see migrations 0002): postings of one transaction sum to zero per unit
(deferred constraint trigger), postings and transactions are immutable (UPDATE/DELETE rejected), floored
accounts can never go below zero (CHECK), lots never hold more than they were issued with.
"""

from django.db import models
from django.db.models import Q
from django.db.models.functions import Now
from django.utils.translation import gettext_lazy as _

from backend.core.days import LocalToday


class Unit(models.TextChoices):
    CARBON = "carbon", "carbon (g CO2e)"
    POINTS = "points", "points"
    MONEY = "money", "money (minor units)"


class Account(models.Model):
    """One balance of one owner in one unit. `key` is the stable address used by services, e.g.
    `resident:42:points`, `merchant:7:money:CNY`, `system:carbon_issuance:metro_ride`.

    Floored accounts (residents' points, merchants' budgets, pending holdings) keep `balance` cached in the same
    database transaction as their postings. Hot system accounts are touched by every credit; a running balance
    on them would serialise the platform, so their `balance` stays 0 and is derived from postings instead."""

    class Kind(models.TextChoices):
        RESIDENT = "resident"
        MERCHANT = "merchant"
        SYSTEM = "system"

    key = models.CharField(max_length=120, unique=True)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    # A plain id, not a foreign key: the ledger outlives a user's personal data (PIPL erasure keeps aggregates).
    owner_id = models.BigIntegerField(null=True, blank=True)
    name = models.CharField(max_length=80)
    unit = models.CharField(max_length=8, choices=Unit.choices)
    currency = models.CharField(max_length=3, blank=True, default="")
    floored = models.BooleanField(default=False)
    balance = models.BigIntegerField(default=0)

    class Meta:
        verbose_name = _("account")
        verbose_name_plural = _("accounts")
        indexes = [models.Index(fields=["owner_id", "kind"], name="ledger_acct_owner")]
        constraints = [
            models.CheckConstraint(condition=Q(balance__gte=0), name="ledger_account_balance_gte_0"),
            # Unfloored (hot) accounts never keep a running balance.
            models.CheckConstraint(condition=Q(floored=True) | Q(balance=0), name="ledger_account_unfloored_no_cache"),
            models.CheckConstraint(
                condition=(Q(unit="money") & ~Q(currency="")) | (~Q(unit="money") & Q(currency="")),
                name="ledger_account_currency_iff_money",
            ),
        ]

    def __str__(self):
        return self.key


class LedgerTransaction(models.Model):
    """A balanced set of postings. Immutable; corrections are reversing transactions (`reverses`)."""

    class Kind(models.TextChoices):
        ACTION_CREDIT = "action_credit"
        PENDING_RELEASE = "pending_release"
        POINTS_SPEND = "points_spend"
        POINTS_EXPIRY = "points_expiry"
        REVERSAL = "reversal"
        TRANSFER = "transfer"

    kind = models.CharField(max_length=24, choices=Kind.choices)
    reason = models.CharField(max_length=255)
    source_type = models.CharField(max_length=32)
    source_id = models.BigIntegerField(null=True, blank=True)
    # Unique through Meta.constraints: `unique=True` would add a second (LIKE) index that nothing reads.
    idempotency_key = models.CharField(max_length=160)
    # SHA-256 of the request's canonical content: the same key with different content is a conflict.
    content_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(db_default=Now())
    effective_at = models.DateTimeField()
    # The Asia/Shanghai day whose Merkle tree holds this transaction: the day it was posted (the database's clock),
    # or, for history imported under `ledger_backfill()`, the still-open day it happened. A day with a published
    # root takes no more transactions (PostgreSQL trigger, migration 0005), so each is in exactly one day's tree.
    booked_on = models.DateField(db_default=LocalToday())
    # At most one reversal / release per transaction: partial unique indexes (Meta) hold only the rows that
    # reverse or release something, not one NULL entry per action credit in each.
    reverses = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    releases = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    # Pending credits only: the points policy in force when the action was credited, applied on release.
    lot_expiry_months = models.PositiveSmallIntegerField(null=True, blank=True)

    class Meta:
        verbose_name = _("ledger transaction")
        verbose_name_plural = _("ledger transactions")
        # `created_at` (the statistics' watermark slices) is indexed by BRIN on PostgreSQL, migration 0007:
        # transactions arrive in created_at order, so a block range summary serves the range reads and a new
        # transaction adds no index entry (a b-tree entry per action credit before).
        constraints = [
            models.UniqueConstraint(fields=["idempotency_key"], name="ledger_txn_idempotency_key_unique"),
            models.UniqueConstraint(
                fields=["reverses"], condition=Q(reverses__isnull=False), name="ledger_txn_reverses_once"
            ),
            models.UniqueConstraint(
                fields=["releases"], condition=Q(releases__isnull=False), name="ledger_txn_releases_once"
            ),
        ]

    def __str__(self):
        return f"{self.id} {self.kind} {self.idempotency_key}"


class Posting(models.Model):
    transaction = models.ForeignKey(LedgerTransaction, on_delete=models.PROTECT, related_name="postings")
    # Indexed by the (account, transaction) index below; a second single-column index would only slow inserts.
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="postings", db_index=False)
    # Denormalised from the account so the zero-sum check needs no join.
    unit = models.CharField(max_length=8, choices=Unit.choices)
    currency = models.CharField(max_length=3, blank=True, default="")
    amount = models.BigIntegerField()

    class Meta:
        indexes = [models.Index(fields=["account", "transaction"], name="ledger_posting_acct_txn")]
        constraints = [models.CheckConstraint(condition=~Q(amount=0), name="ledger_posting_amount_nonzero")]

    def __str__(self):
        return f"{self.transaction_id} {self.account_id} {self.amount} {self.unit}"


class PointsLot(models.Model):
    """Points of one account expiring at one date; spent soonest-expiring first, expired once when due.

    Earned points are one lot per account and expiry date while it is not expired (`ledger_lot_one_per_month`):
    a credit adds to its month's lot (`amount` and `remaining` grow together), so a resident's credits of one
    month cost one row, not one per credit. `transaction` is the credit that opened the lot; a reversal finds a
    credit's lot by its expiry date, never by transaction. Restored lots (a reversed spend) stay one per
    consumption, each with its original expiry."""

    class Kind(models.TextChoices):
        EARNED = "earned"  # credits (and released pending credits) of one expiry date
        RESTORED = "restored"  # a reversed spend gives points back with their original expiry

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="lots")
    # Not indexed: nothing reads lots by transaction (transactions are never deleted: no PROTECT look-up either).
    transaction = models.ForeignKey(LedgerTransaction, on_delete=models.PROTECT, related_name="lots", db_index=False)
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.EARNED)
    amount = models.BigIntegerField()
    remaining = models.BigIntegerField()
    expires_at = models.DateTimeField()
    expired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("points lot")
        verbose_name_plural = _("points lots")
        # No index mentions `amount` or `remaining` (not even in a predicate): adding a credit to a lot and
        # spending from it are HOT updates that write no index entry (the table keeps free space for them,
        # fillfactor in migration 0008). A spent-out lot stays in these indexes until its expiry date.
        indexes = [
            models.Index(
                fields=["account", "expires_at", "id"], condition=Q(expired_at__isnull=True), name="ledger_lot_open"
            ),
            models.Index(fields=["expires_at"], condition=Q(expired_at__isnull=True), name="ledger_lot_due"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(amount__gt=0) & Q(remaining__gte=0) & Q(remaining__lte=models.F("amount")),
                name="ledger_lot_remaining_in_range",
            ),
            models.UniqueConstraint(
                fields=["account", "expires_at"],
                condition=Q(kind="earned", expired_at__isnull=True),
                name="ledger_lot_one_per_month",
            ),
        ]

    def __str__(self):
        return f"lot {self.id}: {self.remaining}/{self.amount} until {self.expires_at}"


class LotConsumption(models.Model):
    """Points taken out of a lot by a spend, an expiry or the reversal of a credit."""

    class Kind(models.TextChoices):
        SPEND = "spend"
        EXPIRY = "expiry"
        REVERSAL = "reversal"

    lot = models.ForeignKey(PointsLot, on_delete=models.PROTECT, related_name="consumptions")
    transaction = models.ForeignKey(LedgerTransaction, on_delete=models.PROTECT, related_name="lot_consumptions")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    amount = models.BigIntegerField()

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(amount__gt=0), name="ledger_consumption_amount_gt_0")]

    def __str__(self):
        return f"{self.kind} {self.amount} from lot {self.lot_id}"


class MerkleRoot(models.Model):
    """The published Merkle root of one Asia/Shanghai day's ledger transactions (by `booked_on`). Computed once
    the day is over; immutable, and it seals the day: no transaction is booked on it afterwards (migration 0005)."""

    day = models.DateField(unique=True)
    root = models.CharField(max_length=64)
    leaf_count = models.IntegerField()
    computed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("merkle root")
        verbose_name_plural = _("merkle roots")
        ordering = ["-day"]

    def __str__(self):
        return f"{self.day} {self.root}"


class MerkleNode(models.Model):
    """One hash of a published day's tree, stored when the root is computed so that an inclusion proof reads
    one sibling per level (O(log n) rows) instead of rebuilding the day's tree (about 100k transactions a day at
    city scale). Level 0 holds the leaves and names their transaction; upper levels follow `merkle._next_level`."""

    root = models.ForeignKey(MerkleRoot, on_delete=models.CASCADE, related_name="nodes", db_index=False)
    level = models.SmallIntegerField()
    position = models.IntegerField()
    hash = models.BinaryField(max_length=32)
    transaction = models.OneToOneField(
        LedgerTransaction, null=True, blank=True, on_delete=models.PROTECT, related_name="merkle_leaf"
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["root", "level", "position"], name="ledger_merkle_node_unique"),
            models.CheckConstraint(
                condition=Q(level=0, transaction__isnull=False) | Q(level__gt=0, transaction__isnull=True),
                name="ledger_merkle_node_leaf_has_transaction",
            ),
        ]

    def __str__(self):
        return f"{self.root_id} L{self.level}[{self.position}]"


class ReconciliationRun(models.Model):
    """One nightly reconciliation: cached balances recomputed from postings; drift listed in `drift`."""

    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    accounts_checked = models.IntegerField(default=0)
    drift_count = models.IntegerField(default=0)
    drift = models.JSONField(default=list, blank=True)

    class Meta:
        verbose_name = _("reconciliation run")
        verbose_name_plural = _("reconciliation runs")
        ordering = ["-started_at"]

    def __str__(self):
        return f"reconciliation {self.started_at:%Y-%m-%d %H:%M}: {self.drift_count} drift"
