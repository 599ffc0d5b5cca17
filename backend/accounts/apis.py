"""Accounts API: registration, tokens, the resident's own profile and consents, districts."""

from django.contrib.auth import authenticate
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.tokens import RefreshToken
from rest_framework_simplejwt.views import TokenRefreshView as _TokenRefreshView

from backend.accounts import selectors, services
from backend.accounts.auth import InvalidCredentials, login_attempt_register, login_attempt_succeeded
from backend.accounts.models import Consent, District, User
from backend.accounts.phones import normalize_phone
from backend.core.pagination import cursor_pagination, paginated_response


class PhoneField(serializers.CharField):
    def to_internal_value(self, data):
        return normalize_phone(super().to_internal_value(data))


class DistrictSerializer(serializers.ModelSerializer):
    class Meta:
        model = District
        fields = ["code", "name_zh", "name_en", "co2_intensity_target_pct"]


class MeSerializer(serializers.ModelSerializer):
    phone = serializers.CharField(source="phone_masked", read_only=True, help_text="Masked, e.g. 138****0000.")
    district = serializers.CharField(source="district_id", allow_null=True, read_only=True)

    class Meta:
        model = User
        fields = ["id", "phone", "display_name", "district", "role", "status", "date_joined"]
        read_only_fields = fields


class TokenPairSerializer(serializers.Serializer):
    access = serializers.CharField()
    refresh = serializers.CharField()


class RegisterView(APIView):
    permission_classes = [AllowAny]
    authentication_classes: list = []

    class RegisterInputSerializer(serializers.Serializer):
        phone = PhoneField(help_text="Mainland mobile number; stored hashed and encrypted, shown masked.")
        password = serializers.CharField(write_only=True, style={"input_type": "password"})
        display_name = serializers.CharField(max_length=64)
        district = serializers.CharField(max_length=6, help_text="District code from GET /api/v1/districts.")
        partner_data_consent = serializers.BooleanField(
            default=False,
            help_text="Separate consent (单独同意) to process transit and transaction records from data partners. "
            "Without it nothing from partners is credited. Registering accepts the current privacy policy.",
        )
        statistics_consent = serializers.BooleanField(
            default=False,
            help_text="Consent to keep my district in city statistics, also after I delete my account. Without it "
            "erasure removes the district too.",
        )

    @extend_schema(
        operation_id="auth_register",
        request=RegisterInputSerializer,
        responses={201: MeSerializer},
        examples=[
            OpenApiExample(
                "register",
                value={
                    "phone": "13800000000",
                    "password": "s3cure-Passw0rd",
                    "display_name": "小王",
                    "district": "370202",
                    "partner_data_consent": True,
                },
                request_only=True,
            )
        ],
    )
    def post(self, request):
        """Register a resident account."""
        data = self._validated(request)
        user = services.user_register(**data)
        return Response(MeSerializer(user).data, status=status.HTTP_201_CREATED)

    def _validated(self, request) -> dict:
        serializer = self.RegisterInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data


class TokenObtainView(APIView):
    permission_classes = [AllowAny]
    authentication_classes: list = []

    class TokenObtainInputSerializer(serializers.Serializer):
        phone = serializers.CharField()
        password = serializers.CharField(write_only=True, style={"input_type": "password"})

    @extend_schema(operation_id="auth_token", request=TokenObtainInputSerializer, responses={200: TokenPairSerializer})
    def post(self, request):
        """Log in with phone and password; returns a short-lived access token and a refresh token.
        After 5 failed attempts for one number within 15 minutes, attempts get 429 `login_locked`."""
        serializer = self.TokenObtainInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        raw_phone = serializer.validated_data["phone"]
        e164 = login_attempt_register(raw_phone)
        user = authenticate(request, username=raw_phone, password=serializer.validated_data["password"])
        if user is None:
            raise InvalidCredentials()
        login_attempt_succeeded(e164)
        refresh = RefreshToken.for_user(user)
        return Response({"access": str(refresh.access_token), "refresh": str(refresh)})


