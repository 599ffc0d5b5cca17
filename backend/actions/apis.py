"""Actions API: partner ingestion (signed), residents' bindings, history and self-reports, reviewers' queue."""

from decimal import Decimal

from django.core.exceptions import ObjectDoesNotExist
from django.core.serializers.json import DjangoJSONEncoder
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.exceptions import ParseError
from rest_framework.generics import ListAPIView
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from backend.actions import selectors, services
from backend.actions.history import history_entries
from backend.actions.models import Action, ActionStatusChange, SubjectKind
from backend.core.days import day_bounds
from backend.core.errors import ApplicationError
from backend.core.fields import LocalDayField, SafeJSONField, datetime_text
from backend.core.parsers import JSONParser, json_loads, read_text
from backend.core.permissions import IsReviewer
from backend.core.throttling import PartnerRateThrottle
from backend.core.uploads import FileSizeLimitUploadHandler
from backend.methodologies.serializers import (
    ACTION_DATA_SCHEMA,
    CalculationBreakdownSerializer,
    DailyCapField,
    typed_json,
)
from backend.partners.auth import PartnerSignatureAuthentication
from backend.partners.permissions import IsSignedPartner
from backend.partners.services import partner_nonce_record

# --- partners ---------------------------------------------------------------------------------------------


class PartnerSubjectSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=SubjectKind.choices)
    identifier = serializers.CharField(max_length=128)


class PartnerActionItemSerializer(serializers.Serializer):
    """Shape of one item (documentation: items are validated one by one, a bad item never blocks the rest)."""

    external_id = serializers.CharField(max_length=128)
    methodology = serializers.CharField()
    subject = PartnerSubjectSerializer()
    occurred_at = serializers.DateTimeField()
    data = typed_json(ACTION_DATA_SCHEMA, serializers.DictField)()


class PartnerBatchSerializer(serializers.Serializer):
    actions = serializers.ListField(
        child=serializers.JSONField(encoder=DjangoJSONEncoder),
        max_length=services.MAX_ACTIONS_PER_REQUEST,
        allow_empty=False,
    )


class ExactJSONParser(JSONParser):
    """JSON numbers with a fraction or an exponent become Decimal, never float: 1.15 stays 1.15, and `1E+2`
    stays recognisable as exponent notation, which the engine refuses (a float would turn it into 100.0)."""

    def parse(self, stream, media_type=None, parser_context=None):
        return json_loads(read_text(stream, parser_context), parse_float=Decimal)


class PartnerBatchDocSerializer(serializers.Serializer):
    actions = PartnerActionItemSerializer(many=True)


class PartnerItemErrorSerializer(serializers.Serializer):
    code = serializers.CharField()
    detail = serializers.CharField()
    attr = serializers.CharField(allow_null=True)


class PartnerResultSerializer(serializers.Serializer):
    external_id = serializers.CharField(allow_null=True)
    status = serializers.ChoiceField(choices=["accepted", "duplicate", "rejected"])
    error = PartnerItemErrorSerializer(allow_null=True)


class PartnerBatchResultSerializer(serializers.Serializer):
    results = PartnerResultSerializer(many=True)


class PartnerActionStatusSerializer(serializers.ModelSerializer):
    class Meta:
        model = Action
        fields = [
            "external_id",
            "methodology",
            "occurred_at",
            "status",
            "reason",
            "grams",
            "points",
            "created_at",
            "processed_at",
        ]


PARTNER_EXAMPLE = {
    "actions": [
        {
            "external_id": "qdt-20261124-000123",
            "methodology": "bus_ride",
            "subject": {"kind": "transit_card", "identifier": "3100123456789012"},
            "occurred_at": "2026-11-24T08:05:00+08:00",
            "data": {"distance_km": "10.0", "duration_s": 1800},
        }
    ]
}


