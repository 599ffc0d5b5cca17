"""Output serializers of the statistics API (each API its own; unique component names)."""

from rest_framework import serializers

ANONYMOUS_NAME = "青碳行居民"  # shown for a resident without a display name: never a phone or a real name


class FiguresSerializer(serializers.Serializer):
    suppressed = serializers.BooleanField(help_text="True: fewer than 10 residents; every figure is null.")
    partial = serializers.BooleanField(help_text="True: some small cells were left out of these sums.")
    active_residents = serializers.IntegerField(allow_null=True, help_text="Distinct residents credited.")
    actions = serializers.IntegerField(allow_null=True, help_text="Actions credited (net of reversals).")
    grams = serializers.IntegerField(allow_null=True, help_text="Grams CO2e credited.")
    points_issued = serializers.IntegerField(allow_null=True)


class StatsTotalsSerializer(FiguresSerializer):
    points_redeemed = serializers.IntegerField(allow_null=True, help_text="Points residents spent on rewards.")


class StatsMethodologySerializer(FiguresSerializer):
    methodology = serializers.CharField()
    quantity = serializers.DecimalField(
        max_digits=20, decimal_places=6, allow_null=True, help_text="Credited activity in the methodology's unit."
    )


class StatsMonthSerializer(StatsTotalsSerializer):
    month = serializers.CharField(help_text="YYYY-MM")


class PerCapitaSerializer(serializers.Serializer):
    suppressed = serializers.BooleanField()
    value = serializers.DecimalField(max_digits=20, decimal_places=3, allow_null=True, help_text="g per resident")


class TrendSerializer(serializers.Serializer):
    previous_from_month = serializers.CharField()
    previous_to_month = serializers.CharField()
    suppressed = serializers.BooleanField()
    previous_grams = serializers.IntegerField(allow_null=True)
    grams_change_pct = serializers.DecimalField(max_digits=20, decimal_places=1, allow_null=True)


class PublicStatsSerializer(serializers.Serializer):
    district = serializers.CharField(allow_null=True)
    methodology = serializers.CharField(allow_null=True)
    from_month = serializers.CharField()
    to_month = serializers.CharField()
    as_of = serializers.DateTimeField(allow_null=True, help_text="The ledger is included up to this instant.")
    min_residents = serializers.IntegerField()
    population = serializers.IntegerField(help_text="2020 census residents.")
    population_source = serializers.CharField()
    totals = StatsTotalsSerializer()
    per_capita_grams = PerCapitaSerializer(help_text="Grams per census resident (all residents, not only users).")
    by_methodology = StatsMethodologySerializer(many=True)
    by_month = StatsMonthSerializer(many=True)
    trend = TrendSerializer()


class PlanTargetSerializer(serializers.Serializer):
    code = serializers.CharField()
    target = serializers.CharField()
    measured_by = serializers.CharField(required=False)


class PlanTravelSerializer(serializers.Serializer):
    district = serializers.CharField()
    methodology = serializers.CharField()
    trips = serializers.IntegerField()
    kilometres = serializers.DecimalField(max_digits=20, decimal_places=6, allow_null=True)
    grams = serializers.IntegerField()


class PlanDistrictSerializer(serializers.Serializer):
    code = serializers.CharField()
    name_zh = serializers.CharField()
    co2_intensity_target_pct = serializers.DecimalField(max_digits=4, decimal_places=1)
    platform_grams = serializers.IntegerField(allow_null=True)
    platform_per_capita_grams = serializers.DecimalField(max_digits=20, decimal_places=3, allow_null=True)


class PlanPanelSerializer(serializers.Serializer):
    year = serializers.IntegerField()
    label = serializers.CharField()
    plan_source = serializers.CharField()
    targets = PlanTargetSerializer(many=True)
    green_travel = PlanTravelSerializer(many=True, help_text="Published cells only (>= 10 residents).")
    districts = PlanDistrictSerializer(many=True)
    min_residents = serializers.IntegerField()
    as_of = serializers.DateTimeField(allow_null=True)


class LeaderboardEntrySerializer(serializers.Serializer):
    rank = serializers.IntegerField()
    display_name = serializers.CharField()
    grams = serializers.IntegerField()
    is_me = serializers.BooleanField()


class LeaderboardSerializer(serializers.Serializer):
    period = serializers.CharField()
    from_day = serializers.DateField()
    to_day = serializers.DateField()
    district = serializers.CharField(allow_null=True)
    size = serializers.IntegerField(help_text="Residents on the board.")
    source = serializers.CharField(help_text="redis, or database when Redis is unavailable.")
    entries = LeaderboardEntrySerializer(many=True)
    me = LeaderboardEntrySerializer(many=True, help_text="My rank with neighbours (signed in, listed).")


class DistrictRankSerializer(serializers.Serializer):
    rank = serializers.IntegerField(allow_null=True)
    code = serializers.CharField()
    name_zh = serializers.CharField()
    name_en = serializers.CharField()
    suppressed = serializers.BooleanField()
    active_residents = serializers.IntegerField(allow_null=True)
    grams = serializers.IntegerField(allow_null=True)
    per_capita_grams = serializers.DecimalField(max_digits=20, decimal_places=3, allow_null=True)
    population = serializers.IntegerField()


class DistrictRankingSerializer(serializers.Serializer):
    from_day = serializers.DateField()
    to_day = serializers.DateField()
    districts = DistrictRankSerializer(many=True)


class EquivalentsSerializer(serializers.Serializer):
    km_not_driven = serializers.DecimalField(max_digits=20, decimal_places=1)
    trees_yearly_uptake = serializers.DecimalField(max_digits=20, decimal_places=1)


class SummaryPeriodSerializer(serializers.Serializer):
    grams = serializers.IntegerField()
    equivalents = EquivalentsSerializer()

    def to_representation(self, instance):
        data = super().to_representation(instance)
        return {"from": instance["from"].isoformat(), **data}


class EquivalentFactorSerializer(serializers.Serializer):
    equivalent = serializers.CharField()
    grams_per_unit = serializers.DecimalField(max_digits=20, decimal_places=3)
    source = serializers.CharField()


class MeSummarySerializer(serializers.Serializer):
    month = SummaryPeriodSerializer()
    year = SummaryPeriodSerializer()
    factors = EquivalentFactorSerializer(many=True)
    district = serializers.CharField(allow_null=True)
    district_rank_this_month = serializers.IntegerField(allow_null=True)
    as_of = serializers.DateTimeField(allow_null=True)


class DailyStatSerializer(serializers.Serializer):
    day = serializers.DateField()
    district = serializers.CharField()
    methodology = serializers.CharField()
    source = serializers.CharField()
    active_residents = serializers.IntegerField()
    new_residents = serializers.IntegerField()
    actions = serializers.IntegerField()
    grams = serializers.IntegerField()
    points_issued = serializers.IntegerField()
    points_redeemed = serializers.IntegerField()
    quantity = serializers.DecimalField(max_digits=20, decimal_places=6)


class AdminStatsPageSerializer(serializers.Serializer):
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = DailyStatSerializer(many=True)
