"""Offsets API: inventory, orders (buyers), certificates (JSON and PDF, public verification), Stripe webhook."""

import json
import re

import stripe
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpResponse
from django.utils.translation import gettext as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.generics import ListAPIView
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from backend.core.errors import ApplicationError
from backend.core.permissions import IsBuyer, IsReviewer
from backend.offsets import inventory, selectors, services
from backend.offsets.pdf import certificate_pdf, verify_url

MAX_WEBHOOK_BYTES = 256 * 1024


class StrictIntegerField(serializers.IntegerField):
    """A JSON integer or a string of ASCII digits; never a bool, a float, full-width digits or an exponent."""

    def to_internal_value(self, data):
        if isinstance(data, bool) or not (
            isinstance(data, int) or (isinstance(data, str) and data.isascii() and data.isdigit() and len(data) < 20)
        ):
            self.fail("invalid")
        return super().to_internal_value(data)


# ----------------------------------------------------------------------------------------------- batches


class BatchSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    code = serializers.CharField()
    methodology = serializers.CharField()
    period_start = serializers.DateField()
    period_end = serializers.DateField()
    status = serializers.CharField()
    action_count = serializers.IntegerField()
    certified_kg = serializers.IntegerField(help_text="Serials 1..certified_kg, one per kilogram CO2e.")
    available_kg = serializers.IntegerField()
    buffer_grams = serializers.IntegerField(help_text="Grams kept back to absorb later reversals.")


class BatchCreateSerializer(serializers.Serializer):
    methodology = serializers.CharField(max_length=32)
    period_start = serializers.DateField()
    period_end = serializers.DateField()


class BatchListCreateView(ListAPIView):
    """Certified inventory on sale (any signed-in user); reviewers certify a new batch with POST."""

    serializer_class = BatchSerializer

    def get_permissions(self):
        return [IsReviewer()] if self.request.method == "POST" else [IsAuthenticated()]

    def get_queryset(self):
        return selectors.batches_on_sale()

    @extend_schema(request=BatchCreateSerializer, responses={201: BatchSerializer})
    def post(self, request):
        """Certify the credited actions of one methodology and period (Asia/Shanghai days, inclusive) that are in
        no batch yet. `walk_steps` is never certified (400 `methodology_not_certifiable`); nothing left to
        certify -> 409 `batch_empty`."""
        data = BatchCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        batch = inventory.batch_create(created_by=request.user, **data.validated_data)
        return Response(BatchSerializer(batch).data, status=status.HTTP_201_CREATED)


# ------------------------------------------------------------------------------------------------ orders


class OrderCreateSerializer(serializers.Serializer):
    quantity_kg = StrictIntegerField(min_value=1, max_value=10**9, help_text="Whole kilograms CO2e.")
    batch = StrictIntegerField(min_value=1, max_value=2**62, required=False, help_text="Buy from this batch only.")


class OrderSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.CharField()
    quantity_kg = serializers.IntegerField()
    batch = serializers.IntegerField(source="batch_id", allow_null=True)
    price_cny_per_t = serializers.DecimalField(max_digits=12, decimal_places=2, coerce_to_string=True)
    amount_fen = serializers.IntegerField(help_text="Amount in fen (CNY minor units).")
    currency = serializers.CharField()
    payment_intent_id = serializers.CharField(allow_null=True)
    reserved_until = serializers.DateTimeField()


class OrderCreatedSerializer(serializers.Serializer):
    order = OrderSerializer()
    payment_intent_id = serializers.CharField()
    client_secret = serializers.CharField(help_text="Confirm the payment with Stripe.js using this secret.")


class OrderListItemSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.CharField()
    quantity_kg = serializers.IntegerField()
    amount_fen = serializers.IntegerField()
    currency = serializers.CharField()
    created_at = serializers.DateTimeField()
    certificate = serializers.SerializerMethodField()

    def get_certificate(self, order) -> int | None:
        cert = getattr(order, "certificate", None)
        return cert.id if cert else None