class TokenRefreshView(_TokenRefreshView):
    @extend_schema(operation_id="auth_token_refresh", responses={200: TokenPairSerializer})
    def post(self, request, *args, **kwargs):
        """Exchange a refresh token for a new pair. The old refresh token is blacklisted (rotation)."""
        return super().post(request, *args, **kwargs)


class LogoutView(APIView):
    permission_classes = [IsAuthenticated]

    class LogoutInputSerializer(serializers.Serializer):
        refresh = serializers.CharField()

    @extend_schema(operation_id="auth_logout", request=LogoutInputSerializer, responses={204: None})
    def post(self, request):
        """Revoke the given refresh token (the access token expires on its own within minutes)."""
        serializer = self.LogoutInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        services.logout(refresh_token=serializer.validated_data["refresh"], user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class MeView(APIView):
    class MeUpdateSerializer(serializers.Serializer):
        display_name = serializers.CharField(max_length=64, required=False)
        district = serializers.CharField(max_length=6, required=False, allow_null=True)

    @extend_schema(operation_id="me_retrieve", responses={200: MeSerializer})
    def get(self, request):
        """The signed-in user's profile; the phone number is masked."""
        return Response(MeSerializer(selectors.user_get(user_id=request.user.id)).data)

    @extend_schema(operation_id="me_update", request=MeUpdateSerializer, responses={200: MeSerializer})
    def patch(self, request):
        """Change display name or district. Role and status are read-only."""
        serializer = self.MeUpdateSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        user = services.user_update_profile(
            user=request.user, display_name=data.get("display_name"), district=data.get("district", "__keep__")
        )
        return Response(MeSerializer(user).data)

    @extend_schema(operation_id="me_erase", responses={204: None})
    def delete(self, request):
        """Erase my personal information (PIPL): the account is deactivated, personal data removed or
        anonymised, tokens revoked. Ledger aggregates stay consistent."""
        services.user_erase(user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ConsentSerializer(serializers.ModelSerializer):
    active = serializers.SerializerMethodField()

    class Meta:
        model = Consent
        fields = ["id", "kind", "version", "granted_at", "withdrawn_at", "active"]

    def get_active(self, obj) -> bool:
        return obj.withdrawn_at is None


class ConsentsView(APIView):
    pagination_class = cursor_pagination("-granted_at", "-id")

    class ConsentsInputSerializer(serializers.Serializer):
        kind = serializers.ChoiceField(choices=Consent.Kind.choices)
        granted = serializers.BooleanField()

    @extend_schema(operation_id="me_consents_list", responses={200: ConsentSerializer(many=True)})
    def get(self, request):
        """Every consent I gave or withdrew, newest first."""
        return paginated_response(self, selectors.consent_list(user=request.user), ConsentSerializer)

    @extend_schema(
        operation_id="me_consents_set",
        request=ConsentsInputSerializer,
        responses={200: ConsentSerializer(many=True)},
        examples=[OpenApiExample("withdraw", value={"kind": "partner_data", "granted": False}, request_only=True)],
    )
    def post(self, request):
        """Grant or withdraw a consent. Withdrawing `partner_data` stops crediting from partner data. Answers the
        first page of my consents, as the list does."""
        serializer = self.ConsentsInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        services.consent_set(user=request.user, **serializer.validated_data)
        return paginated_response(self, selectors.consent_list(user=request.user), ConsentSerializer)


class DistrictListView(APIView):
    permission_classes = [AllowAny]
    authentication_classes: list = []
    pagination_class = cursor_pagination("code")

    @extend_schema(operation_id="districts_list", responses={200: DistrictSerializer(many=True)})
    def get(self, request):
        """Qingdao's ten districts with their GB/T 2260 codes and 2025 CO2-intensity targets (one page of 20)."""
        return paginated_response(self, selectors.district_list(), DistrictSerializer)
