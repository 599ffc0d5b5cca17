"""Statistics API: public city and district figures (small cells suppressed), the plan panel, leaderboards,
the district ranking, the resident's own summary and leaderboard listing, and reviewers' daily exports."""

import re
from datetime import date, timedelta

from django.core.cache import cache
from django.http import Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from backend.core.pagination import CursorPagination
from backend.core.permissions import IsReviewer
from backend.stats import exports, reference, selectors, services
from backend.stats import serializers as out
from backend.stats.leaderboards import CITY, board_around, board_page, now_shanghai, period_bounds
from backend.stats.models import LeaderboardPreference

PUBLIC_CACHE_S = 300
MAX_MONTHS = 36
MAX_ADMIN_DAYS = 731
MONTH_RE = re.compile(r"^[0-9]{4}-[0-9]{2}$")  # ASCII digits only
CODE_RE = re.compile(r"^[a-z0-9_]{1,32}$")


class MonthField(serializers.CharField):
    default_error_messages = {"invalid": "Use YYYY-MM."}

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if not MONTH_RE.match(value):
            self.fail("invalid")
        try:
            month = date(int(value[:4]), int(value[5:]), 1)
        except ValueError:
            self.fail("invalid")
        if not 2000 <= month.year <= 2100:  # also keeps "the previous period" inside the calendar
            self.fail("invalid")
        return month


class CodeField(serializers.CharField):
    default_error_messages = {"invalid": "Lower-case letters, digits and _ only."}

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if not CODE_RE.match(value):
            self.fail("invalid")
        return value


class PublicStatsQuerySerializer(serializers.Serializer):
    from_month = MonthField(required=False, help_text="First month, YYYY-MM (default: 11 months before to_month).")
    to_month = MonthField(required=False, help_text="Last month, YYYY-MM (default: the current month).")
    methodology = CodeField(required=False, help_text="Only this methodology.")

    def validate(self, attrs):
        end = attrs.get("to_month") or selectors.month_of(now_shanghai().date())
        start = attrs.get("from_month") or selectors.add_months(end, -11)
        if start > end:
            raise serializers.ValidationError({"from_month": "from_month is after to_month."})
        if selectors.months_between(start, end) > MAX_MONTHS:
            raise serializers.ValidationError({"from_month": f"At most {MAX_MONTHS} months."})
        return {**attrs, "from_month": start, "to_month": end}


def _public(request, district: str | None) -> Response:
    params = PublicStatsQuerySerializer(data=request.query_params)
    params.is_valid(raise_exception=True)
    v = params.validated_data
    scope = selectors.Scope(v["from_month"], v["to_month"], district, v.get("methodology"))
    key = f"stats:public:{district}:{scope.start}:{scope.end}:{scope.methodology}"
    data = cache.get(key)
    if data is None:
        data = out.PublicStatsSerializer(selectors.public_stats(scope)).data
        cache.set(key, data, PUBLIC_CACHE_S)
    return Response(data)


class CityStatsView(APIView):
    permission_classes = [AllowAny]
    authentication_classes: list = []

    @extend_schema(
        operation_id="stats_city", parameters=[PublicStatsQuerySerializer], responses=out.PublicStatsSerializer
    )
    def get(self, request):
        """The city's carbon-inclusion figures over whole months: totals, per methodology, per month, per
        census resident, and the trend against the previous period of the same length. Figures describing
        fewer than 10 residents are null with `suppressed: true`; totals are sums of published cells (month x
        district x methodology) only, so they never reveal a suppressed cell; `partial: true` says small cells
        were left out. Cached for 5 minutes."""
        return _public(request, None)


class DistrictStatsView(APIView):
    permission_classes = [AllowAny]
    authentication_classes: list = []

    @extend_schema(
        operation_id="stats_district", parameters=[PublicStatsQuerySerializer], responses=out.PublicStatsSerializer
    )
    def get(self, request, code: str):
        """One district's figures (code from GET /api/v1/districts), like the city's: small cells suppressed,
        totals are sums of published cells only. Cached for 5 minutes."""
        if code not in reference.POPULATION_2020:
            raise Http404
        return _public(request, code)


class PlanQuerySerializer(serializers.Serializer):
    year = serializers.IntegerField(required=False, min_value=2020, max_value=2100)


