from django.contrib import admin, messages
from django.utils.html import format_html

from backend.actions import services
from backend.actions.models import Action, ActionStatusChange, IngestBatch, SubjectBinding


class ActionStatusChangeInline(admin.TabularInline):
    model = ActionStatusChange
    extra = 0
    can_delete = False
    readonly_fields = ["status", "reason", "note", "actor", "at"]

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Action)
class ActionAdmin(admin.ModelAdmin):
    """Reviewers' screen: filter to flagged / pending_review, look at the evidence, approve or reject."""

    list_display = ["id", "methodology", "source", "status", "reason", "resident", "occurred_at", "grams", "points"]
    list_filter = ["status", "source", "methodology"]
    search_fields = ["external_id"]
    date_hierarchy = "occurred_at"
    list_select_related = ["resident"]
    readonly_fields = [f.name for f in Action._meta.fields if f.name not in ("review_note",)] + ["evidence_preview"]
    inlines = [ActionStatusChangeInline]
    actions = ["approve", "reject"]

    @admin.display(description="evidence")
    def evidence_preview(self, obj):
        if not obj.evidence:
            return "—"
        return format_html('<a href="{0}"><img src="{0}" style="max-height:240px"></a>', obj.evidence.url)

    def _decide(self, request, queryset, decide, verb):
        done = 0
        for action in queryset:
            try:
                decide(action_id=action.pk, reviewer=request.user, note=f"{verb} in admin")
                done += 1
            except Exception as exc:  # shown to the reviewer, the rest of the selection goes on
                self.message_user(request, f"#{action.pk}: {exc}", messages.ERROR)
        self.message_user(request, f"{done} action(s) {verb}.")

    @admin.action(description="Approve selected flagged / self-reported actions")
    def approve(self, request, queryset):
        self._decide(request, queryset, services.review_approve, "approved")

    @admin.action(description="Reject selected flagged / self-reported actions")
    def reject(self, request, queryset):
        self._decide(request, queryset, services.review_reject, "rejected")


@admin.register(IngestBatch)
class IngestBatchAdmin(admin.ModelAdmin):
    list_display = ["id", "partner", "received_at", "submitted", "accepted", "duplicates", "rejected"]
    list_filter = ["partner"]


@admin.register(SubjectBinding)
class SubjectBindingAdmin(admin.ModelAdmin):
    list_display = ["id", "resident", "kind", "identifier_last4", "partner", "created_at", "ended_at", "end_reason"]
    list_filter = ["kind", "end_reason"]
    readonly_fields = [f.name for f in SubjectBinding._meta.fields]

    def has_add_permission(self, request):
        return False  # links are attested by partners (POST /api/v1/partner/links), never typed in here

    def has_delete_permission(self, request, obj=None):
        return False
