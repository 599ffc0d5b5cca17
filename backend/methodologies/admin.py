"""Reviewers' screens: versions side by side with the active one (changed parameters highlighted), the
transition log, approve / reject / preview actions that go through the same services as the API."""

import json

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from rest_framework.exceptions import APIException

from backend.actions.impact import impact_preview_request  # the preview lives downstream of both apps
from backend.core.admin import NoteForm, ReadOnlyAdmin, ReadOnlyInline, confirmed_action
from backend.core.charts import diverging_bars
from backend.methodologies import selectors, services
from backend.methodologies.models import (
    ImpactPreview,
    Methodology,
    MethodologyVersion,
    PointsPolicyVersion,
    VersionStatus,
    VersionTransition,
)


class TransitionInline(ReadOnlyInline):
    model = VersionTransition
    fk_name = "methodology_version"
    fields = ["at", "from_status", "to_status", "actor", "note"]
    readonly_fields = fields


class PointsTransitionInline(TransitionInline):
    fk_name = "points_policy_version"


class VersionInline(ReadOnlyInline):
    model = MethodologyVersion
    show_change_link = True
    fields = ["number", "status", "effective_from", "effective_to", "author", "decided_by"]
    readonly_fields = fields


@admin.register(Methodology)
class MethodologyAdmin(ReadOnlyAdmin):
    list_display = ["code", "name_zh", "name_en", "formula_type"]
    readonly_fields = ["code", "formula_type", "created_at"]
    inlines = [VersionInline]


def _pretty(value) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True) if value is not None else "—"


def _is_reviewer(request) -> bool:
    return getattr(request.user, "role", None) in ("reviewer", "admin")


def _run(modeladmin, request, queryset, verb: str):
    """A confirmed admin action (page + note) calling one governance service per selected version."""
    title, func = modeladmin.workflow[verb]
    return confirmed_action(
        modeladmin, request, queryset, title=title, perform=lambda version, note: func(version, request.user, note)
    )


# Which transitions a version's own page offers, by status (the services refuse anything else with a 409).
OFFERED = {
    VersionStatus.DRAFT: ("submit", "preview"),
    VersionStatus.IN_REVIEW: ("approve", "reject", "preview"),
    VersionStatus.APPROVED: ("retire",),
    VersionStatus.ACTIVE: ("retire",),
}


class VersionWorkflowAdmin(ReadOnlyAdmin):
    """A governed version's page carries its transitions as buttons; each opens a confirmation page with a
    note and calls the same service as the API (and as the bulk actions on the list)."""

    workflow: dict = {}  # verb -> (title, func(version, actor, note))

    def has_add_permission(self, request):
        return False  # drafts are created through the API (copy of the active version)

    def has_delete_permission(self, request, obj=None):
        return False  # versions are history

    def get_urls(self):
        own = [
            path(
                "<path:object_id>/transition/<str:verb>/",
                self.admin_site.admin_view(self.transition_view),
                name=f"{self.opts.app_label}_{self.opts.model_name}_transition",
            )
        ]
        return own + super().get_urls()

    @admin.display(description=_("Review"))
    def review_buttons(self, obj):
        verbs = [verb for verb in OFFERED.get(obj.status, ()) if verb in self.workflow]
        if not verbs:
            return "—"
        name = f"admin:{self.opts.app_label}_{self.opts.model_name}_transition"
        return format_html_join(
            " ",
            '<a class="button version-{}" href="{}" style="margin-right:6px">{}…</a>',
            ((verb, reverse(name, args=[obj.pk, verb]), self.workflow[verb][0]) for verb in verbs),
        )

    def transition_view(self, request, object_id, verb):
        if verb not in self.workflow:
            raise Http404
        obj = self.get_object(request, object_id)
        if obj is None:
            raise Http404
        if not (self.has_view_permission(request, obj) and _is_reviewer(request)):
            raise PermissionDenied
        title, func = self.workflow[verb]
        change_url = reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_change", args=[obj.pk])
        form = NoteForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            note = form.cleaned_data["note"]
            try:
                result = func(obj, request.user, note)
            except APIException as error:
                messages.error(request, f"{title}: {error.detail}")
            else:
                self.log_change(request, obj, f"{title}: {note}")
                done_for = result if isinstance(result, type(obj)) else obj
                messages.success(
                    request, gettext("%(title)s: done for %(object)s.") % {"title": title, "object": done_for}
                )
                return HttpResponseRedirect(change_url)
        context = {
            **self.admin_site.each_context(request),
            "title": f"{title}: {obj}",
            "object": obj,
            "form": form,
            "opts": self.opts,
            "change_url": change_url,
            "verb": verb,
        }
        return TemplateResponse(request, "admin/methodologies/transition.html", context)

    def _bulk(self, request, queryset, verb):
        if not _is_reviewer(request):
            raise PermissionDenied
        return _run(self, request, queryset, verb)


