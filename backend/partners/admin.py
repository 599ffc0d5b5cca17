from django import forms
from django.contrib import admin, messages

from backend.partners import services
from backend.partners.models import Partner, PartnerSecret


class PartnerSecretInline(admin.TabularInline):
    model = PartnerSecret
    extra = 0
    fields = ["id", "status", "created_at", "retired_at"]
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


def _subject_kind_choices():
    from backend.actions.models import SubjectKind

    return SubjectKind.choices


class PartnerAdminForm(forms.ModelForm):
    subject_kinds = forms.MultipleChoiceField(
        choices=_subject_kind_choices,
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text="Card/account kinds this partner attests links for (POST /api/v1/partner/links).",
    )

    class Meta:
        model = Partner
        fields = ["name", "methodologies", "subject_kinds", "status"]


@admin.register(Partner)
class PartnerAdmin(admin.ModelAdmin):
    form = PartnerAdminForm
    list_display = ["id", "name", "status", "methodologies", "subject_kinds", "created_at"]
    list_filter = ["status"]
    search_fields = ["name"]
    readonly_fields = ["created_at"]
    inlines = [PartnerSecretInline]
    actions = ["rotate_secret", "suspend", "reactivate"]

    def save_model(self, request, obj, form, change):
        # Subject kinds go through the service (validated, row locked) like every other write path.
        kinds = form.cleaned_data.get("subject_kinds", [])
        super().save_model(request, obj, form, change)
        services.partner_subject_kinds_set(partner_id=obj.pk, subject_kinds=kinds)

    @admin.action(description="Rotate secret (new secret shown once; at most two stay active)")
    def rotate_secret(self, request, queryset):
        for partner in queryset:
            secret = services.partner_secret_rotate(partner_id=partner.pk)
            self.message_user(
                request,
                f"{partner.name}: new secret {secret} — give it to the partner now; it is not shown again.",
                messages.WARNING,
            )

    @admin.action(description="Suspend (signed requests get 403 partner_suspended)")
    def suspend(self, request, queryset):
        for partner in queryset:
            services.partner_set_status(partner_id=partner.pk, status=Partner.Status.SUSPENDED)

    @admin.action(description="Reactivate")
    def reactivate(self, request, queryset):
        for partner in queryset:
            services.partner_set_status(partner_id=partner.pk, status=Partner.Status.ACTIVE)