class OrderListCreateView(ListAPIView):
    """A buyer's orders (newest first); POST reserves inventory and creates the PaymentIntent."""

    permission_classes = [IsBuyer]
    serializer_class = OrderListItemSerializer

    def get_queryset(self):
        return selectors.orders_of_buyer(buyer_id=self.request.user.id)

    @extend_schema(
        request=OrderCreateSerializer,
        responses={201: OrderCreatedSerializer},
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                required=False,
                description="Up to 64 printable ASCII characters: the same key returns the same order.",
            )
        ],
    )
    def post(self, request):
        """Reserve `quantity_kg` of certified inventory (optionally from one `batch`) at OFFSET_PRICE_CNY_PER_T and
        create a Stripe PaymentIntent. More than is available -> 409 `inventory_insufficient`. An unpaid
        reservation is released after 30 minutes."""
        data = OrderCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        key = request.headers.get("Idempotency-Key", "")
        if len(key) > 64 or not (key.isascii() and key.isprintable()):
            raise ApplicationError(
                "Idempotency-Key: up to 64 printable ASCII characters.", code="idempotency_key_invalid"
            )
        batch_id = data.validated_data.get("batch")
        if batch_id is not None and not selectors.batches_on_sale().filter(id=batch_id).exists():
            raise ApplicationError("No such batch on sale.", code="batch_unknown", attr="batch")
        order = services.order_create(
            buyer=request.user, quantity_kg=data.validated_data["quantity_kg"], batch_id=batch_id, idempotency_key=key
        )
        body = {"order": order, "payment_intent_id": order.payment_intent_id, "client_secret": order.client_secret}
        return Response(OrderCreatedSerializer(body).data, status=status.HTTP_201_CREATED)


# ------------------------------------------------------------------------------------------ certificates


class SerialRangeSerializer(serializers.Serializer):
    batch = serializers.CharField()
    methodology = serializers.CharField()
    start = serializers.IntegerField()
    end = serializers.IntegerField()
    kg = serializers.IntegerField()
    label = serializers.CharField()


class CertificateSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    code = serializers.CharField()
    status = serializers.CharField()
    company_name = serializers.CharField()
    tax_id = serializers.CharField()
    quantity_kg = serializers.IntegerField()
    serial_ranges = SerialRangeSerializer(many=True)
    methodologies = serializers.ListField(child=serializers.CharField())
    issued_at = serializers.DateTimeField()
    revoked_at = serializers.DateTimeField(allow_null=True)
    order = serializers.IntegerField(source="order_id")
    verify_url = serializers.SerializerMethodField()

    def get_verify_url(self, cert) -> str:
        return verify_url(cert.code)


class PublicCertificateSerializer(serializers.Serializer):
    code = serializers.CharField()
    status = serializers.CharField(help_text="`issued` (valid) or `revoked`.")
    revoked = serializers.SerializerMethodField()
    buyer = serializers.CharField(source="company_name")
    quantity_kg = serializers.IntegerField()
    serial_ranges = SerialRangeSerializer(many=True)
    methodologies = serializers.ListField(child=serializers.CharField())
    issued_at = serializers.DateTimeField()
    revoked_at = serializers.DateTimeField(allow_null=True)

    def get_revoked(self, cert) -> bool:
        return cert.status == "revoked"


class PDFRenderer(BaseRenderer):
    media_type = "application/pdf"
    format = "pdf"
    charset = None
    render_style = "binary"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return data


