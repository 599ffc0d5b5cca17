"""Reviewers' screens: batches, orders, certificates, Stripe events, buyers, merchant payables and settlements,
all read-only (value-bearing rows change through the services only), and the reward fund's balance against
outstanding payables."""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path
from django.utils.html import format_html
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from rest_framework.exceptions import APIException

from backend.offsets import inventory, selectors, services, settlement
from backend.offsets.chart import fund_chart_svg
from backend.offsets.models import (
    Buyer,
    Certificate,
    CertificationBatch,
    MerchantPayable,
    OffsetOrder,
    Settlement,
    StripeEvent,
)
from backend.offsets.payouts import PayoutError


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class CertifyForm(forms.Form):
    methodology = forms.CharField(max_length=32)
    period_start = forms.DateField(help_text=_("YYYY-MM-DD, Asia/Shanghai"))
    period_end = forms.DateField(help_text=_("inclusive"))


@admin.register(CertificationBatch)
class CertificationBatchAdmin(ReadOnlyAdmin):
    """Read-only rows; "Certify a batch" and "Close" go through the inventory services."""

    actions = ["close_batches"]
    change_list_template = "admin/offsets/certificationbatch/change_list.html"
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

    def get_urls(self):
        certify = path(
            "certify/", self.admin_site.admin_view(self.certify_view), name="offsets_certificationbatch_certify"
        )
        return [certify, *super().get_urls()]

    def certify_view(self, request):
        if request.user.role not in ("reviewer", "admin"):
            raise PermissionDenied
        form = CertifyForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                batch = inventory.batch_create(created_by=request.user, **form.cleaned_data)
            except APIException as exc:
                messages.error(request, str(exc.detail))
            else:
                messages.success(
                    request,
                    gettext("%(code)s: %(kg)s kg certified") % {"code": batch.code, "kg": batch.certified_kg},
                )
                return redirect("admin:offsets_certificationbatch_changelist")
        context = {
            **self.admin_site.each_context(request),
            "form": form,
            "title": _("Certify a batch"),
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/offsets/certificationbatch/certify.html", context)

    @admin.action(description=_("Close the selected batches (no new sales)"))
    def close_batches(self, request, queryset):
        for batch_id in queryset.values_list("id", flat=True):
            inventory.batch_close(batch_id=batch_id)

    def has_change_permission(self, request, obj=None):
        return obj is None and request.user.is_staff  # the changelist (actions), never a row form


@admin.register(OffsetOrder)
class OffsetOrderAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "buyer",
        "quantity_kg",
        "amount_fen",
        "currency",
        "status",
        "created_at",
        "paid_at",
        "refund_shortfall_fen",
    )
    list_filter = ("status",)
    list_select_related = ("buyer",)
    exclude = ("client_secret",)
    change_list_template = "admin/offsets/offsetorder/change_list.html"

    def changelist_view(self, request, extra_context=None):
        return super().changelist_view(request, extra_context={**(extra_context or {}), **_fund_context()})


@admin.register(Certificate)
class CertificateAdmin(ReadOnlyAdmin):
    list_display = ("code", "company_name", "quantity_kg", "status", "issued_at", "revoked_at", "verify")
    list_filter = ("status",)
    search_fields = ("code", "company_name")

    @admin.display(description=_("public page"))
    def verify(self, obj):
        return format_html('<a href="/api/v1/offsets/certificates/verify/{}">{}</a>', obj.code, gettext("verify"))


class FailedEventFilter(admin.SimpleListFilter):
    title = "failed"
    parameter_name = "failed"

    def lookups(self, request, model_admin):
        return (("yes", "failed (no more automatic attempts)"), ("retrying", "failing, still retried"))

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(failed_at__isnull=False)
        if self.value() == "retrying":
            return queryset.filter(failed_at__isnull=True, processed_at__isnull=True, failed_attempts__gt=0)
        return queryset


@admin.register(StripeEvent)
class StripeEventAdmin(ReadOnlyAdmin):
    """Events as received and what became of them. An event whose processing kept raising is `failed` after
    STRIPE_EVENT_MAX_ATTEMPTS attempts; once its cause is fixed, "Retry" queues it again (through the service)."""

    actions = ["retry_failed"]
    list_display = (
        "event_id",
        "type",
        "received_at",
        "processed_at",
        "outcome",
        "failed_attempts",
        "failed_at",
        "last_error",
    )
    list_filter = (FailedEventFilter, "type", "outcome")

    @admin.action(description=_("Retry the selected failed events (each applied once, whatever is clicked)"))
    def retry_failed(self, request, queryset):
        for event_id in queryset.filter(failed_at__isnull=False).values_list("event_id", flat=True):
            queued = services.stripe_event_retry_failed(event_id=event_id)
            outcome = gettext("queued again") if queued else gettext("not failed")
            messages.info(request, f"{event_id}: {outcome}")

    def get_actions(self, request):
        actions = super().get_actions(request)
        if not request.user.is_superuser:  # re-applying a payment event moves money: the admin role's
            actions.pop("retry_failed", None)
        return actions

    def has_change_permission(self, request, obj=None):
        return obj is None and request.user.is_staff  # the changelist (actions), never a row form


