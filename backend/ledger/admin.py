"""Read-only ledger screens: the ledger is append-only, so nothing here edits or deletes."""

from django.contrib import admin

from backend.core.admin import ReadOnlyAdmin, ReadOnlyInline
from backend.ledger.models import Account, LedgerTransaction, MerkleRoot, PointsLot, Posting, ReconciliationRun


class PostingInline(ReadOnlyInline):
    model = Posting
    fields = ["account", "unit", "currency", "amount"]
    readonly_fields = fields


@admin.register(Account)
class AccountAdmin(ReadOnlyAdmin):
    list_display = ["id", "key", "kind", "unit", "currency", "floored", "balance"]
    list_filter = ["kind", "unit", "floored"]
    search_fields = ["key"]


@admin.register(LedgerTransaction)
class LedgerTransactionAdmin(ReadOnlyAdmin):
    list_display = ["id", "kind", "reason", "source_type", "source_id", "created_at", "effective_at", "booked_on"]
    list_filter = ["kind"]
    search_fields = ["idempotency_key"]
    inlines = [PostingInline]


@admin.register(PointsLot)
class PointsLotAdmin(ReadOnlyAdmin):
    list_display = ["id", "account", "kind", "amount", "remaining", "expires_at", "expired_at"]


@admin.register(MerkleRoot)
class MerkleRootAdmin(ReadOnlyAdmin):
    list_display = ["day", "root", "leaf_count", "computed_at"]


@admin.register(ReconciliationRun)
class ReconciliationRunAdmin(ReadOnlyAdmin):
    """Drift found by the nightly reconciliation: any row with drift_count > 0 is a bug to investigate."""

    list_display = ["started_at", "finished_at", "accounts_checked", "drift_count"]
    readonly_fields = ["started_at", "finished_at", "accounts_checked", "drift_count", "drift"]
