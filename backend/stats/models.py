"""Statistics tables: per-resident day sums (the fine grain), daily and monthly aggregates, the aggregation
watermark, and residents' leaderboard listing preference.

All figures come from the ledger (postings to residents' `carbon` and `points` accounts, the actions they credit),
never from a second source of truth. `methodology = ""` rows are not methodology-specific: redemptions, new
residents (daily), and residents active in any methodology (distinct counts are not additive)."""

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

ALL = ""  # methodology / source of rows that are not specific to one


class StatsWatermark(models.Model):
    """How far the ledger has been aggregated: every ledger transaction created before `ledger_created_before`
    is in ResidentDay (and nothing after it). One row, locked by the aggregator and by rebuilds."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    ledger_created_before = models.DateTimeField()
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(id=1), name="stats_watermark_singleton")]

    def __str__(self) -> str:
        return f"aggregated up to {self.ledger_created_before:%Y-%m-%d %H:%M:%S}"


class ResidentDay(models.Model):
    """One resident's credited sums on one Asia/Shanghai day (the day the action happened) per methodology and
    evidence source. Pseudonymous (a user id, no name or phone); never shown per person except to that resident.
    Feeds the distinct-resident counts, leaderboard rebuilds and /me/summary."""

    day = models.DateField()
    month = models.DateField(help_text="First day of the day's month (monthly cells are recomputed from it).")
    resident = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", db_index=False)
    district = models.CharField(max_length=6, blank=True, default="", help_text="Residence when first aggregated.")
    methodology = models.CharField(max_length=32, blank=True, default=ALL)
    source = models.CharField(max_length=16, blank=True, default=ALL, help_text="Action source: partner/self_report")
    actions = models.BigIntegerField(default=0)
    grams = models.BigIntegerField(default=0)
    points = models.BigIntegerField(default=0)
    points_redeemed = models.BigIntegerField(default=0)
    quantity = models.DecimalField(max_digits=20, decimal_places=6, default=Decimal(0))

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["day", "resident", "methodology", "source"], name="stats_resident_day_key")
        ]
        indexes = [
            models.Index(fields=["resident", "day"], name="stats_rday_resident"),
            models.Index(fields=["month", "district", "methodology"], name="stats_rday_cell"),
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.resident_id} {self.methodology or '-'}: {self.grams} g"


class _Figures(models.Model):
    district = models.CharField(max_length=6, blank=True, default="")
    methodology = models.CharField(max_length=32, blank=True, default=ALL)
    actions = models.BigIntegerField(default=0, help_text="Actions credited (net of reversed credits).")
    grams = models.BigIntegerField(default=0)
    points_issued = models.BigIntegerField(default=0)
    points_redeemed = models.BigIntegerField(default=0)
    quantity = models.DecimalField(
        max_digits=20, decimal_places=6, default=Decimal(0), help_text="Credited activity in the methodology's unit."
    )

    class Meta:
        abstract = True


class DailyStat(_Figures):
    """Per Asia/Shanghai day x district x methodology x source. `active_residents` on a methodology row counts
    residents credited in it that day; on the `methodology=""` row, residents credited in any methodology."""

    day = models.DateField()
    source = models.CharField(max_length=16, blank=True, default=ALL)
    active_residents = models.IntegerField(default=0)
    new_residents = models.IntegerField(default=0, help_text="Registrations that day (methodology '' rows only).")

    class Meta:
        verbose_name = _("daily stat")
        verbose_name_plural = _("daily stats")
        constraints = [
            models.UniqueConstraint(fields=["day", "district", "methodology", "source"], name="stats_daily_key")
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.district or '-'} {self.methodology or '*'} {self.source or '*'}"


class MonthlyStat(_Figures):
    """Per month x district x methodology, all sources: the public statistics' smallest cell. `residents` is
    the distinct number of residents behind the cell; below the suppression threshold the cell is never shown
    and never enters a published total."""

    month = models.DateField()
    residents = models.IntegerField(default=0)

    class Meta:
        verbose_name = _("monthly stat")
        verbose_name_plural = _("monthly stats")
        constraints = [models.UniqueConstraint(fields=["month", "district", "methodology"], name="stats_monthly_key")]

    def __str__(self) -> str:
        return f"{self.month:%Y-%m} {self.district or '-'} {self.methodology or '*'}"


class LeaderboardPreference(models.Model):
    """A resident's choice to appear on leaderboards (shown by display name; default listed)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True, related_name="+")
    listed = models.BooleanField(default=True)
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.user_id}: {'listed' if self.listed else 'hidden'}"
