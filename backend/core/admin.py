"""Admin building blocks: the admin is a client of the services like the API.

Every write is an admin action with a confirmation page and a note (`confirmed_action`), calling a service; the
note goes into the admin log. Value-bearing screens are read-only (`ReadOnlyAdmin`), nothing can be deleted
(`delete_selected` is disabled site-wide in backend/accounts/admin.py)."""

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.template.response import TemplateResponse
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from rest_framework.exceptions import APIException

# The site's identity, in the reviewer's language (locale/zh_Hans): 青碳行管理后台 / 青碳行 administration.
admin.site.site_header = _("青碳行 administration")
admin.site.site_title = _("青碳行 admin")
admin.site.index_title = _("Reviews, partners and the ledger")


class NoteForm(forms.Form):
    note = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "cols": 80}),
        max_length=2000,
        help_text=_("Why (kept in the admin log with your name)."),
    )


class ReadOnlyAdmin(admin.ModelAdmin):
    """Shown, never edited, added or deleted here: changes go through confirmed actions calling services."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


def confirmed_action(modeladmin, request, queryset, *, title: str, perform, form_class=NoteForm, finish=None):
    """Run an admin action only after a confirmation page with a note (and any extra fields of `form_class`).

    First POST (from the changelist): renders the page. Second POST (confirm=yes) with a valid form: calls
    `perform(obj, **cleaned_data)` for each selected object, logs "<title>: <note>" on each, reports errors per
    object, then returns `finish([(obj, result), ...])` when given (e.g. a page shown once), else None (Django
    then redirects to the changelist)."""
    if request.POST.get("confirm") == "yes":
        form = form_class(request.POST)
        if form.is_valid():
            results = []
            for obj in queryset:
                try:
                    result = perform(obj, **form.cleaned_data)
                except APIException as error:
                    messages.error(request, f"{obj}: {error.detail}")
                    continue
                results.append((obj, result))
                modeladmin.log_change(request, obj, f"{title}: {form.cleaned_data['note']}")
            if finish is not None:
                return finish(results)
            messages.success(
                request,
                gettext("%(title)s: %(done)d of %(total)d done.")
                % {"title": title, "done": len(results), "total": len(queryset)},
            )
            return None
    else:
        form = form_class()
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": title,
        "objects": list(queryset),
        "form": form,
        "action": request.POST.get("action", ""),
        "opts": modeladmin.model._meta,
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
    }
    return TemplateResponse(request, "admin/confirm_action.html", context)
