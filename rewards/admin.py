"""Operators' screens. Writes go through the services like the API; value-bearing rows (rewards' stock,
vouchers) are read-only here, and nothing that carries value can be deleted."""

from django import forms
from django.contrib import admin, messages
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from backend.core.admin import ReadOnlyInline
from backend.core.errors import ApplicationError
from backend.offsets import settlement
from rewards import catalogue, services
from rewards.models import Merchant, MerchantStaff, Reward, Voucher


class StaffInline(ReadOnlyInline):
    model = MerchantStaff
    fields = readonly_fields = ["user", "is_manager", "created_at"]


class MerchantForm(forms.ModelForm):
    class Meta:
        model = Merchant
        fields = ["name_zh", "name_en", "district", "address", "category", "status", "stripe_account_id"]

    def clean_stripe_account_id(self):
        try:
            return settlement.stripe_account_validate(self.cleaned_data.get("stripe_account_id", ""))
        except ApplicationError as exc:
            raise forms.ValidationError(str(exc.detail)) from exc


@admin.register(Merchant)
class MerchantAdmin(admin.ModelAdmin):
    """Merchants: created with `manage.py create_merchant`; details and status edited through the service; the
    Stripe Connect account (settlements' destination) through the settlement service."""

    form = MerchantForm

    list_display = ["id", "name_zh", "name_en", "district", "category", "status", "created_at"]
    list_filter = ["status", "category", "district"]
    search_fields = ["name_zh", "name_en"]
    inlines = [StaffInline]
    actions = ["suspend", "reactivate"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        fields = {name: form.cleaned_data[name] for name in form.changed_data}
        obj.refresh_from_db()
        if "stripe_account_id" in fields:  # settlement destination: validated by the settlement service
            account = fields.pop("stripe_account_id")
            settlement.merchant_stripe_account_set(merchant_id=obj.pk, stripe_account_id=account)
        if fields:
            catalogue.merchant_update(merchant=obj, **fields)

    def _set_status(self, request, queryset, status):
        for merchant in queryset:
            catalogue.merchant_update(merchant=merchant, status=status)
        self.message_user(
            request, gettext("%(count)d merchant(s): %(status)s.") % {"count": queryset.count(), "status": status}
        )

    @admin.action(description=_("Suspend selected merchants (their rewards leave the catalogue)"))
    def suspend(self, request, queryset):
        self._set_status(request, queryset, Merchant.Status.SUSPENDED)

    @admin.action(description=_("Reactivate selected merchants"))
    def reactivate(self, request, queryset):
        self._set_status(request, queryset, Merchant.Status.ACTIVE)


@admin.register(Reward)
class RewardAdmin(admin.ModelAdmin):
    """Rewards are the merchant's to edit (merchant API); here operators look and pause or archive."""

    list_display = ["id", "title_zh", "merchant", "points_cost", "stock", "status", "valid_until"]
    list_filter = ["status", "category"]
    search_fields = ["title_zh", "title_en"]
    list_select_related = ["merchant"]
    readonly_fields = [f.name for f in Reward._meta.fields]
    actions = ["pause", "archive"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def _set_status(self, request, queryset, status):
        for reward in queryset.select_related("merchant"):
            try:
                catalogue.reward_set_status(merchant=reward.merchant, reward_id=reward.pk, status=status)
            except Exception as exc:  # shown to the operator, the rest of the selection goes on
                self.message_user(request, f"#{reward.pk}: {exc}", messages.ERROR)

    @admin.action(description=_("Pause selected rewards"))
    def pause(self, request, queryset):
        self._set_status(request, queryset, Reward.Status.PAUSED)

    @admin.action(description=_("Archive selected rewards"))
    def archive(self, request, queryset):
        self._set_status(request, queryset, Reward.Status.ARCHIVED)


@admin.register(Voucher)
class VoucherAdmin(admin.ModelAdmin):
    """Vouchers carry held points: read-only; expiring due ones runs the same service as the beat task."""

    list_display = ["code", "status", "reward", "merchant", "points_cost", "issued_at", "expires_at", "redeemed_at"]
    list_filter = ["status", "merchant"]
    search_fields = ["code"]
    list_select_related = ["reward", "merchant"]
    readonly_fields = [f.name for f in Voucher._meta.fields if f.name not in ("idempotency_key", "request_hash")]
    exclude = ["idempotency_key", "request_hash"]
    actions = ["expire_due"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return request.method in ("GET", "HEAD") and super().has_view_permission(request, obj)

    @admin.action(description=_("Expire the selected vouchers that are past due"))
    def expire_due(self, request, queryset):
        done = sum(services.voucher_expire(voucher_id=v) for v in queryset.values_list("id", flat=True))
        self.message_user(request, gettext("%(count)d voucher(s) expired.") % {"count": done})
