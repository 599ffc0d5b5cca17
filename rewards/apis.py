"""Residents' side of the rewards API: the public catalogue (cached), redemption, my vouchers, the QR key.
The merchant side is in rewards/apis_merchant.py."""

from urllib.parse import urlencode

from django.utils.translation import gettext_lazy as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotAuthenticated
from rest_framework.filters import OrderingFilter
from rest_framework.generics import ListAPIView
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from backend.core.errors import ApplicationError
from backend.core.parsers import JSONParser
from backend.core.permissions import IsResident
from backend.ledger.models import Account
from rewards import cache, qr, selectors, services
from rewards.models import Category, Reward, Voucher

# --- serializers ------------------------------------------------------------------------------------------


class RewardMerchantSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name_zh = serializers.CharField()
    name_en = serializers.CharField()
    district = serializers.CharField(source="district_id")
    address = serializers.CharField()
    category = serializers.CharField()


class RewardPublicSerializer(serializers.ModelSerializer):
    merchant = RewardMerchantSerializer()
    image = serializers.SerializerMethodField()
    district = serializers.CharField(
        source="district_id", allow_null=True, help_text="Only residents of this district may redeem (null: all)."
    )
    stock = serializers.IntegerField(allow_null=True, help_text="Items left; null means unlimited.")

    class Meta:
        model = Reward
        fields = [
            "id",
            "merchant",
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
        ]

    def get_image(self, obj) -> str | None:
        if not obj.image:
            return None
        request = self.context.get("request")
        return request.build_absolute_uri(obj.image.url) if request else obj.image.url


class VoucherRewardSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    title_zh = serializers.CharField()
    title_en = serializers.CharField()


class VoucherMerchantSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name_zh = serializers.CharField()
    name_en = serializers.CharField()
    address = serializers.CharField()


_DATETIME = serializers.DateTimeField()  # how DRF writes a datetime (ISO 8601 in Asia/Shanghai)


class VoucherSerializer(serializers.ModelSerializer):
    reward = VoucherRewardSerializer()
    merchant = VoucherMerchantSerializer()
    qr_payload = serializers.SerializerMethodField(
        help_text="Ed25519-signed, expiring payload for the merchant's scanner (format: GET /rewards/qr-key)."
    )

    class Meta:
        model = Voucher
        fields = [
            "code",
            "qr_payload",
            "status",
            "expires_at",
            "reward",
            "merchant",
            "points_cost",
            "issued_at",
            "redeemed_at",
            "closed_at",
        ]

    def get_qr_payload(self, obj) -> str:
        return qr.qr_sign(
            code=obj.code, merchant_id=obj.merchant_id, reward_id=obj.reward_id, expires_at=obj.expires_at
        )

    def to_representation(self, instance) -> dict:
        """The fields above, written out: building a ModelSerializer's fields for every voucher cost more Python
        than all the SQL of a redemption. tests/rewards/test_redemption_cost.py checks that this equals DRF's
        generic output field by field, so the two cannot drift apart."""
        reward, merchant, dt = instance.reward, instance.merchant, _DATETIME.to_representation
        return {
            "code": instance.code,
            "qr_payload": self.get_qr_payload(instance),
            "status": str(instance.status),
            "expires_at": dt(instance.expires_at),
            "reward": {"id": reward.id, "title_zh": reward.title_zh, "title_en": reward.title_en},
            "merchant": {
                "id": merchant.id,
                "name_zh": merchant.name_zh,
                "name_en": merchant.name_en,
                "address": merchant.address,
            },
            "points_cost": instance.points_cost,
            "issued_at": dt(instance.issued_at),
            "redeemed_at": None if instance.redeemed_at is None else dt(instance.redeemed_at),
            "closed_at": None if instance.closed_at is None else dt(instance.closed_at),
        }


class RewardListQuerySerializer(serializers.Serializer):
    district = serializers.RegexField(r"^\d{6}$", required=False)
    category = serializers.ChoiceField(choices=Category.choices, required=False)
    merchant = serializers.IntegerField(min_value=1, max_value=2**53, required=False)
    affordable = serializers.BooleanField(required=False, default=False)


class QrKeySerializer(serializers.Serializer):
    alg = serializers.CharField()
    kid = serializers.CharField()
    public_key = serializers.CharField(help_text="Raw 32-byte Ed25519 public key, base64url without padding.")
    format = serializers.CharField()


# --- catalogue --------------------------------------------------------------------------------------------


class RewardListView(ListAPIView):
    permission_classes = [AllowAny]
    serializer_class = RewardPublicSerializer
    filter_backends = [OrderingFilter]
    ordering_fields = ["points_cost", "created_at", "id"]
    ordering = "-id"

    @extend_schema(
        operation_id="rewards_list",
        parameters=[RewardListQuerySerializer],
    )
    def get(self, request, *args, **kwargs):
        """The public catalogue: rewards redeemable now. Filters `district` (the merchant's), `category`,
        `merchant`, `affordable=true` (points_cost within my balance; needs a token); `ordering` by
        `points_cost`, `created_at` or `id` (prefix `-` for descending; default `-id`). Cached in Redis and
        invalidated whenever a reward, its stock or its merchant changes."""
        params = RewardListQuerySerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        filters = dict(params.validated_data)
        max_cost = None
        if filters.pop("affordable"):
            if not request.user.is_authenticated:
                raise NotAuthenticated()
            max_cost = (
                Account.objects.filter(key=f"resident:{request.user.pk}:points")
                .values_list("balance", flat=True)
                .first()
                or 0
            )
        key = self.page_key(request, max_cost)
        version, hit = cache.CATALOGUE.lookup(request, key)
        if hit is not None:
            return Response(hit)
        queryset = self.filter_queryset(selectors.public_rewards(max_cost=max_cost, **filters))
        page = self.paginate_queryset(queryset)
        data = self.get_paginated_response(self.get_serializer(page, many=True).data).data
        cache.CATALOGUE.store(key, version, data)
        return Response(data)

    def page_key(self, request, max_cost) -> str:
        query = urlencode(sorted(request.query_params.lists()), doseq=True)
        return cache.list_key(request.get_host(), f"{query}|{max_cost}")

    def redis_prefetch_keys(self, request) -> list[str]:
        """The cached page's reads, in the throttle / authentication round trip (backend/core/throttling.py
        reads_add); `affordable` pages depend on the balance, read after authentication: not prefetched."""
        if "affordable" in request.query_params:
            return []
        return cache.CATALOGUE.prefetch_keys(self.page_key(request, None))