DIFF_STYLE = (
    "<style>.version-diff{table-layout:fixed;width:100%;max-width:1040px;border-collapse:collapse}"
    ".version-diff td,.version-diff th{overflow-wrap:anywhere;word-break:break-word;white-space:pre-wrap;"
    "vertical-align:top;font-size:12px}.version-diff col.field{width:22%}.version-diff col.value{width:39%}"
    ".version-diff tr.changed td{background:#fff3b0;font-weight:bold}</style>"
)


@admin.register(MethodologyVersion)
class MethodologyVersionAdmin(VersionWorkflowAdmin):
    list_display = ["methodology", "number", "status", "effective_from", "effective_to", "author", "decided_by"]
    list_filter = ["status", "methodology"]
    list_select_related = ["methodology", "author", "decided_by"]
    readonly_fields = [
        "methodology",
        "number",
        "status",
        "review_buttons",
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
    workflow = {
        "submit": (
            "Submit for review",
            lambda v, actor, note: services.methodology_version_submit(version_id=v.pk, actor=actor, note=note),
        ),
        "approve": (
            "Approve",
            lambda v, actor, note: services.methodology_version_approve(version_id=v.pk, actor=actor, note=note),
        ),
        "reject": (
            "Reject",
            lambda v, actor, note: services.methodology_version_reject(version_id=v.pk, actor=actor, note=note),
        ),
        "retire": (
            "Retire (request or confirm)",
            lambda v, actor, note: services.methodology_version_retire(version_id=v.pk, actor=actor, note=note),
        ),
        "preview": (
            "Preview impact (last 30 days)",
            lambda v, actor, note: impact_preview_request(version_id=v.pk, actor=actor),
        ),
    }

    @admin.display(description=_("Compared with the active version (changes highlighted)"))
    def side_by_side(self, obj):
        active = selectors.methodology_version_active(code=obj.methodology.code)
        other = active if active and active.pk != obj.pk else None
        changes = selectors.version_diff(other, obj) if other else {}
        rows = []
        for name in MethodologyVersion.CONTENT_FIELDS:
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
                rows.append(("changed" if label in changes else "", label, _pretty(before), _pretty(after)))
        header = gettext("active v%(number)s") % {"number": other.number} if other else gettext("active (this version)")
        body = format_html_join("", '<tr class="{}"><td>{}</td><td>{}</td><td>{}</td></tr>', rows)
        return format_html(
            '{}<table class="version-diff"><colgroup><col class="field"><col class="value"><col class="value">'
            "</colgroup><tr><th>{}</th><th>{}</th><th>v{} ({})</th></tr>{}</table>",
            mark_safe(DIFF_STYLE),  # noqa: S308 - a constant of ours, no input in it
            gettext("field"),
            header,
            obj.number,
            obj.status,
            body,
        )

    @admin.display(description=_("Latest impact preview"))
    def latest_preview(self, obj):
        return impact_preview_html(obj.previews.first())

    @admin.action(description=_("Approve selected versions (not your own)"))
    def approve(self, request, queryset):
        return self._bulk(request, queryset, "approve")

    @admin.action(description=_("Reject selected versions (not your own)"))
    def reject(self, request, queryset):
        return self._bulk(request, queryset, "reject")

    @admin.action(description=_("Submit selected drafts for review (your own)"))
    def submit(self, request, queryset):
        return self._bulk(request, queryset, "submit")

    @admin.action(description=_("Preview impact over the last 30 days"))
    def preview(self, request, queryset):
        return self._bulk(request, queryset, "preview")


def impact_preview_html(preview):
    """A preview as charts: change per district and the largest changes per resident (grams CO2e), from the
    stored result JSON; status and progress while it runs."""
    if preview is None:
        return "—"
    head = format_html(
        "<p>{}</p>",
        gettext("%(status)s (%(done)s/%(total)s actions, %(days)s days)")
        % {
            "status": preview.status,
            "done": preview.progress_done,
            "total": preview.progress_total,
            "days": preview.days,
        },
    )
    result = preview.result or {}
    if preview.status != ImpactPreview.Status.DONE or not result:
        return format_html("{}<p>{}</p>", head, preview.error or "")
    totals = result.get("totals") or {}
    summary = format_html(
        "<p><strong>{}</strong> {}</p>",
        gettext("Total change: %(delta)s g CO2e") % {"delta": f"{int(totals.get('delta_grams', 0)):+,}"},
        gettext("over %(actions)s actions (%(current)s → %(preview)s g); %(residents)s residents affected.")
        % {
            "actions": totals.get("actions", 0),
            "current": f"{int(totals.get('current_grams', 0)):,}",
            "preview": f"{int(totals.get('preview_grams', 0)):,}",
            "residents": result.get("residents_affected", 0),
        },
    )
    districts = [(row["district"], int(row["delta_grams"])) for row in result.get("by_district", [])]
    largest = [
        (
            gettext("resident #%(id)s (%(district)s)")
            % {"id": row["resident_id"], "district": row.get("district") or "—"},
            int(row["delta_grams"]),
        )
        for row in result.get("largest_changes", [])[:15]
    ]
    return format_html(
        "{}{}{}{}",
        head,
        summary,
        diverging_bars(districts, title=_("Change by district"), unit="g CO2e"),
        diverging_bars(largest, title=_("Largest changes"), unit="g CO2e"),
    )


@admin.register(PointsPolicyVersion)
class PointsPolicyVersionAdmin(VersionWorkflowAdmin):
    list_display = ["number", "status", "points_per_gram", "lot_expiry_months", "effective_from", "effective_to"]
    readonly_fields = ["review_buttons", *(f.name for f in PointsPolicyVersion._meta.fields)]
    inlines = [PointsTransitionInline]
    actions = ["approve", "reject"]
    workflow = {
        "submit": (
            "Submit for review",
            lambda v, actor, note: services.points_policy_version_submit(version_id=v.pk, actor=actor, note=note),
        ),
        "approve": (
            "Approve",
            lambda v, actor, note: services.points_policy_version_approve(version_id=v.pk, actor=actor, note=note),
        ),
        "reject": (
            "Reject",
            lambda v, actor, note: services.points_policy_version_reject(version_id=v.pk, actor=actor, note=note),
        ),
        "retire": (
            "Retire (request or confirm)",
            lambda v, actor, note: services.points_policy_version_retire(version_id=v.pk, actor=actor, note=note),
        ),
    }

    @admin.action(description=_("Approve selected versions (not your own)"))
    def approve(self, request, queryset):
        return self._bulk(request, queryset, "approve")

    @admin.action(description=_("Reject selected versions (not your own)"))
    def reject(self, request, queryset):
        return self._bulk(request, queryset, "reject")


@admin.register(ImpactPreview)
class ImpactPreviewAdmin(ReadOnlyAdmin):
    list_display = ["id", "version", "days", "status", "progress_done", "progress_total", "created_at"]
    list_select_related = ["version__methodology"]
    readonly_fields = ["chart", *(f.name for f in ImpactPreview._meta.fields)]

    def has_add_permission(self, request):
        return False

    @admin.display(description=_("Impact"))
    def chart(self, obj):
        return impact_preview_html(obj)


assert VersionStatus  # re-exported for admin templates
