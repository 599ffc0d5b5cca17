"""Partners in the admin: read-only; create with `manage.py create_partner`; rotation, suspension and the
signature-v1 switch are confirmed admin actions with a note. A rotated secret is shown once on a page of its
own (not cached), never in a message: Django's messages cookie is signed, not encrypted."""

from django import forms
from django.contrib import admin
from django.template.response import TemplateResponse
from django.utils.translation import gettext_lazy as _

from backend.core.admin import NoteForm, ReadOnlyAdmin, ReadOnlyInline, confirmed_action
from backend.partners import services
from backend.partners.models import Partner, PartnerSecret


class PartnerSecretInline(ReadOnlyInline):
    model = PartnerSecret
    fields = ["id", "status", "created_at", "retired_at"]
    readonly_fields = fields


def _subject_kind_choices():
    from backend.actions.models import SubjectKind

    return SubjectKind.choices


class SubjectKindsForm(NoteForm):
    subject_kinds = forms.MultipleChoiceField(
        choices=_subject_kind_choices,
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text=_("Card/account kinds the selected partners attest links for (POST /api/v1/partner/links)."),
    )


def _methodology_choices():
    from backend.methodologies.models import Methodology

    return [(m.code, f"{m.code} — {m.name_en}") for m in Methodology.objects.order_by("code")]


class MethodologiesForm(NoteForm):
    methodologies = forms.MultipleChoiceField(
        choices=_methodology_choices,
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text=_("Methodologies the selected partners may push actions for (POST /api/v1/partner/actions)."),
    )


@admin.register(Partner)
class PartnerAdmin(ReadOnlyAdmin):
    list_display = ["id", "name", "status", "signature_v1_allowed", "methodologies", "subject_kinds", "created_at"]
    list_filter = ["status", "signature_v1_allowed"]
    search_fields = ["name"]
    fields = ["name", "status", "signature_v1_allowed", "methodologies", "subject_kinds", "created_at"]
    readonly_fields = fields
    inlines = [PartnerSecretInline]
    actions = [
        "rotate_secret",
        "suspend",
        "reactivate",
        "set_subject_kinds",
        "set_methodologies",
        "refuse_signature_v1",
        "allow_signature_v1",
    ]

    def has_manage_permission(self, request):
        return request.user.is_superuser

    @admin.action(description=_("Rotate secret (shown once; at most two stay active)…"), permissions=["manage"])
    def rotate_secret(self, request, queryset):
        def shown_once(results):
            response = TemplateResponse(
                request,
                "admin/secret_once.html",
                {**self.admin_site.each_context(request), "title": _("New partner secrets"), "secrets": results},
            )
            response["Cache-Control"] = "no-store, private"
            return response

        return confirmed_action(
            self,
            request,
            queryset,
            title=_("Rotate secret"),
            perform=lambda partner, note: services.partner_secret_rotate(partner_id=partner.pk),
            finish=shown_once,
        )

    @admin.action(description=_("Suspend (signed requests get 403 partner_suspended)…"), permissions=["manage"])
    def suspend(self, request, queryset):
        return confirmed_action(
            self,
            request,
            queryset,
            title=_("Suspend"),
            perform=lambda p, note: services.partner_set_status(partner_id=p.pk, status=Partner.Status.SUSPENDED),
        )

    @admin.action(description=_("Reactivate…"), permissions=["manage"])
    def reactivate(self, request, queryset):
        return confirmed_action(
            self,
            request,
            queryset,
            title=_("Reactivate"),
            perform=lambda p, note: services.partner_set_status(partner_id=p.pk, status=Partner.Status.ACTIVE),
        )

    @admin.action(description=_("Set the card/account kinds it links…"), permissions=["manage"])
    def set_subject_kinds(self, request, queryset):
        return confirmed_action(
            self,
            request,
            queryset,
            title=_("Set subject kinds"),
            form_class=SubjectKindsForm,
            perform=lambda p, note, subject_kinds: services.partner_subject_kinds_set(
                partner_id=p.pk, subject_kinds=subject_kinds
            ),
        )

    @admin.action(description=_("Set the methodologies it may push…"), permissions=["manage"])
    def set_methodologies(self, request, queryset):
        return confirmed_action(
            self,
            request,
            queryset,
            title=_("Set methodologies"),
            form_class=MethodologiesForm,
            perform=lambda p, note, methodologies: services.partner_methodologies_set(
                partner_id=p.pk, methodologies=methodologies
            ),
        )

    @admin.action(description=_("Refuse signature v1 (partner signs with v2 only)…"), permissions=["manage"])
    def refuse_signature_v1(self, request, queryset):
        return confirmed_action(
            self,
            request,
            queryset,
            title=_("Refuse signature v1"),
            perform=lambda p, note: services.partner_set_signature_v1(
                partner_id=p.pk, allowed=False, actor=request.user
            ),
        )

    @admin.action(description=_("Accept signature v1 again…"), permissions=["manage"])
    def allow_signature_v1(self, request, queryset):
        return confirmed_action(
            self,
            request,
            queryset,
            title=_("Accept signature v1"),
            perform=lambda p, note: services.partner_set_signature_v1(
                partner_id=p.pk, allowed=True, actor=request.user
            ),
        )