class PartnerActionsView(APIView):
    authentication_classes = [PartnerSignatureAuthentication]
    permission_classes = [IsSignedPartner]
    throttle_classes = [PartnerRateThrottle]
    parser_classes = [ExactJSONParser]

    @extend_schema(
        operation_id="partner_actions_submit",
        request=PartnerBatchDocSerializer,
        responses={202: PartnerBatchResultSerializer},
        examples=[
            OpenApiExample("batch", value=PARTNER_EXAMPLE, request_only=True),
            OpenApiExample(
                "results",
                response_only=True,
                status_codes=["202"],
                value={
                    "results": [
                        {"external_id": "qdt-20261124-000123", "status": "accepted", "error": None},
                        {
                            "external_id": "qdt-20261124-000124",
                            "status": "rejected",
                            "error": {
                                "code": "invalid_data",
                                "detail": "distance_km is required.",
                                "attr": "data.distance_km",
                            },
                        },
                    ]
                },
            ),
        ],
    )
    def post(self, request):
        """Submit up to 1,000 signed actions. 202 with one result per action, in order: `accepted`,
        `duplicate` (the same `(partner, external_id)` was accepted before: never a second credit) or
        `rejected` with an error code (`unknown_methodology`, `methodology_not_allowed`, `invalid_subject`,
        `invalid_occurred_at`, `invalid_data` with the field, `occurred_in_future`, `too_old`). Accepted actions
        are stored before the response and processed asynchronously."""
        serializer = PartnerBatchSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        results = services.actions_ingest(
            partner=request.auth, nonce=request.headers.get("X-Nonce", ""), items=serializer.validated_data["actions"]
        )
        return Response({"results": results}, status=status.HTTP_202_ACCEPTED)


class PartnerActionDetailView(APIView):
    authentication_classes = [PartnerSignatureAuthentication]
    permission_classes = [IsSignedPartner]
    throttle_classes = [PartnerRateThrottle]

    @extend_schema(operation_id="partner_actions_status", responses={200: PartnerActionStatusSerializer})
    def get(self, request, external_id: str):
        """The status of one of this partner's actions (signed like the submission, with an empty body)."""
        partner_nonce_record(partner=request.auth, nonce=request.headers.get("X-Nonce", ""))
        try:
            action = selectors.partner_action_get(partner=request.auth, external_id=external_id)
        except ObjectDoesNotExist:
            raise ApplicationError(_("No such action."), code="not_found", status_code=404) from None
        return Response(PartnerActionStatusSerializer(action).data)


# --- residents' actions -----------------------------------------------------------------------------------


_UNSET = object()


class ActionListItemSerializer(serializers.ModelSerializer):
    version = serializers.IntegerField(source="methodology_version.number", allow_null=True, default=None)

    class Meta:
        model = Action
        fields = [
            "id",
            "methodology",
            "version",
            "source",
            "occurred_at",
            "status",
            "reason",
            "grams",
            "points",
            "created_at",
        ]

    def to_representation(self, action):
        """The list's fields written out (DRF's generic field walk was most of a page's CPU); subclasses such as
        ActionDetailSerializer keep the generic path. tests/ledger/test_read_serializers.py compares both."""
        if type(self) is not ActionListItemSerializer:
            return super().to_representation(action)
        number = getattr(action, "methodology_version_number", _UNSET)  # resident_action_list's joined column
        if number is _UNSET:
            version = action.methodology_version
            number = None if version is None else version.number
        return {
            "id": action.id,
            "methodology": str(action.methodology),
            "version": None if number is None else int(number),
            "source": action.source,
            "occurred_at": LIST_DATETIME.to_representation(action.occurred_at),
            "status": action.status,
            "reason": str(action.reason),
            "grams": int(action.grams),
            "points": int(action.points),
            "created_at": LIST_DATETIME.to_representation(action.created_at),
        }


LIST_DATETIME = serializers.DateTimeField()  # stateless: formats in the active time zone like a declared field


def action_item_writer():
    """A function writing one actions page row as ActionListItemSerializer does (same keys, same bytes:
    tests/core/test_keyset_pages.py compares them), with the active time zone read once per page."""
    tz = timezone.get_current_timezone()

    def write(id, methodology, version, source, occurred_at, status, reason, grams, points, created_at):
        return {
            "id": id,
            "methodology": methodology,
            "version": version,
            "source": source,
            "occurred_at": datetime_text(occurred_at, tz),
            "status": status,
            "reason": reason,
            "grams": grams,
            "points": points,
            "created_at": datetime_text(created_at, tz),
        }

    return write


class ActionHistorySerializer(serializers.ModelSerializer):
    class Meta:
        model = ActionStatusChange
        fields = ["status", "reason", "note", "at"]


