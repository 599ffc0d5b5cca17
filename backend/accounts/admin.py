"""Accounts in the admin: read-only screens; role, status and erasure change only through confirmed actions
that call the accounts services. The admin login has the API's lockout (5 failures per number per window,
fail closed when the counter is unreachable). `delete_selected` is disabled site-wide: nothing is deleted here."""

from django import forms
from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

from backend.accounts import services
from backend.accounts.auth import LoginLocked, LoginUnavailable, login_attempt_register, login_attempt_succeeded
from backend.accounts.models import Consent, District, User
from backend.core.admin import NoteForm, ReadOnlyAdmin, ReadOnlyInline, confirmed_action


class LockoutAdminAuthenticationForm(AdminAuthenticationForm):
    """The admin login counts attempts per phone number exactly like POST /auth/token."""

    error_messages = {
        **AdminAuthenticationForm.error_messages,
        "login_locked": LoginLocked.default_detail,
        "login_unavailable": LoginUnavailable.default_detail,
    }

    def __init__(self, request=None, *args, **kwargs):
        super().__init__(request, *args, **kwargs)
        # The username field is the phone *hash* in the model; people type their phone number.
        self.fields["username"].label = _("Phone")
        self.fields["username"].widget.attrs["autocomplete"] = "tel"

    def get_invalid_login_error(self):
        return ValidationError(
            _("Please enter the correct phone number and password for a staff account."), code="invalid_login"
        )

    def clean(self):
        try:
            e164 = login_attempt_register(self.cleaned_data.get("username") or "")
        except LoginLocked:
            raise ValidationError(self.error_messages["login_locked"], code="login_locked") from None
        except LoginUnavailable:
            raise ValidationError(self.error_messages["login_unavailable"], code="login_unavailable") from None
        cleaned = super().clean()
        login_attempt_succeeded(e164)
        return cleaned


admin.site.login_form = LockoutAdminAuthenticationForm
admin.site.disable_action("delete_selected")


class ConsentInline(ReadOnlyInline):
    model = Consent
    fields = ["kind", "version", "granted_at", "withdrawn_at"]
    readonly_fields = fields


class RoleForm(NoteForm):
    role = forms.ChoiceField(choices=User.Role.choices)


@admin.register(User)
class UserAdmin(ReadOnlyAdmin):
    list_display = ["id", "phone_masked", "display_name", "role", "status", "district", "date_joined"]
    list_filter = ["role", "status", "district"]
    search_fields = ["display_name", "phone_masked"]
    fields = [
        "phone_masked",
        "display_name",
        "district",
        "role",
        "status",
        "is_active",
        "date_joined",
        "last_login",
        "erased_at",
    ]
    readonly_fields = fields
    inlines = [ConsentInline]
    actions = ["change_role", "suspend_users", "reactivate_users", "erase_users"]

    def has_manage_permission(self, request):
        return request.user.is_superuser  # the admin role

    @admin.action(description=_("Change role…"), permissions=["manage"])
    def change_role(self, request, queryset):
        return confirmed_action(
            self,
            request,
            queryset,
            title="Change role",
            form_class=RoleForm,
            perform=lambda user, role, note: services.user_set_role(user_id=user.pk, role=role, actor=request.user),
        )

    @admin.action(description=_("Suspend (no login, tokens revoked)…"), permissions=["manage"])
    def suspend_users(self, request, queryset):
        return confirmed_action(
            self,
            request,
            queryset,
            title="Suspend",
            perform=lambda user, note: services.user_set_status(
                user_id=user.pk, status=User.Status.SUSPENDED, actor=request.user
            ),
        )

    @admin.action(description=_("Reactivate…"), permissions=["manage"])
    def reactivate_users(self, request, queryset):
        return confirmed_action(
            self,
            request,
            queryset,
            title="Reactivate",
            perform=lambda user, note: services.user_set_status(
                user_id=user.pk, status=User.Status.ACTIVE, actor=request.user
            ),
        )

    @admin.action(description=_("Erase personal data (PIPL)…"), permissions=["manage"])
    def erase_users(self, request, queryset):
        return confirmed_action(
            self, request, queryset, title="Erase (PIPL)", perform=lambda user, note: services.user_erase(user=user)
        )


@admin.register(District)
class DistrictAdmin(ReadOnlyAdmin):
    list_display = ["code", "name_zh", "name_en", "co2_intensity_target_pct"]


# simplejwt's token screens: deleting a blacklisted token would revoke the revocation. Read-only here.
for _model in (OutstandingToken, BlacklistedToken):
    _original = admin.site._registry[_model].__class__
    admin.site.unregister(_model)
    admin.site.register(
        _model,
        type(
            _original.__name__,
            (_original,),
            {
                "has_delete_permission": lambda self, request, obj=None: False,
                "has_change_permission": lambda self, request, obj=None: False,
                "has_add_permission": lambda self, request, obj=None: False,
            },
        ),
    )