@admin.register(Buyer)
class BuyerAdmin(ReadOnlyAdmin):
    list_display = ("company_name", "tax_id", "created_at")
    search_fields = ("company_name", "tax_id")


class ManualPaymentForm(forms.Form):
    reference = forms.CharField(max_length=255, help_text=_("bank transfer reference (required)"))


@admin.register(MerchantPayable)
class MerchantPayableAdmin(ReadOnlyAdmin):
    """What each captured voucher costs the reward fund; `waiting_funds` rows wait for offset sales."""

    list_display = ("id", "merchant", "voucher", "amount_minor", "currency", "status", "created_at", "funded_at")
    list_filter = ("status", "currency")
    list_select_related = ("merchant", "voucher")
    search_fields = ("voucher__code",)
    change_list_template = "admin/offsets/offsetorder/change_list.html"

    def changelist_view(self, request, extra_context=None):
        return super().changelist_view(request, extra_context={**(extra_context or {}), **_fund_context()})


@admin.register(Settlement)
class SettlementAdmin(ReadOnlyAdmin):
    """Weekly settlements, read-only. "Pay now" and "record a payment by hand" go through the settlement
    services (a settlement is paid once, whatever is clicked)."""

    actions = ["pay_now"]
    list_display = (
        "id",
        "merchant",
        "period_start",
        "period_end",
        "amount_minor",
        "currency",
        "payable_count",
        "status",
        "transfer_id",
        "attempts",
        "last_error",
        "paid_at",
        "record_manual",
    )
    list_filter = ("status", "currency")
    list_select_related = ("merchant",)
    change_list_template = "admin/offsets/offsetorder/change_list.html"

    def changelist_view(self, request, extra_context=None):
        return super().changelist_view(request, extra_context={**(extra_context or {}), **_fund_context()})

    def get_urls(self):
        mark = path(
            "<int:settlement_id>/mark-paid/",
            self.admin_site.admin_view(self.mark_paid_view),
            name="offsets_settlement_mark_paid",
        )
        return [mark, *super().get_urls()]

    @admin.display(description=_("by hand"))
    def record_manual(self, obj):
        if obj.status != Settlement.Status.MANUAL:
            return ""
        return format_html('<a href="{}/mark-paid/">{}</a>', obj.pk, gettext("record payment"))

    def mark_paid_view(self, request, settlement_id):
        if not request.user.is_superuser:  # the admin role (see accounts.User: superuser follows the role)
            raise PermissionDenied
        item = Settlement.objects.select_related("merchant").filter(pk=settlement_id).first()
        if item is None:
            raise Http404
        form = ManualPaymentForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                settlement.settlement_mark_paid_manually(
                    settlement_id=item.pk, reference=form.cleaned_data["reference"], by=request.user
                )
            except APIException as exc:
                messages.error(request, str(exc.detail))
            else:
                messages.success(request, gettext("Settlement %(id)s recorded as paid.") % {"id": item.pk})
                return redirect("admin:offsets_settlement_changelist")
        context = {
            **self.admin_site.each_context(request),
            "form": form,
            "settlement": item,
            "title": _("Record a payment by hand"),
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/offsets/settlement/mark_paid.html", context)

    @admin.action(description=_("Pay the selected settlements now (each once; no account -> by hand)"))
    def pay_now(self, request, queryset):
        for settlement_id in queryset.values_list("id", flat=True):
            try:
                outcome = settlement.settlement_pay(settlement_id=settlement_id)
            except PayoutError as exc:
                messages.error(
                    request, gettext("Settlement %(id)s: %(outcome)s") % {"id": settlement_id, "outcome": exc}
                )
            else:
                messages.info(
                    request, gettext("Settlement %(id)s: %(outcome)s") % {"id": settlement_id, "outcome": outcome}
                )

    def get_actions(self, request):
        actions = super().get_actions(request)
        if not request.user.is_superuser:  # moving money is the admin role's, not a reviewer's
            actions.pop("pay_now", None)
        return actions

    def has_change_permission(self, request, obj=None):
        return obj is None and request.user.is_staff  # the changelist (actions), never a row form


def _fund_context() -> dict:
    statement = selectors.reward_fund_statement()
    payables = selectors.outstanding_payables()
    return {
        "fund_balance": statement["fund_balance"],
        "fund_payables": payables,
        "fund_statement": statement,
        "fund_chart": fund_chart_svg(statement["fund_balance"], payables, statement["deficit"]),
    }