class RewardDetailView(APIView):
    permission_classes = [AllowAny]

    @extend_schema(operation_id="rewards_retrieve", responses={200: RewardPublicSerializer})
    def get(self, request, reward_id: int):
        """One reward of the public catalogue (404 when it is not redeemable now)."""
        reward = selectors.public_reward_get(reward_id=reward_id)
        return Response(RewardPublicSerializer(reward, context={"request": request}).data)


class QrKeyView(APIView):
    permission_classes = [AllowAny]

    @extend_schema(operation_id="rewards_qr_key", responses={200: QrKeySerializer})
    def get(self, request):
        """The public key that signs vouchers' `qr_payload`, for scanners that verify offline.

        Payload: `QT1.<claims>.<signature>`, both base64url without padding. `claims` is compact JSON
        `{"c": code, "exp": unix seconds, "kid", "m": merchant id, "r": reward id, "v": 1}`; the signature is
        Ed25519 over the ASCII bytes of `QT1.<claims>`. Accept when the signature verifies, `kid` matches,
        `exp` is in the future and `m` is your merchant; then capture it online (`/merchant/vouchers/scan`)."""
        return Response(qr.public_key_info())


# --- redemption -------------------------------------------------------------------------------------------


class RedeemInputSerializer(serializers.Serializer):
    """No fields today; the body (if any) is part of the request hash of the Idempotency-Key."""


class RewardRedeemView(APIView):
    permission_classes = [IsResident]
    parser_classes = [JSONParser]

    @extend_schema(
        operation_id="rewards_redeem",
        request=RedeemInputSerializer,
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                required=True,
                description="1-100 characters [A-Za-z0-9_.:-], unique per redemption attempt of this resident.",
            )
        ],
        responses={201: VoucherSerializer},
    )
    def post(self, request, reward_id: int):
        """Redeem a reward for a voucher, in one database transaction: the points move to the redemption hold
        (soonest-expiring lots first) and one item leaves stock. The same `Idempotency-Key` again returns the
        same voucher (header `Idempotent-Replayed: true`); with another body it is 422
        `idempotency_key_reused`. 400 `idempotency_key_required`; 409 `insufficient_points`,
        `reward_out_of_stock`, `reward_limit_reached`, `reward_not_available`; 404 for an unknown reward."""
        body = request.data if request.data is not None else {}
        if not isinstance(body, dict):
            raise ApplicationError(_("The body must be a JSON object."), code="body_invalid")
        voucher, created = services.reward_redeem(
            resident=request.user,
            reward_id=reward_id,
            idempotency_key=request.headers.get("Idempotency-Key"),
            body=body,
        )
        headers = {} if created else {"Idempotent-Replayed": "true"}
        return Response(VoucherSerializer(voucher).data, status=status.HTTP_201_CREATED, headers=headers)


# --- my vouchers ------------------------------------------------------------------------------------------


class MyVouchersView(ListAPIView):
    permission_classes = [IsResident]
    serializer_class = VoucherSerializer

    @extend_schema(
        operation_id="me_vouchers_list",
        parameters=[OpenApiParameter("status", enum=Voucher.Status.values, required=False)],
    )
    def get(self, request, *args, **kwargs):
        """My vouchers, newest first (`status` filter)."""
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        status_filter = self.request.query_params.get("status")
        if status_filter is not None and status_filter not in Voucher.Status.values:
            raise ApplicationError(_("Unknown status."), code="invalid_choice", attr="status")
        return selectors.resident_vouchers(resident_id=self.request.user.pk, status=status_filter)


class MyVoucherDetailView(APIView):
    permission_classes = [IsResident]

    @extend_schema(operation_id="me_vouchers_retrieve", responses={200: VoucherSerializer})
    def get(self, request, code: str):
        """One of my vouchers (404 `voucher_not_found` for anyone else's)."""
        return Response(VoucherSerializer(selectors.resident_voucher_get(resident_id=request.user.pk, code=code)).data)


class MyVoucherCancelView(APIView):
    permission_classes = [IsResident]

    @extend_schema(operation_id="me_vouchers_cancel", request=None, responses={200: VoucherSerializer})
    def post(self, request, code: str):
        """Give an unused voucher back: the points return to their lots with their original expiry and the item
        to stock. 409 `voucher_already_redeemed`, `voucher_cancelled`, `voucher_expired`."""
        voucher = services.voucher_cancel(resident=request.user, code=code)
        return Response(VoucherSerializer(voucher).data)
