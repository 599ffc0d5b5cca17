"""Merchant side of the rewards API (`/api/v1/merchant/...`), for users with role `merchant_staff`. Every
lookup is scoped to the caller's own merchant: another merchant's reward or voucher is 404, never 403."""

from datetime import timedelta

from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.generics import ListAPIView
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from backend.core.errors import ApplicationError
from backend.core.pagination import cursor_pagination, paginated_response
from backend.core.parsers import JSONParser
from backend.core.permissions import IsMerchantStaff
from rewards import catalogue, qr, selectors, services
from rewards.models import Category, Reward, Voucher

SHANGHAI_TZ = "Asia/Shanghai"
MAX_SUMMARY_DAYS = 92


class AsciiIntegerField(serializers.IntegerField):
    """An integer as a JSON number or ASCII digits: full-width or other Unicode digits are refused rather than
    silently read (int("１２３") would be 123)."""

    def to_internal_value(self, data):
        if isinstance(data, str) and not data.strip().lstrip("+-").isascii():
            self.fail("invalid")
        if isinstance(data, bool):
            self.fail("invalid")
        return super().to_internal_value(data)


class MerchantRewardSerializer(serializers.ModelSerializer):
    image = serializers.SerializerMethodField()
    district = serializers.CharField(source="district_id", allow_null=True)

    class Meta:
        model = Reward
        fields = [
            "id",
            "title_zh",
            "title_en",
            "description_zh",
            "description_en",
            "category",
            "image",
            "points_cost",
            "stock",
            "limit_count",
            "limit_period",
            "valid_from",
            "valid_until",
            "voucher_validity_days",
            "district",
            "face_value_minor",
            "currency",
            "status",
            "created_at",
            "updated_at",
        ]

    def get_image(self, obj) -> str | None:
        return obj.image.url if obj.image else None


class RewardInputSerializer(serializers.Serializer):
    title_zh = serializers.CharField(max_length=120)
    title_en = serializers.CharField(max_length=120, required=False, allow_blank=True)
    description_zh = serializers.CharField(max_length=2000, required=False, allow_blank=True)
    description_en = serializers.CharField(max_length=2000, required=False, allow_blank=True)
    category = serializers.ChoiceField(choices=Category.choices, required=False)
    points_cost = AsciiIntegerField(min_value=1, max_value=100_000_000)
    stock = AsciiIntegerField(
        min_value=0, max_value=100_000_000, allow_null=True, required=False, help_text="null: unlimited."
    )
    limit_count = AsciiIntegerField(min_value=1, max_value=10_000, allow_null=True, required=False)
    limit_period = serializers.ChoiceField(choices=Reward.Period.choices, allow_blank=True, required=False)
    valid_from = serializers.DateTimeField(required=False)
    valid_until = serializers.DateTimeField(allow_null=True, required=False)
    voucher_validity_days = AsciiIntegerField(min_value=1, max_value=366, required=False)
    district = serializers.RegexField(r"^\d{6}$", allow_null=True, required=False)
    face_value_minor = AsciiIntegerField(min_value=0, max_value=10**12, required=False)
    status = serializers.ChoiceField(choices=[Reward.Status.ACTIVE, Reward.Status.PAUSED], required=False)


class RewardPatchSerializer(RewardInputSerializer):
    """Everything but `stock` (adjusted with POST .../stock) and `status` (pause / resume / archive)."""

    stock = None
    status = None


class StockAdjustSerializer(serializers.Serializer):
    delta = AsciiIntegerField(min_value=-100_000_000, max_value=100_000_000)


class ImageInputSerializer(serializers.Serializer):
    image = serializers.FileField(help_text="Any common image format, at most 2 MB; stored re-encoded as JPEG.")


class MerchantVoucherSerializer(serializers.ModelSerializer):
    reward_title = serializers.CharField(source="reward.title_zh")

    class Meta:
        model = Voucher
        fields = [
            "code",
            "status",
            "reward_id",
            "reward_title",
            "points_cost",
            "face_value_minor",
            "currency",
            "issued_at",
            "expires_at",
            "redeemed_at",
            "redeemed_by_id",
        ]


class ScanInputSerializer(serializers.Serializer):
    qr_payload = serializers.CharField(max_length=qr.MAX_PAYLOAD_CHARS)


class SummaryRowSerializer(serializers.Serializer):
    day = serializers.DateField()
    vouchers = serializers.IntegerField()
    points = serializers.IntegerField()
    face_value_minor = serializers.IntegerField()
    currency = serializers.CharField()


class SummaryQuerySerializer(serializers.Serializer):
    date_from = serializers.DateField(required=False)
    date_to = serializers.DateField(required=False)


class StaffSerializer(serializers.Serializer):
    user_id = serializers.IntegerField()
    display_name = serializers.CharField(source="user.display_name")
    phone = serializers.CharField(source="user.phone_masked")
    is_manager = serializers.BooleanField()
    created_at = serializers.DateTimeField()


