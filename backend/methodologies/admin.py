"""Reviewers' screens: versions side by side with the active one (changed parameters highlighted), the
transition log, approve / reject / preview actions that go through the same services as the API."""

import json

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.utils.html import format_html, format_html_join

from backend.core.admin import ReadOnlyAdmin, confirmed_action
from backend.methodologies import selectors, services
from backend.methodologies.models import (
    ImpactPreview,
    Methodology,
    MethodologyVersion,
    PointsPolicyVersion,
    VersionStatus,
    VersionTransition,
)


class TransitionInline(admin.TabularInline):
    model = VersionTransition
    fk_name = "methodology_version"
    extra = 0
    can_delete = False
    fields = ["at", "from_status", "to_status", "actor", "note"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


class PointsTransitionInline(TransitionInline):
    fk_name = "points_policy_version"


class VersionInline(admin.TabularInline):
    model = MethodologyVersion
    extra = 0
    can_delete = False
    show_change_link = True
    fields = ["number", "status", "effective_from", "effective_to", "author", "decided_by"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Methodology)
class MethodologyAdmin(ReadOnlyAdmin):
    list_display = ["code", "name_zh", "name_en", "formula_type"]
    readonly_fields = ["code", "formula_type", "created_at"]
    inlines = [VersionInline]


def _pretty(value) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True) if value is not None else "—"


def _run(modeladmin, request, queryset, func, title: str, with_note: bool = True):
    """A confirmed admin action (page + note) calling one governance service per selected version."""

    def perform(version, note):
        kwargs = {"note": note} if with_note else {}
        if func is services.impact_preview_request:
            return func(version_id=version.id, actor=request.user)
        return func(version_id=version.id, actor=request.user, **kwargs)

    return confirmed_action(modeladmin, request, queryset, title=title, perform=perform)


@admin.register(MethodologyVersion)
class MethodologyVersionAdmin(ReadOnlyAdmin):
    list_display = ["methodology", "number", "status", "effective_from", "effective_to", "author", "decided_by"]
    list_filter = ["status", "methodology"]
    list_select_related = ["methodology", "author", "decided_by"]
    readonly_fields = [
        "methodology",
        "number",
        "status",
        "side_by_side",
        "effective_from",
        "effective_to",
        "author",
        "submitted_at",
        "decided_by",
        "decided_at",
        "decision_note",
        "activated_at",
        "retired_at",
        "latest_preview",
    ]
    fields = readonly_fields
    inlines = [TransitionInline]
    actions = ["approve", "reject", "submit", "preview"]

    def has_add_permission(self, request):
        return False  # drafts are created through the API (copy of the active version)

    def has_delete_permission(self, request, obj=None):
        return False  # versions are history

    @admin.display(description="Compared with the active version (changes highlighted)")
    def side_by_side(self, obj):
        active = selectors.methodology_version_active(code=obj.methodology.code)
        other = active if active and active.pk != obj.pk else None
        changes = selectors.version_diff(other, obj) if other else {}
        rows = []
        for name in ("parameters", "validity_rules", "daily_cap", "evidence_shares", "self_report_allowed", "sources"):
            value = getattr(obj, name)
            keys = sorted(set(value) | set(getattr(other, name) or {})) if isinstance(value, dict) else [None]
            for key in keys:
                label = f"{name}.{key}" if key is not None else name
                before = (
                    (getattr(other, name) or {}).get(key)
                    if key is not None and other
                    else (getattr(other, name) if other else None)
                )
                after = value.get(key) if key is not None else value
                style = "background:#fff3b0;font-weight:bold" if label in changes else ""
                rows.append((style, label, _pretty(before), _pretty(after)))
        header = f"active v{other.number}" if other else "active (this version)"
        body = format_html_join("", '<tr style="{}"><td>{}</td><td>{}</td><td>{}</td></tr>', rows)
        return format_html(
            "<table><tr><th>field</th><th>{}</th><th>v{} ({})</th></tr>{}</table>", header, obj.number, obj.status, body
        )

    @admin.display(description="Latest impact preview")
    def latest_preview(self, obj):
        preview = obj.previews.first()
        if preview is None:
            return "—"
        totals = (preview.result or {}).get("totals")
        return format_html(
            "{} ({}/{} actions) {}", preview.status, preview.progress_done, preview.progress_total, _pretty(totals)
        )

    def _reviewer(self, request):
        if request.user.role not in ("reviewer", "admin"):
            raise PermissionDenied

    @admin.action(description="Approve selected versions (not your own)")
    def approve(self, request, queryset):
        self._reviewer(request)
        return _run(self, request, queryset, services.methodology_version_approve, "Approve")

    @admin.action(description="Reject selected versions (not your own)")
    def reject(self, request, queryset):
        self._reviewer(request)
        return _run(self, request, queryset, services.methodology_version_reject, "Reject")

    @admin.action(description="Submit selected drafts for review (your own)")
    def submit(self, request, queryset):
        self._reviewer(request)
        return _run(self, request, queryset, services.methodology_version_submit, "Submit", with_note=False)

    @admin.action(description="Preview impact over the last 30 days")
    def preview(self, request, queryset):
        self._reviewer(request)
        return _run(self, request, queryset, services.impact_preview_request, "Preview impact", with_note=False)


@admin.register(PointsPolicyVersion)
class PointsPolicyVersionAdmin(ReadOnlyAdmin):
    list_display = ["number", "status", "points_per_gram", "lot_expiry_months", "effective_from", "effective_to"]
    readonly_fields = [f.name for f in PointsPolicyVersion._meta.fields]
    inlines = [PointsTransitionInline]
    actions = ["approve", "reject"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.action(description="Approve selected versions (not your own)")
    def approve(self, request, queryset):
        return _run(self, request, queryset, services.points_policy_version_approve, "Approve")

    @admin.action(description="Reject selected versions (not your own)")
    def reject(self, request, queryset):
        return _run(self, request, queryset, services.points_policy_version_reject, "Reject")


@admin.register(ImpactPreview)
class ImpactPreviewAdmin(ReadOnlyAdmin):
    list_display = ["id", "version", "days", "status", "progress_done", "progress_total", "created_at"]
    list_select_related = ["version__methodology"]
    readonly_fields = [f.name for f in ImpactPreview._meta.fields]

    def has_add_permission(self, request):
        return False


assert VersionStatus  # re-exported for admin templates