class ActionCapSerializer(serializers.Serializer):
    quantity = serializers.CharField(help_text="How much of the daily cap the action needed (decimal string).")
    credited_quantity = serializers.CharField(help_text="How much fitted under the cap.")
    capped_quantity = serializers.CharField(help_text="How much did not.")
    daily_cap = DailyCapField(allow_null=True)


class ActionDetailSerializer(ActionListItemSerializer):
    inputs = typed_json(ACTION_DATA_SCHEMA)(source="data")
    breakdown = serializers.SerializerMethodField(
        help_text="Inputs, parameters with units, baseline, project and net emissions, evidence share, cap and "
        "rounding, recomputed from the stored methodology version and inputs (it always gives the stored grams)."
    )
    evidence_share = serializers.DecimalField(max_digits=5, decimal_places=4)
    cap = serializers.SerializerMethodField()
    history = serializers.SerializerMethodField()
    points_policy_version = serializers.IntegerField(
        source="points_policy_version.number", allow_null=True, default=None
    )

    class Meta(ActionListItemSerializer.Meta):
        fields = [
            *ActionListItemSerializer.Meta.fields,
            "inputs",
            "breakdown",
            "evidence_share",
            "cap",
            "points_policy_version",
            "history",
        ]

    @extend_schema_field(CalculationBreakdownSerializer)
    def get_breakdown(self, obj) -> dict:
        return selectors.action_breakdown(obj)

    @extend_schema_field(ActionCapSerializer)
    def get_cap(self, obj) -> dict:
        return {
            "quantity": str(obj.quantity),
            "credited_quantity": str(obj.credited_quantity),
            "capped_quantity": str(obj.capped_quantity),
            "daily_cap": getattr(obj.methodology_version, "daily_cap", None),
        }

    @extend_schema_field(ActionHistorySerializer(many=True))
    def get_history(self, obj) -> list[dict]:
        return ActionHistorySerializer(history_entries(obj, obj.history.all()), many=True).data


class SelfReportSerializer(serializers.Serializer):
    methodology = serializers.CharField()
    occurred_at = serializers.DateTimeField()
    data = typed_json(ACTION_DATA_SCHEMA, SafeJSONField)(
        help_text="The methodology's data keys (a JSON object; in multipart, a JSON string)."
    )
    evidence = serializers.FileField(help_text="JPEG or PNG photo, at most 5 MB; the type is checked from content.")

    def validate_data(self, value):
        if isinstance(value, str):
            try:
                value = json_loads(value, parse_float=Decimal)
            except ParseError:
                raise serializers.ValidationError(_("data must be a JSON object."), code="invalid_data") from None
        if not isinstance(value, dict):
            raise serializers.ValidationError(_("data must be a JSON object."), code="invalid_data")
        return value


class ActionFilterSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=Action.Status.choices, required=False)
    methodology = serializers.CharField(required=False)
    date = LocalDayField(required=False, help_text="One Asia/Shanghai calendar day.")
    date_from = LocalDayField(required=False)
    date_to = LocalDayField(required=False, help_text="Inclusive.")