class PlanPanelView(APIView):
    permission_classes = [AllowAny]
    authentication_classes: list = []

    @extend_schema(operation_id="stats_plan", parameters=[PlanQuerySerializer], responses=out.PlanPanelSerializer)
    def get(self, request):
        """The climate plan's targets beside what the platform measured (green-travel trips and km by mode and
        district, grams per census resident beside each district's CO2-intensity target). The platform's
        share among its residents, not the city's official statistic. Small cells suppressed."""
        params = PlanQuerySerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        year = params.validated_data.get("year") or now_shanghai().year
        key = f"stats:plan:{year}"
        data = cache.get(key)
        if data is None:
            data = out.PlanPanelSerializer(selectors.plan_panel(year=year)).data
            cache.set(key, data, PUBLIC_CACHE_S)
        return Response(data)


# ------------------------------------------------------------------------------------------- leaderboards


class LeaderboardQuerySerializer(serializers.Serializer):
    district = serializers.ChoiceField(choices=sorted(reference.POPULATION_2020), required=False)
    limit = serializers.IntegerField(required=False, min_value=1, max_value=100, default=20)


def _names(user_ids) -> dict[int, str]:
    from backend.accounts.models import User

    return {
        uid: name or out.ANONYMOUS_NAME
        for uid, name in User.objects.filter(id__in=user_ids, is_active=True).values_list("id", "display_name")
    }


class LeaderboardView(APIView):
    permission_classes = [AllowAny]

    @extend_schema(
        operation_id="leaderboards_retrieve",
        parameters=[LeaderboardQuerySerializer, OpenApiParameter("period", str, "path", enum=["week", "month"])],
        responses=out.LeaderboardSerializer,
    )
    def get(self, request, period: str):
        """The current Asia/Shanghai week's (Monday to Sunday) or month's residents by grams credited, city-wide
        or in one `district`, by display name only. Signed in, `me` is my own rank with two neighbours each
        side (empty when I opted out or have no grams yet). Erased residents never appear."""
        if period not in ("week", "month"):
            raise Http404
        params = LeaderboardQuerySerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        scope = params.validated_data.get("district") or CITY
        top, size, origin = board_page(period=period, scope=scope, limit=params.validated_data["limit"])
        me = []
        user = request.user
        if user.is_authenticated:
            me = board_around(period=period, scope=scope, user_id=user.id)
        names = _names({s.user_id for s in top} | {s.user_id for s in me})
        start, end = period_bounds(period)

        def entries(standings):
            return [
                {"rank": s.rank, "display_name": names[s.user_id], "grams": s.grams, "is_me": s.user_id == user.id}
                for s in standings
                if s.user_id in names
            ]

        return Response(
            out.LeaderboardSerializer(
                {
                    "period": period,
                    "from_day": start,
                    "to_day": end,
                    "district": None if scope == CITY else scope,
                    "size": size,
                    "source": origin,
                    "entries": entries(top),
                    "me": entries(me),
                }
            ).data
        )


class DistrictRankingView(APIView):
    permission_classes = [AllowAny]
    authentication_classes: list = []

    @extend_schema(operation_id="leaderboards_districts", responses=out.DistrictRankingSerializer)
    def get(self, request):
        """This Asia/Shanghai week's districts by grams credited per census resident (2020). A district with
        fewer than 10 active residents this week is suppressed and unranked. Cached for 5 minutes."""
        data = cache.get("stats:district-ranking")
        if data is None:
            start, end = period_bounds("week")
            data = out.DistrictRankingSerializer(
                {"from_day": start, "to_day": end, "districts": selectors.district_ranking(start=start)}
            ).data
            cache.set("stats:district-ranking", data, PUBLIC_CACHE_S)
        return Response(data)


# ---------------------------------------------------------------------------------------------------- me


class MeSummaryView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(operation_id="me_summary", responses=out.MeSummarySerializer)
    def get(self, request):
        """My grams this Asia/Shanghai month and year, what they equal (km not driven by car, trees' yearly
        uptake; factors and sources included) and my rank in my district this month."""
        return Response(out.MeSummarySerializer(selectors.me_summary(user=request.user)).data)


class ListingSerializer(serializers.Serializer):
    listed = serializers.BooleanField(help_text="Shown on leaderboards by display name (never phone or real name).")