class CertificateDetailView(APIView):
    """The buyer's retirement certificate as JSON, or as a PDF with `Accept: application/pdf` or `?format=pdf`
    (serial ranges and a QR code to the public verification page). Another buyer's id answers 404."""

    permission_classes = [IsBuyer]
    renderer_classes = [JSONRenderer, PDFRenderer]

    def handle_exception(self, exc):
        # Errors are JSON in the one error shape, whatever was asked for.
        self.request.accepted_renderer, self.request.accepted_media_type = JSONRenderer(), "application/json"
        return super().handle_exception(exc)

    @extend_schema(
        responses={(200, "application/json"): CertificateSerializer, (200, "application/pdf"): OpenApiTypes.BINARY}
    )
    def get(self, request, certificate_id: int):
        cert = selectors.certificate_of_buyer(buyer_id=request.user.id, certificate_id=certificate_id)
        if cert is None:
            raise ApplicationError("No such certificate.", code="not_found", status_code=404)
        if request.accepted_renderer.format == "pdf":
            response = HttpResponse(certificate_pdf(cert), content_type="application/pdf")
            response["Content-Disposition"] = f'inline; filename="certificate-{cert.code}.pdf"'
            return response
        return Response(CertificateSerializer(cert).data)


class CertificateVerifyView(APIView):
    """Public verification of a certificate by its code (the QR code on the PDF): buyer, quantity, serial
    ranges, methodologies and status; a revoked certificate says so. Unknown code -> 404."""

    permission_classes = [AllowAny]
    authentication_classes = []

    @extend_schema(responses=PublicCertificateSerializer)
    def get(self, request, code: str):
        cert = selectors.certificate_by_code(code=code) if re.fullmatch(r"[0-9A-Za-z]{1,32}", code) else None
        if cert is None:
            raise ApplicationError("No such certificate.", code="not_found", status_code=404)
        return Response(PublicCertificateSerializer(cert).data)


# --------------------------------------------------------------------------------------------------- Stripe


class WebhookReceivedSerializer(serializers.Serializer):
    received = serializers.BooleanField()
    duplicate = serializers.BooleanField()


class StripeWebhookView(APIView):
    """Stripe's events. `Stripe-Signature` is verified on the raw body (STRIPE_WEBHOOK_SECRET, 300 s tolerance):
    forged or stale -> 400 `signature_invalid` and nothing stored. A verified event is stored once by its id
    and answered at once; a Celery task applies it (once, in the transaction that marks it processed)."""

    permission_classes = [AllowAny]
    authentication_classes = []
    throttle_classes = []

    @extend_schema(request=OpenApiTypes.OBJECT, responses={200: WebhookReceivedSerializer})
    def post(self, request):
        try:
            if int(request.META.get("CONTENT_LENGTH") or 0) > MAX_WEBHOOK_BYTES:
                raise RequestDataTooBig
            body = request.body
        except (RequestDataTooBig, ValueError):
            raise ApplicationError(
                _("The request body is too large."), code="request_too_large", status_code=413
            ) from None
        secret = settings.STRIPE_WEBHOOK_SECRET
        try:
            if not secret:
                raise stripe.SignatureVerificationError("no webhook secret configured", "")
            payload = body.decode("utf-8")
            stripe.WebhookSignature.verify_header(
                payload, request.headers.get("Stripe-Signature", ""), secret, settings.STRIPE_WEBHOOK_TOLERANCE_S
            )
        except (UnicodeDecodeError, stripe.SignatureVerificationError):
            raise ApplicationError("Invalid or stale Stripe signature.", code="signature_invalid") from None
        try:
            event = json.loads(payload)
        except (ValueError, RecursionError):
            raise ApplicationError("Not a JSON event.", code="event_invalid") from None
        if not (
            isinstance(event, dict)
            and isinstance(event.get("id"), str)
            and 0 < len(event["id"]) <= 255
            and isinstance(event.get("type"), str)
            and isinstance(event.get("data"), dict)
            and isinstance(event["data"].get("object"), dict)
        ):
            raise ApplicationError("Not a Stripe event.", code="event_invalid")
        row, created = services.stripe_event_record(event=event)
        return Response({"received": True, "duplicate": row is not None and not created})
