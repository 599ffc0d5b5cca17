"""Reviewers' screens for actions: read-only; approve and reject are confirmed admin actions with a note that
call the review services. Batches and bindings are read-only; nothing here is deleted."""

from django.contrib import admin
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from backend.actions import services
from backend.actions.models import Action, ActionStatusChange, IngestBatch, SubjectBinding
from backend.core.admin import ReadOnlyAdmin, ReadOnlyInline, confirmed_action


class ActionStatusChangeInline(ReadOnlyInline):
    model = ActionStatusChange
    fields = ["status", "reason", "note", "actor", "at"]
    readonly_fields = fields


@admin.register(Action)
class ActionAdmin(ReadOnlyAdmin):
    """Reviewers' screen: filter to flagged / pending_review, look at the evidence, approve or reject."""

    list_display = ["id", "methodology", "source", "status", "reason", "resident", "occurred_at", "grams", "points"]
    list_filter = ["status", "source", "methodology"]
    search_fields = ["external_id"]
    date_hierarchy = "occurred_at"
    list_select_related = ["resident"]
    readonly_fields = [f.name for f in Action._meta.fields] + ["evidence_preview"]
    inlines = [ActionStatusChangeInline]
    actions = ["approve", "reject"]

    def has_review_permission(self, request):
        return request.user.role in ("reviewer", "admin")

    @admin.display(description=_("evidence"))
    def evidence_preview(self, obj):
        if not obj.evidence:
            return "—"
        return format_html('<a href="{0}"><img src="{0}" style="max-height:240px"></a>', obj.evidence.url)

    @admin.action(description=_("Approve selected flagged / self-reported actions…"), permissions=["review"])
    def approve(self, request, queryset):
        return confirmed_action(
            self,
            request,
            queryset,
            title=_("Approve"),
            perform=lambda action, note: services.review_approve(action_id=action.pk, reviewer=request.user, note=note),
        )

    @admin.action(description=_("Reject selected flagged / self-reported actions…"), permissions=["review"])
    def reject(self, request, queryset):
        return confirmed_action(
            self,
            request,
            queryset,
            title=_("Reject"),
            perform=lambda action, note: services.review_reject(action_id=action.pk, reviewer=request.user, note=note),
        )


@admin.register(IngestBatch)
class IngestBatchAdmin(ReadOnlyAdmin):
    list_display = ["id", "partner", "received_at", "submitted", "accepted", "duplicates", "rejected"]
    list_filter = ["partner"]


@admin.register(SubjectBinding)
class SubjectBindingAdmin(ReadOnlyAdmin):
    """Links are attested by partners (POST /api/v1/partner/links), never typed in here."""

    list_display = ["id", "resident", "kind", "identifier_last4", "partner", "created_at", "ended_at", "end_reason"]
    list_filter = ["kind", "end_reason"]
    readonly_fields = ["resident", "kind", "identifier_last4", "partner", "created_at", "ended_at", "end_reason"]
    fields = readonly_fields  # the identifier hash is not shown