class StaffInputSerializer(serializers.Serializer):
    phone = serializers.CharField(max_length=32)
    password = serializers.CharField(max_length=128, write_only=True)
    display_name = serializers.CharField(max_length=64, required=False, allow_blank=True)
    is_manager = serializers.BooleanField(required=False, default=False)


class MerchantView(APIView):
    permission_classes = [IsMerchantStaff]
    parser_classes = [JSONParser]

    def staff(self):
        return selectors.staff_of(self.request.user)


# --- rewards ----------------------------------------------------------------------------------------------


class MerchantRewardsView(MerchantView, ListAPIView):
    serializer_class = MerchantRewardSerializer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Reward.objects.none()
        return selectors.merchant_rewards(merchant_id=self.staff().merchant_id)

    @extend_schema(operation_id="merchant_rewards_list")
    def get(self, request, *args, **kwargs):
        """My merchant's rewards, newest first (all statuses)."""
        return super().get(request, *args, **kwargs)

    @extend_schema(
        operation_id="merchant_rewards_create", request=RewardInputSerializer, responses={201: MerchantRewardSerializer}
    )
    def post(self, request):
        """List a new reward (active unless `status: paused`). `stock` null or absent: unlimited."""
        data = RewardInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        reward = catalogue.reward_create(merchant=self.staff().merchant, **data.validated_data)
        return Response(MerchantRewardSerializer(reward).data, status=status.HTTP_201_CREATED)


class MerchantRewardDetailView(MerchantView):
    @extend_schema(operation_id="merchant_rewards_retrieve", responses={200: MerchantRewardSerializer})
    def get(self, request, reward_id: int):
        """One of my merchant's rewards (another merchant's: 404)."""
        reward = selectors.merchant_reward_get(merchant_id=self.staff().merchant_id, reward_id=reward_id)
        return Response(MerchantRewardSerializer(reward).data)

    @extend_schema(
        operation_id="merchant_rewards_update", request=RewardPatchSerializer, responses={200: MerchantRewardSerializer}
    )
    def patch(self, request, reward_id: int):
        """Change a reward's details (not stock or status: see .../stock, .../pause, .../resume, .../archive)."""
        data = RewardPatchSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        reward = catalogue.reward_update(merchant=self.staff().merchant, reward_id=reward_id, **data.validated_data)
        return Response(MerchantRewardSerializer(reward).data)


def _status_view(target: str, operation_id: str, doc: str):
    class View(MerchantView):
        @extend_schema(operation_id=operation_id, request=None, responses={200: MerchantRewardSerializer})
        def post(self, request, reward_id: int):
            reward = catalogue.reward_set_status(merchant=self.staff().merchant, reward_id=reward_id, status=target)
            return Response(MerchantRewardSerializer(reward).data)

    View.post.__doc__ = doc
    View.__name__ = View.__qualname__ = f"MerchantReward{target.title()}View"
    return View


MerchantRewardPauseView = _status_view("paused", "merchant_rewards_pause", "Pause: hidden, not redeemable.")
MerchantRewardResumeView = _status_view("active", "merchant_rewards_resume", "Resume a paused reward.")
MerchantRewardArchiveView = _status_view(
    "archived", "merchant_rewards_archive", "Archive (final). Issued vouchers stay valid."
)


class MerchantRewardStockView(MerchantView):
    @extend_schema(
        operation_id="merchant_rewards_stock", request=StockAdjustSerializer, responses={200: MerchantRewardSerializer}
    )
    def post(self, request, reward_id: int):
        """Add (`delta` > 0) or withdraw (`delta` < 0) items; relative, so concurrent redemptions are never
        overwritten. 409 `stock_insufficient` (would go below zero), `stock_unlimited`."""
        data = StockAdjustSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        reward = catalogue.reward_stock_adjust(
            merchant=self.staff().merchant, reward_id=reward_id, delta=data.validated_data["delta"]
        )
        return Response(MerchantRewardSerializer(reward).data)


class MerchantRewardImageView(MerchantView):
    parser_classes = [MultiPartParser]

    @extend_schema(
        operation_id="merchant_rewards_image", request=ImageInputSerializer, responses={200: MerchantRewardSerializer}
    )
    def post(self, request, reward_id: int):
        """Upload the reward's image (multipart field `image`, at most 2 MB). It is decoded and re-encoded as
        JPEG (at most 1600 px a side, metadata dropped). 400 `image_too_large`, `image_invalid`."""
        data = ImageInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        reward = catalogue.reward_image_set(
            merchant=self.staff().merchant, reward_id=reward_id, upload=data.validated_data["image"]
        )
        return Response(MerchantRewardSerializer(reward).data)


# --- vouchers at the counter ------------------------------------------------------------------------------


