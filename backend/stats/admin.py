"""Reviewers' screens: read-only aggregates (the aggregator and rebuild write them, never the admin) and the
dashboard page at /admin/stats/dashboard/."""

from django.contrib import admin

from backend.stats.models import DailyStat, MonthlyStat


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(DailyStat)
class DailyStatAdmin(ReadOnlyAdmin):
    list_display = ["day", "district", "methodology", "source", "active_residents", "actions", "grams"]
    list_filter = ["methodology", "source", "district"]
    date_hierarchy = "day"
    ordering = ["-day", "district", "methodology", "source"]


@admin.register(MonthlyStat)
class MonthlyStatAdmin(ReadOnlyAdmin):
    list_display = ["month", "district", "methodology", "residents", "actions", "grams"]
    list_filter = ["methodology", "district"]
    ordering = ["-month", "district", "methodology"]