class MyActionsView(ListAPIView):
    serializer_class = ActionListItemSerializer
    parser_classes = [MultiPartParser, FormParser, JSONParser]
    # The photo plus the form fields; RequestSizeLimitMiddleware answers 413 above this from Content-Length.
    max_request_bytes = services.MAX_EVIDENCE_BYTES + 256 * 1024

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation: no user to filter by
            return Action.objects.none()
        values = {}
        query = self.request.query_params
        if any(name in query for name in ActionFilterSerializer._declared_fields):  # the plain first page skips it
            params = ActionFilterSerializer(data=query)
            params.is_valid(raise_exception=True)
            values = dict(params.validated_data)
        if values.get("date"):
            values["date_from"], values["date_to"] = day_bounds(values.pop("date"))
        else:
            if values.get("date_from"):
                values["date_from"] = day_bounds(values["date_from"])[0]
            if values.get("date_to"):
                values["date_to"] = day_bounds(values["date_to"])[1]
        return selectors.resident_action_rows(
            resident_id=self.request.user.id, filters=values, write=action_item_writer()
        )

    @extend_schema(operation_id="me_actions_list", parameters=[ActionFilterSerializer])
    def get(self, request, *args, **kwargs):
        """My actions, newest first, filtered by status, methodology and Asia/Shanghai date."""
        # One statement for the page, rows written out as they come (no model, no serializer walk per row).
        return self.get_paginated_response(self.paginate_queryset(self.get_queryset()))

    @extend_schema(
        operation_id="me_actions_self_report",
        request={"multipart/form-data": SelfReportSerializer},
        responses={201: ActionDetailSerializer},
    )
    def post(self, request):
        """Self-report an action with photo evidence (only methodologies that allow it). It waits for a
        reviewer as `pending_review`; approval credits the self-report share (50 % by default). The photo is
        checked while it streams in (413 / `evidence_too_large` past 5 MB) and stored re-encoded."""
        request._request.upload_handlers.insert(
            0,
            FileSizeLimitUploadHandler(
                max_file_bytes=services.MAX_EVIDENCE_BYTES,
                max_body_bytes=self.max_request_bytes,
                error=services.evidence_too_large(),
                request=request._request,
            ),
        )
        serializer = SelfReportSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        action = services.self_report_create(
            resident=request.user,
            methodology_code=data["methodology"],
            occurred_at=data["occurred_at"],
            data=data["data"],
            evidence=data["evidence"],
        )
        action = selectors.resident_action_get(resident=request.user, action_id=action.id)
        return Response(ActionDetailSerializer(action).data, status=status.HTTP_201_CREATED)


class MyActionDetailView(APIView):
    @extend_schema(operation_id="me_actions_retrieve", responses={200: ActionDetailSerializer})
    def get(self, request, action_id: int):
        """One of my actions with the full calculation: inputs, methodology version, baseline and project
        emissions, cap applied, evidence share, grams, points and its status history."""
        try:
            action = selectors.resident_action_get(resident=request.user, action_id=action_id)
        except ObjectDoesNotExist:
            raise ApplicationError(_("No such action."), code="not_found", status_code=404) from None
        return Response(ActionDetailSerializer(action).data)


# --- review -----------------------------------------------------------------------------------------------


class ReviewItemSerializer(ActionDetailSerializer):
    resident = serializers.IntegerField(source="resident_id")
    evidence_url = serializers.SerializerMethodField()

    class Meta(ActionDetailSerializer.Meta):
        fields = [*ActionDetailSerializer.Meta.fields, "resident", "evidence_url"]

    def get_evidence_url(self, obj) -> str | None:
        return obj.evidence.url if obj.evidence else None

    @extend_schema_field(ActionHistorySerializer(many=True))
    def get_history(self, obj) -> list[dict]:
        return []


class ReviewDecisionSerializer(serializers.Serializer):
    note = serializers.CharField(allow_blank=True, required=False, default="")


class ReviewListView(ListAPIView):
    permission_classes = [IsReviewer]
    serializer_class = ReviewItemSerializer

    def get_queryset(self):
        return selectors.review_queue()

    @extend_schema(operation_id="admin_reviews_list")
    def get(self, request, *args, **kwargs):
        """Flagged and self-reported actions waiting for a reviewer."""
        return super().get(request, *args, **kwargs)


class ReviewDecisionView(APIView):
    permission_classes = [IsReviewer]
    decision = "approve"

    def post(self, request, action_id: int):
        serializer = ReviewDecisionSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        decide = services.review_approve if self.decision == "approve" else services.review_reject
        action = decide(action_id=action_id, reviewer=request.user, note=serializer.validated_data["note"])
        return Response(ActionListItemSerializer(action).data)


class ReviewApproveView(ReviewDecisionView):
    decision = "approve"

    @extend_schema(
        operation_id="admin_reviews_approve",
        request=ReviewDecisionSerializer,
        responses={200: ActionListItemSerializer},
    )
    def post(self, request, action_id: int):
        """Approve: the pending credit becomes spendable (`credited`)."""
        return super().post(request, action_id)


class ReviewRejectView(ReviewDecisionView):
    decision = "reject"

    @extend_schema(
        operation_id="admin_reviews_reject", request=ReviewDecisionSerializer, responses={200: ActionListItemSerializer}
    )
    def post(self, request, action_id: int):
        """Reject: the pending credit is reversed and the daily cap it used is given back."""
        return super().post(request, action_id)