class MerchantVouchersView(MerchantView, ListAPIView):
    serializer_class = MerchantVoucherSerializer

    @extend_schema(
        operation_id="merchant_vouchers_list",
        parameters=[
            OpenApiParameter("status", enum=Voucher.Status.values, required=False, description="default redeemed"),
            OpenApiParameter("date", str, required=False, description="YYYY-MM-DD (Asia/Shanghai), redeemed that day"),
        ],
    )
    def get(self, request, *args, **kwargs):
        """Vouchers of my merchant: by default those redeemed at its counters, newest first."""
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Voucher.objects.none()
        query = self.request.query_params
        status_filter = query.get("status")
        if status_filter is not None and status_filter not in Voucher.Status.values:
            raise ApplicationError(_("Unknown status."), code="invalid_choice", attr="status")
        day = serializers.DateField().run_validation(query["date"]) if query.get("date") else None
        return selectors.merchant_vouchers(merchant_id=self.staff().merchant_id, status=status_filter, day=day)


class MerchantVoucherRedeemView(MerchantView):
    parser_classes = [JSONParser]

    @extend_schema(operation_id="merchant_vouchers_redeem", request=None, responses={200: MerchantVoucherSerializer})
    def post(self, request, code: str):
        """Redeem a voucher by its code: the held points are captured and the voucher is `redeemed`.
        404 `voucher_not_found` (also for another merchant's code); 409 `voucher_already_redeemed`,
        `voucher_expired`, `voucher_cancelled`."""
        voucher = services.voucher_capture(staff=self.staff(), code=code)
        return Response(MerchantVoucherSerializer(voucher).data)


class MerchantVoucherScanView(MerchantView):
    parser_classes = [JSONParser]

    @extend_schema(
        operation_id="merchant_vouchers_scan", request=ScanInputSerializer, responses={200: MerchantVoucherSerializer}
    )
    def post(self, request):
        """Redeem a voucher from its scanned `qr_payload` (signature and expiry checked). 400 `qr_invalid`;
        otherwise as `.../vouchers/{code}/redeem`."""
        data = ScanInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        claims = qr.qr_verify(data.validated_data["qr_payload"])
        staff = self.staff()
        if claims["m"] != staff.merchant_id:
            raise ApplicationError(_("No such voucher at this merchant."), code="voucher_not_found", status_code=404)
        voucher = services.voucher_capture(staff=staff, code=claims["c"])
        return Response(MerchantVoucherSerializer(voucher).data)


class MerchantSummaryView(MerchantView):
    @extend_schema(
        operation_id="merchant_summary",
        parameters=[SummaryQuerySerializer],
        responses={200: SummaryRowSerializer(many=True)},
    )
    def get(self, request):
        """Redemptions per Asia/Shanghai day at my merchant: vouchers, points captured, face value owed.
        Default: the last 30 days; at most 92 days at once."""
        query = SummaryQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        today = timezone.localdate(timezone=timezone.get_default_timezone())
        date_to = query.validated_data.get("date_to") or today
        date_from = query.validated_data.get("date_from") or date_to - timedelta(days=29)
        if date_from > date_to or (date_to - date_from).days >= MAX_SUMMARY_DAYS:
            raise ApplicationError(_("Give a range of 1 to 92 days."), code="date_range_invalid", attr="date_from")
        rows = selectors.merchant_summary(merchant_id=self.staff().merchant_id, date_from=date_from, date_to=date_to)
        return Response(SummaryRowSerializer(rows, many=True).data)


# --- staff ------------------------------------------------------------------------------------------------


class ManagerView(MerchantView):
    def manager(self):
        staff = self.staff()
        if not staff.is_manager:
            raise ApplicationError(_("Only a manager can do this."), code="manager_required", status_code=403)
        return staff


class MerchantStaffView(ManagerView):
    pagination_class = cursor_pagination("id")

    @extend_schema(operation_id="merchant_staff_list", responses={200: StaffSerializer(many=True)})
    def get(self, request):
        """The staff of my merchant."""
        staff = self.staff()
        members = staff.merchant.staff.select_related("user")
        return paginated_response(self, members, StaffSerializer)

    @extend_schema(operation_id="merchant_staff_create", request=StaffInputSerializer, responses={201: StaffSerializer})
    def post(self, request):
        """Managers add a member of staff (a new `merchant_staff` login)."""
        manager = self.manager()
        data = StaffInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        member = catalogue.staff_add(merchant=manager.merchant, **data.validated_data)
        return Response(StaffSerializer(member).data, status=status.HTTP_201_CREATED)


class MerchantStaffDetailView(ManagerView):
    @extend_schema(operation_id="merchant_staff_delete", responses={204: None})
    def delete(self, request, user_id: int):
        """Managers remove a member of staff (the login is deactivated). Someone else's: 404."""
        catalogue.staff_remove(merchant=self.manager().merchant, user_id=user_id)
        return Response(status=status.HTTP_204_NO_CONTENT)
