from django.contrib import admin

from backend.accounts.models import Consent, District, User


class ConsentInline(admin.TabularInline):
    model = Consent
    extra = 0
    readonly_fields = ["kind", "version", "granted_at", "withdrawn_at"]
    can_delete = False


@admin.register(User)
class UserAdmin(admin.ModelAdmin):
    list_display = ["id", "phone_masked", "display_name", "role", "status", "district", "date_joined"]
    list_filter = ["role", "status", "district"]
    search_fields = ["display_name", "phone_masked"]
    readonly_fields = ["phone_masked", "date_joined", "last_login", "erased_at"]
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
    inlines = [ConsentInline]


@admin.register(District)
class DistrictAdmin(admin.ModelAdmin):
    list_display = ["code", "name_zh", "name_en", "co2_intensity_target_pct"]