class MeLeaderboardListingView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(operation_id="me_leaderboard_listing_retrieve", responses=ListingSerializer)
    def get(self, request):
        """Whether I appear on leaderboards (default: yes, by display name)."""
        pref = LeaderboardPreference.objects.filter(user_id=request.user.id).first()
        return Response({"listed": pref.listed if pref else True})

    @extend_schema(operation_id="me_leaderboard_listing_update", request=ListingSerializer, responses=ListingSerializer)
    def put(self, request):
        """Opt out of (or back into) leaderboards. Takes effect on the boards at once."""
        data = ListingSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        pref = services.leaderboard_listing_set(user=request.user, listed=data.validated_data["listed"])
        return Response({"listed": pref.listed})


# ------------------------------------------------------------------------------------------------- admin


class CSVRenderer(BaseRenderer):
    media_type, format = "text/csv", "csv"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return data if isinstance(data, bytes) else str(data).encode()


class XLSXRenderer(CSVRenderer):
    media_type, format = exports.XLSX_TYPE, "xlsx"


class AdminStatsQuerySerializer(serializers.Serializer):
    date_from = serializers.DateField(required=False, help_text="First Asia/Shanghai day (default: 30 days ago).")
    date_to = serializers.DateField(required=False, help_text="Last day, inclusive (default: today).")
    district = serializers.CharField(
        required=False, allow_blank=True, max_length=6, help_text="A district code; empty: residents without one."
    )
    methodology = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=32,
        help_text="A methodology code; empty: the rows not specific to one (registrations, redemptions, residents "
        "active in any methodology).",
    )
    source = serializers.ChoiceField(choices=["", "partner", "self_report"], required=False)

    def validate(self, attrs):
        end = attrs.get("date_to") or now_shanghai().date()
        start = attrs.get("date_from") or end - timedelta(days=29)
        if start > end:
            raise serializers.ValidationError({"date_from": "date_from is after date_to."})
        if (end - start).days >= MAX_ADMIN_DAYS:
            raise serializers.ValidationError({"date_from": f"At most {MAX_ADMIN_DAYS} days."})
        return {**attrs, "date_from": start, "date_to": end}


class AdminStatsPagination(CursorPagination):
    ordering = ("day", "district", "methodology", "source", "id")
    page_size = 100
    max_page_size = 1000


class AdminStatsView(APIView):
    permission_classes = [IsReviewer]
    renderer_classes = [JSONRenderer, CSVRenderer, XLSXRenderer]

    def handle_exception(self, exc):
        # Errors keep the one JSON error shape even when a file was asked for.
        response = super().handle_exception(exc)
        self.request.accepted_renderer, self.request.accepted_media_type = JSONRenderer(), "application/json"
        return response

    @extend_schema(
        operation_id="admin_stats_list",
        parameters=[
            AdminStatsQuerySerializer,
            OpenApiParameter("format", str, enum=["json", "csv", "xlsx"], description="csv / xlsx: a streamed file"),
        ],
        responses={
            (200, "application/json"): out.AdminStatsPageSerializer,
            (200, "text/csv"): OpenApiTypes.BINARY,
            (200, exports.XLSX_TYPE): OpenApiTypes.BINARY,
        },
    )
    def get(self, request):
        """Daily aggregates per Asia/Shanghai day x district x methodology x source, unsuppressed, for reviewers
        and the city's greenhouse-gas inventory team; `?format=csv` or `xlsx` streams every matching row.
        Rows with methodology '' carry registrations, redemptions and residents active in any methodology."""
        params = AdminStatsQuerySerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        v = params.validated_data
        rows = selectors.admin_stats(
            start=v["date_from"],
            end=v["date_to"],
            district=v.get("district"),
            methodology=v.get("methodology"),
            source=v.get("source"),
        )
        fmt = request.accepted_renderer.format
        filename = f"qingdao-stats-{v['date_from']}-{v['date_to']}"
        if fmt == "csv":
            return exports.csv_response(rows, filename)
        if fmt == "xlsx":
            return exports.xlsx_response(rows, filename)
        paginator = AdminStatsPagination()
        page = paginator.paginate_queryset(rows, request, view=self)
        return paginator.get_paginated_response(out.DailyStatSerializer(page, many=True).data)
