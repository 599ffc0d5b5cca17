"""Reviewers' screens: batches, orders, certificates, Stripe events and buyers, all read-only (value-bearing
rows change through the services only), and the reward fund's balance against outstanding payables."""

from django.contrib import admin
from django.utils.html import format_html

from backend.offsets import selectors
from backend.offsets.chart import fund_chart_svg
from backend.offsets.models import Buyer, Certificate, CertificationBatch, OffsetOrder, StripeEvent


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(CertificationBatch)
class CertificationBatchAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "methodology",
        "period_start",
        "period_end",
        "status",
        "certified_kg",
        "available_kg",
        "reserved_kg",
        "sold_kg",
        "void_kg",
        "buffer_grams",
        "reversed_grams",
        "shortfall_kg",
    )
    list_filter = ("status", "methodology")


@admin.register(OffsetOrder)
class OffsetOrderAdmin(ReadOnlyAdmin):
    list_display = ("id", "buyer", "quantity_kg", "amount_fen", "currency", "status", "created_at", "paid_at")
    list_filter = ("status",)
    list_select_related = ("buyer",)
    exclude = ("client_secret",)
    change_list_template = "admin/offsets/offsetorder/change_list.html"

    def changelist_view(self, request, extra_context=None):
        balance = selectors.reward_fund_balance()
        payables = selectors.outstanding_payables()
        extra = {"fund_balance": balance, "fund_payables": payables, "fund_chart": fund_chart_svg(balance, payables)}
        return super().changelist_view(request, extra_context={**(extra_context or {}), **extra})


@admin.register(Certificate)
class CertificateAdmin(ReadOnlyAdmin):
    list_display = ("code", "company_name", "quantity_kg", "status", "issued_at", "revoked_at", "verify")
    list_filter = ("status",)
    search_fields = ("code", "company_name")

    @admin.display(description="public page")
    def verify(self, obj):
        return format_html('<a href="/api/v1/offsets/certificates/verify/{}">verify</a>', obj.code)


@admin.register(StripeEvent)
class StripeEventAdmin(ReadOnlyAdmin):
    list_display = ("event_id", "type", "received_at", "processed_at", "outcome")
    list_filter = ("type", "outcome")


@admin.register(Buyer)
class BuyerAdmin(ReadOnlyAdmin):
    list_display = ("company_name", "tax_id", "created_at")
    search_fields = ("company_name", "tax_id")
