"""Methodologies API. Public (no authentication: transparency is the point): the catalogue with active
versions and each methodology's history. Authenticated: the calculator. Reviewers: the version workflow and
impact previews under /api/v1/admin/..."""

from decimal import Decimal

from django.utils import timezone
from django.utils.translation import gettext as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_field
from rest_framework import exceptions, serializers, status
from rest_framework.exceptions import ErrorDetail
from rest_framework.generics import ListAPIView
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from backend.actions import impact
from backend.core.errors import ApplicationError
from backend.core.pagination import CursorPagination, paginated_response
from backend.core.parsers import JSONParser, json_loads
from backend.core.permissions import IsReviewer
from backend.methodologies import selectors, services
from backend.methodologies.engine import (
    EVIDENCE_LEVELS,
    IMPLAUSIBLE,
    OUT_OF_RANGE,
    ActionDataInvalid,
    calculate,
    check_validity,
    parse_action_data,
    points_for_grams,
)
from backend.methodologies.models import (
    IN_FORCE_STATUSES,
    ImpactPreview,
    Methodology,
    MethodologyVersion,
    PointsPolicyVersion,
    VersionStatus,
    VersionTransition,
)

# --- examples ---------------------------------------------------------------------------------------------

BUS_VERSION_EXAMPLE = {
    "number": 1,
    "status": "active",
    "parameters": {
        "baseline_g_per_pkm": {"value": "75", "unit": "g CO2e/pkm"},
        "project_g_per_pkm": {"value": "45", "unit": "g CO2e/pkm"},
    },
    "validity_rules": {"min_distance_km": "0.3", "max_distance_km": "60", "max_speed_kmh": "60"},
    "daily_cap": {"unit": "actions", "limit": "6"},
    "evidence_shares": {"partner": "1", "merchant_receipt": "1", "self_report": "0.5"},
    "evidence_description": "Transit operator tap records (琴岛通 card, QR, NFC).",
    "self_report_allowed": True,
    "sources": [
        {"title": "Shenzhen 低碳公共出行 carbon-inclusion methodology (EV bus 26.9 g/pkm, metro 46.7 g/pkm saved)"}
    ],
    "effective_from": "2026-01-01T00:00:00+08:00",
    "effective_to": None,
}
BUS_EXAMPLE = {
    "code": "bus_ride",
    "name_zh": "公交出行",
    "name_en": "Bus ride",
    "formula_type": "per_distance",
    "data_schema": {
        "distance_km": {"type": "decimal", "required": True},
        "duration_s": {"type": "decimal", "required": False},
    },
    "active_version": BUS_VERSION_EXAMPLE,
}
HISTORY_VERSION_EXAMPLE = {
    **BUS_VERSION_EXAMPLE,
    "notes": "Qingdao v1 catalogue.",
    "submitted_at": None,
    "decided_at": None,
    "decision_note": "",
    "activated_at": "2026-01-01T00:00:00+08:00",
    "retired_at": None,
    "transitions": [
        {
            "from_status": "",
            "to_status": "active",
            "actor_id": None,
            "actor_name": None,
            "note": "Seeded from the Qingdao v1 catalogue.",
            "at": "2026-01-01T00:00:00+08:00",
        }
    ],
}
ADMIN_VERSION_EXAMPLE = {
    "id": 1,
    "methodology": "bus_ride",
    **HISTORY_VERSION_EXAMPLE,
    "author_id": None,
    "decided_by_id": None,
}
POINTS_VERSION_EXAMPLE = {
    "id": 1,
    "number": 1,
    "status": "active",
    "points_per_gram": "1.000000",
    "lot_expiry_months": 12,
    "effective_from": "2026-01-01T00:00:00+08:00",
    "effective_to": None,
    "notes": "1 point per gram CO2e.",
    "author_id": None,
    "submitted_at": None,
    "decided_by_id": None,
    "decided_at": None,
    "decision_note": "",
    "activated_at": "2026-01-01T00:00:00+08:00",
    "retired_at": None,
    "transitions": HISTORY_VERSION_EXAMPLE["transitions"],
}
CALCULATION_EXAMPLE = {
    "grams": 300,
    "points": 300,
    "version": 1,
    "breakdown": {
        "methodology": "bus_ride",
        "version": 1,
        "formula_type": "per_distance",
        "formula": "distance_km × (baseline_g_per_pkm − project_g_per_pkm)",
        "inputs": {"distance_km": "10", "duration_s": "1500"},
        "parameters": {
            "baseline_g_per_pkm": {"value": "75", "unit": "g CO2e/pkm"},
            "project_g_per_pkm": {"value": "45", "unit": "g CO2e/pkm"},
        },
        "baseline_g": "750",
        "project_g": "450",
        "net_g": "300",
        "evidence_share": "1",
        "cap": {
            "unit": "actions",
            "daily_limit": "6",
            "quantity": "1",
            "credited_quantity": "1",
            "capped_quantity": "0",
        },
        "exact_g": "300",
        "rounding": "floor(300) = 300 g (rounded down once)",
        "grams": 300,
    },
}


# --- serializers ------------------------------------------------------------------------------------------


@extend_schema_field(OpenApiTypes.ANY)
class RawJSONField(serializers.Field):
    """Any JSON value, kept as parsed (numbers with a fraction arrive as Decimal from DecimalJSONParser;
    DRF's JSONField would re-encode them and refuse Decimals)."""

    def __init__(self, *, object_only: bool = False, **kwargs):
        self.object_only = object_only
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        if self.object_only and not isinstance(data, dict):
            raise serializers.ValidationError(_("Expected a JSON object."), code="invalid")
        return data

    def to_representation(self, value):
        return value


class MethodologyTransitionSerializer(serializers.ModelSerializer):
    actor_id = serializers.IntegerField(allow_null=True, read_only=True, help_text="null = the system (seed, beat).")
    actor_name = serializers.SerializerMethodField()

    class Meta:
        model = VersionTransition
        fields = ["from_status", "to_status", "actor_id", "actor_name", "note", "at"]

    def get_actor_name(self, obj) -> str | None:
        return obj.actor.display_name if obj.actor_id else None


_VERSION_CONTENT = [
    "number",
    "status",
    "parameters",
    "validity_rules",
    "daily_cap",
    "evidence_shares",
    "evidence_description",
    "self_report_allowed",
    "sources",
    "effective_from",
    "effective_to",
]


class MethodologyActiveVersionSerializer(serializers.ModelSerializer):
    status = serializers.CharField(
        read_only=True, help_text="draft | in_review | approved | rejected | active | retired"
    )
    parameters = serializers.JSONField(help_text='{"name": {"value": "75", "unit": "g CO2e/pkm"}} (decimal strings).')
    daily_cap = serializers.JSONField(allow_null=True, help_text='{"unit": "actions", "limit": "6"} or null.')

    class Meta:
        model = MethodologyVersion
        fields = _VERSION_CONTENT
        read_only_fields = fields


class MethodologyVersionHistorySerializer(MethodologyActiveVersionSerializer):
    transitions = MethodologyTransitionSerializer(many=True, read_only=True)

    class Meta:
        model = MethodologyVersion
        fields = [
            *_VERSION_CONTENT,
            "notes",
            "submitted_at",
            "decided_at",
            "decision_note",
            "activated_at",
            "retired_at",
            "transitions",
        ]
        read_only_fields = fields


class MethodologyAdminVersionSerializer(MethodologyVersionHistorySerializer):
    methodology = serializers.CharField(source="methodology.code", read_only=True)
    author_id = serializers.IntegerField(allow_null=True, read_only=True)
    decided_by_id = serializers.IntegerField(allow_null=True, read_only=True)

    class Meta(MethodologyVersionHistorySerializer.Meta):
        fields = ["id", "methodology", *MethodologyVersionHistorySerializer.Meta.fields, "author_id", "decided_by_id"]
        read_only_fields = fields


class MethodologyPublicSerializer(serializers.ModelSerializer):
    data_schema = serializers.JSONField(help_text="The action data keys it needs, with type and whether required.")
    active_version = serializers.SerializerMethodField()

    class Meta:
        model = Methodology
        fields = ["code", "name_zh", "name_en", "formula_type", "data_schema", "active_version"]

    @extend_schema_field(MethodologyActiveVersionSerializer(allow_null=True))
    def get_active_version(self, obj):
        versions = getattr(obj, "active_versions", [])
        return MethodologyActiveVersionSerializer(versions[0]).data if versions else None


class PointsPolicyVersionSerializer(serializers.ModelSerializer):
    status = serializers.CharField(
        read_only=True, help_text="draft | in_review | approved | rejected | active | retired"
    )
    transitions = MethodologyTransitionSerializer(many=True, read_only=True)
    author_id = serializers.IntegerField(allow_null=True, read_only=True)
    decided_by_id = serializers.IntegerField(allow_null=True, read_only=True)

    class Meta:
        model = PointsPolicyVersion
        fields = [
            "id",
            "number",
            "status",
            "points_per_gram",
            "lot_expiry_months",
            "effective_from",
            "effective_to",
            "notes",
            "author_id",
            "submitted_at",
            "decided_by_id",
            "decided_at",
            "decision_note",
            "activated_at",
            "retired_at",
            "transitions",
        ]
        read_only_fields = fields


class ImpactPreviewSerializer(serializers.ModelSerializer):
    status = serializers.CharField(read_only=True, help_text="queued | running | done | failed")
    methodology = serializers.CharField(source="version.methodology.code", read_only=True)
    version = serializers.IntegerField(source="version.number", read_only=True)
    result = serializers.JSONField(
        allow_null=True,
        help_text="When done: totals, by_district, by_day, residents_affected, largest_changes (current vs "
        "preview grams and delta) and the assumptions made (daily caps ignored).",
    )

    class Meta:
        model = ImpactPreview
        fields = [
            "id",
            "methodology",
            "version",
            "days",
            "window_start",
            "window_end",
            "status",
            "progress_done",
            "progress_total",
            "result",
            "error",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields


class DecimalJSONParser(JSONParser):
    """JSON numbers with a fraction become Decimal, never float (1.15 stays 1.15)."""

    def parse(self, stream, media_type=None, parser_context=None):
        parser_context = parser_context or {}
        encoding = parser_context.get("encoding", "utf-8")
        try:
            text = stream.read().decode(encoding)
        except UnicodeDecodeError:
            raise exceptions.ParseError(_("The body is not valid %(encoding)s.") % {"encoding": encoding}) from None
        return json_loads(text, parse_float=Decimal)


# --- public views -----------------------------------------------------------------------------------------


class CodeOrderedPagination(CursorPagination):
    ordering = "code"


class NumberOrderedPagination(CursorPagination):
    ordering = "-number"


def _methodology_or_404(code: str) -> Methodology:
    try:
        return selectors.methodology_get(code)
    except Methodology.DoesNotExist:
        raise exceptions.NotFound()


class MethodologyListView(ListAPIView):
    permission_classes = [AllowAny]
    authentication_classes: list = []
    serializer_class = MethodologyPublicSerializer
    pagination_class = CodeOrderedPagination

    def get_queryset(self):
        return selectors.methodology_list_public()

    @extend_schema(
        operation_id="methodologies_list",
        examples=[
            OpenApiExample(
                "catalogue", value=BUS_EXAMPLE, response_only=True
            )
        ],
    )
    def get(self, request, *args, **kwargs):
        """Every methodology with its active version: formula type, parameters with units, validity rules,
        daily cap, evidence levels and their shares, sources and effective dates. Public."""
        return super().get(request, *args, **kwargs)


class MethodologyVersionHistoryView(ListAPIView):
    permission_classes = [AllowAny]
    authentication_classes: list = []
    serializer_class = MethodologyVersionHistorySerializer
    queryset = MethodologyVersion.objects.none()  # for the schema; get_queryset filters by code
    pagination_class = NumberOrderedPagination

    def get_queryset(self):
        _methodology_or_404(self.kwargs["code"])
        return selectors.methodology_version_list(code=self.kwargs["code"])

    @extend_schema(
        operation_id="methodologies_versions_list",
        examples=[
            OpenApiExample(
                "history",
                value=HISTORY_VERSION_EXAMPLE,
                response_only=True,
            )
        ],
    )
    def get(self, request, *args, **kwargs):
        """A methodology's version history, newest first, with every transition (who, when, note). Drafts
        are not shown. Public."""
        return super().get(request, *args, **kwargs)


class CalculateView(APIView):
    permission_classes = [IsAuthenticated]
    parser_classes = [DecimalJSONParser]

    class CalculateInputSerializer(serializers.Serializer):
        data = RawJSONField(
            object_only=True, help_text="The action data keys of the methodology (numbers or decimal strings)."
        )
        version = serializers.IntegerField(
            required=False, min_value=1, help_text="A version number; default: the active version."
        )
        evidence_level = serializers.ChoiceField(
            choices=EVIDENCE_LEVELS, default="partner", help_text="Which evidence share applies."
        )

    class CalculateOutputSerializer(serializers.Serializer):
        grams = serializers.IntegerField(help_text="g CO2e, rounded down once.")
        points = serializers.IntegerField(help_text="Points under the points policy in force now.")
        version = serializers.IntegerField()
        breakdown = serializers.JSONField(help_text="Inputs, parameters, baseline, project, net, share, cap, rounding.")

    @extend_schema(
        operation_id="methodologies_calculate",
        request=CalculateInputSerializer,
        responses={200: CalculateOutputSerializer},
        examples=[
            OpenApiExample("bus 10 km", value={"data": {"distance_km": 10, "duration_s": 1500}}, request_only=True),
            OpenApiExample("recycling", value={"data": {"mass_kg": "1.15", "material": "paper"}}, request_only=True),
            OpenApiExample("result", value=CALCULATION_EXAMPLE, response_only=True),
        ],
    )
    def post(self, request, code: str):
        """What an action would earn under the active (or a named) version: grams, points and a readable
        breakdown, e.g. "this ride will earn 300 g". Daily caps of the resident are not applied here.
        Errors: `required`, `invalid_number` (also exponent notation), `negative`, `too_many_digits`,
        `unknown_material`, `implausible_amount` (outside the field's bounds; attr `data.<key>`), and the validity
        reason codes such as `distance_out_of_range`, `speed_implausible` or `implausible_amount` (above the
        version's `max_grams_per_action`)."""
        serializer = self.CalculateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        payload = serializer.validated_data
        methodology = _methodology_or_404(code)
        version = self._version(methodology, payload.get("version"), request)
        share_raw = version.evidence_shares.get(payload["evidence_level"])
        if share_raw is None:
            raise ApplicationError(
                _("%(code)s v%(number)s does not accept evidence level %(level)s.")
                % {"code": code, "number": version.number, "level": payload["evidence_level"]},
                code="evidence_level_not_accepted",
                attr="evidence_level",
            )
        try:
            data = parse_action_data(methodology, payload["data"])
        except ActionDataInvalid as error:
            # Outside the field's bounds is `implausible_amount`, the reason the pipeline would reject it with.
            code = IMPLAUSIBLE if error.code == OUT_OF_RANGE else error.code
            raise exceptions.ValidationError({"data": {error.field: [ErrorDetail(error.detail, code=code)]}})
        reason = check_validity(version, data)
        if reason:
            raise ApplicationError(
                _("The action fails the validity rules: %(reason)s.") % {"reason": reason}, code=reason, attr="data"
            )
        try:
            result = calculate(version, data, evidence_share=Decimal(share_raw))
        except ActionDataInvalid as error:
            raise exceptions.ValidationError({"data": {error.field: [ErrorDetail(error.detail, code=error.code)]}})
        policy = selectors.points_policy_at(timezone.now())
        return Response(
            {
                "grams": result.grams,
                "points": points_for_grams(result.grams, policy),
                "version": version.number,
                "breakdown": result.breakdown,
            }
        )

    @staticmethod
    def _version(methodology, number, request) -> MethodologyVersion:
        if number is None:
            version = selectors.methodology_version_active(code=methodology.code)
            if version is None:
                raise ApplicationError(_("This methodology has no active version."), code="no_active_version")
            return version
        version = methodology.versions.filter(number=number).select_related("methodology").first()
        visible = version is not None and (
            version.status in IN_FORCE_STATUSES or IsReviewer().has_permission(request, None)
        )
        if not visible:
            raise ApplicationError(
                _("No version %(number)s.") % {"number": number},
                code="version_not_found",
                attr="version",
                status_code=404,
            )
        return version


class PointsPolicyHistoryView(ListAPIView):
    permission_classes = [AllowAny]
    authentication_classes: list = []
    serializer_class = PointsPolicyVersionSerializer
    pagination_class = NumberOrderedPagination

    def get_queryset(self):
        return selectors.points_policy_version_list()

    @extend_schema(
        operation_id="points_policy_versions_list",
        examples=[
            OpenApiExample(
                "history",
                value=POINTS_VERSION_EXAMPLE,
                response_only=True,
            )
        ],
    )
    def get(self, request, *args, **kwargs):
        """The points policy's version history (points per gram, lot expiry), newest first. Public."""
        return super().get(request, *args, **kwargs)


# --- reviewer views ---------------------------------------------------------------------------------------


class NoteInputSerializer(serializers.Serializer):
    note = serializers.CharField(required=False, allow_blank=True, default="", max_length=4000)


class AdminMethodologyVersionsView(APIView):
    permission_classes = [IsReviewer]
    pagination_class = NumberOrderedPagination

    class DraftCreateInputSerializer(serializers.Serializer):
        from_version = serializers.IntegerField(
            required=False, min_value=1, help_text="Copy this version (default: the active one)."
        )

    @extend_schema(
        operation_id="admin_methodology_versions_list",
        examples=[OpenApiExample("versions", value=ADMIN_VERSION_EXAMPLE, response_only=True)],
        responses={200: MethodologyAdminVersionSerializer(many=True)},
    )
    def get(self, request, code: str):
        """Every version including drafts, newest first (reviewers)."""
        _methodology_or_404(code)
        versions = selectors.methodology_version_list(code=code, include_drafts=True)
        return paginated_response(self, versions, MethodologyAdminVersionSerializer)

    @extend_schema(
        operation_id="admin_methodology_version_create",
        request=DraftCreateInputSerializer,
        responses={201: MethodologyAdminVersionSerializer},
        examples=[OpenApiExample("copy the active version", value={}, request_only=True)],
    )
    def post(self, request, code: str):
        """Start a new draft, a copy of the active version (or `from_version`). The caller is its author."""
        serializer = self.DraftCreateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        version = services.methodology_version_create_draft(
            code=code, author=request.user, from_number=serializer.validated_data.get("from_version")
        )
        return Response(_admin_version(code, version.number), status=status.HTTP_201_CREATED)


def _admin_version(code: str, number: int) -> dict:
    return MethodologyAdminVersionSerializer(selectors.methodology_version_get(code=code, number=number)).data


def _version_or_404(code: str, number: int) -> MethodologyVersion:
    try:
        return selectors.methodology_version_get(code=code, number=number)
    except MethodologyVersion.DoesNotExist:
        raise exceptions.NotFound()


class AdminMethodologyVersionDetailView(APIView):
    permission_classes = [IsReviewer]
    parser_classes = [DecimalJSONParser]

    class DraftUpdateInputSerializer(serializers.Serializer):
        parameters = RawJSONField(required=False)
        validity_rules = RawJSONField(required=False)
        daily_cap = RawJSONField(required=False, allow_null=True)
        evidence_shares = RawJSONField(required=False)
        evidence_description = serializers.CharField(required=False, allow_blank=True)
        self_report_allowed = serializers.BooleanField(required=False)
        sources = RawJSONField(required=False)
        effective_from = serializers.DateTimeField(required=False)
        notes = serializers.CharField(required=False, allow_blank=True)

    @extend_schema(
        operation_id="admin_methodology_version_retrieve",
        examples=[OpenApiExample("version", value=ADMIN_VERSION_EXAMPLE, response_only=True)],
        responses={200: MethodologyAdminVersionSerializer},
    )
    def get(self, request, code: str, number: int):
        """One version with its transitions (reviewers; drafts included)."""
        return Response(MethodologyAdminVersionSerializer(_version_or_404(code, number)).data)

    @extend_schema(
        operation_id="admin_methodology_version_update",
        request=DraftUpdateInputSerializer,
        responses={200: MethodologyAdminVersionSerializer},
        examples=[
            OpenApiExample(
                "raise the bus factor",
                value={
                    "parameters": {
                        "baseline_g_per_pkm": {"value": "80", "unit": "g CO2e/pkm"},
                        "project_g_per_pkm": {"value": "45", "unit": "g CO2e/pkm"},
                    },
                    "effective_from": "2026-12-01T00:00:00+08:00",
                },
                request_only=True,
            )
        ],
    )
    def patch(self, request, code: str, number: int):
        """Edit a draft (its author only). Parameters are checked against the formula type: unknown keys
        (`unknown_parameter`), `missing_parameter`, `negative_factor`, `invalid_number`, `unit_missing`,
        `unit_mismatch`, materials (`material_unnamed`, `material_missing`) ... one error item per problem."""
        version = _version_or_404(code, number)
        serializer = self.DraftUpdateInputSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        changes = _jsonable(serializer.validated_data)
        services.methodology_version_update_draft(version_id=version.id, actor=request.user, **changes)
        return Response(_admin_version(code, number))


def _jsonable(value):
    """Decimals parsed from the request go into JSON fields as decimal strings."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


_TRANSITION_DOCS = {
    "submit": "Submit a draft for review (its author only). From now on it is immutable.",
    "approve": "Approve a version in review (never your own: `author_cannot_approve`). It becomes active at "
    "effective_from (right away if that has passed) and retires the previous active version.",
    "reject": "Reject a version in review with a note (never your own).",
    "retire": "Retire the active version, or withdraw an approved one before it starts. Four eyes: the first "
    "reviewer's call answers 202 with status `retire_requested` (the version keeps pricing actions); a different "
    "reviewer's call retires it (200); the requester calling again is 403 `four_eyes_required`.",
}


class MethodologyRetireRequestedSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["retire_requested"])
    requested_by_id = serializers.IntegerField()
    requested_at = serializers.DateTimeField()
    version = MethodologyAdminVersionSerializer(help_text="The version, still in force until a second reviewer.")


class PointsPolicyRetireRequestedSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["retire_requested"])
    requested_by_id = serializers.IntegerField()
    requested_at = serializers.DateTimeField()
    version = PointsPolicyVersionSerializer(help_text="The version, still in force until a second reviewer.")


def _transition_response(action: str, version, version_data: dict) -> Response:
    """200 with the version, except a first retirement call: 202 `retire_requested`."""
    if action == "retire" and version.status != VersionStatus.RETIRED:
        body = {
            "status": services.RETIRE_REQUESTED,
            "requested_by_id": version.retire_requested_by_id,
            "requested_at": serializers.DateTimeField().to_representation(version.retire_requested_at),
            "version": version_data,
        }
        return Response(body, status=status.HTTP_202_ACCEPTED)
    return Response(version_data)


def _methodology_transition_view(action: str):
    service = getattr(services, f"methodology_version_{action}")

    @extend_schema(
        operation_id=f"admin_methodology_version_{action}",
        request=NoteInputSerializer,
        responses={
            200: MethodologyAdminVersionSerializer,
            **({202: MethodologyRetireRequestedSerializer} if action == "retire" else {}),
        },
        examples=[OpenApiExample(action, value={"note": "Checked against DESNZ 2024."}, request_only=True)],
        description=_TRANSITION_DOCS[action],
    )
    def post(self, request, code: str, number: int):
        version = _version_or_404(code, number)
        serializer = NoteInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        version = service(version_id=version.id, actor=request.user, note=serializer.validated_data["note"])
        return _transition_response(action, version, _admin_version(code, number))

    return type(
        f"AdminMethodologyVersion{action.title()}View", (APIView,), {"permission_classes": [IsReviewer], "post": post}
    )


AdminMethodologyVersionSubmitView = _methodology_transition_view("submit")
AdminMethodologyVersionApproveView = _methodology_transition_view("approve")
AdminMethodologyVersionRejectView = _methodology_transition_view("reject")
AdminMethodologyVersionRetireView = _methodology_transition_view("retire")


class AdminImpactPreviewView(APIView):
    permission_classes = [IsReviewer]

    class PreviewInputSerializer(serializers.Serializer):
        days = serializers.IntegerField(default=30, min_value=1, max_value=366)

    @extend_schema(
        operation_id="admin_methodology_version_preview",
        request=PreviewInputSerializer,
        responses={202: ImpactPreviewSerializer},
        examples=[OpenApiExample("last 30 days", value={"days": 30}, request_only=True)],
    )
    def post(self, request, code: str, number: int):
        """Start an impact preview of a draft or in-review version: what the credited actions of the last
        `days` days would have earned under it compared with what they earned. Runs as a Celery task; poll
        the returned preview for progress and result."""
        version = _version_or_404(code, number)
        serializer = self.PreviewInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        preview = impact.impact_preview_request(
            version_id=version.id, actor=request.user, days=serializer.validated_data["days"]
        )
        preview = selectors.impact_preview_get(preview_id=preview.id, code=code, number=number)
        return Response(ImpactPreviewSerializer(preview).data, status=status.HTTP_202_ACCEPTED)


class AdminImpactPreviewDetailView(APIView):
    permission_classes = [IsReviewer]

    @extend_schema(
        operation_id="admin_methodology_version_preview_retrieve",
        responses={200: ImpactPreviewSerializer},
        examples=[
            OpenApiExample(
                "done",
                value={
                    "id": 7,
                    "methodology": "bus_ride",
                    "version": 2,
                    "days": 30,
                    "window_start": "2026-10-26T08:00:00Z",
                    "window_end": "2026-11-25T08:00:00Z",
                    "status": "done",
                    "progress_done": 2,
                    "progress_total": 2,
                    "result": {
                        "totals": {"actions": 2, "current_grams": 600, "preview_grams": 700, "delta_grams": 100},
                        "by_district": [
                            {
                                "district": "370202",
                                "actions": 2,
                                "current_grams": 600,
                                "preview_grams": 700,
                                "delta_grams": 100,
                            }
                        ],
                        "by_day": [
                            {
                                "day": "2026-11-20",
                                "actions": 2,
                                "current_grams": 600,
                                "preview_grams": 700,
                                "delta_grams": 100,
                            }
                        ],
                        "residents_affected": 1,
                        "largest_changes": [
                            {
                                "resident_id": 5,
                                "district": "370202",
                                "current_grams": 600,
                                "preview_grams": 700,
                                "delta_grams": 100,
                            }
                        ],
                        "assumptions": [
                            "Daily caps are ignored: each action is priced in full under the candidate version."
                        ],
                    },
                    "error": "",
                    "created_at": "2026-11-25T08:00:00Z",
                    "started_at": "2026-11-25T08:00:01Z",
                    "finished_at": "2026-11-25T08:00:02Z",
                },
                response_only=True,
            )
        ],
    )
    def get(self, request, code: str, number: int, preview_id: int):
        """An impact preview: status, progress (done/total actions) and, when done, its result."""
        try:
            preview = selectors.impact_preview_get(preview_id=preview_id, code=code, number=number)
        except ImpactPreview.DoesNotExist:
            raise exceptions.NotFound()
        return Response(ImpactPreviewSerializer(preview).data)


# --- reviewer views: points policy ------------------------------------------------------------------------


def _points_version_or_404(number: int) -> PointsPolicyVersion:
    try:
        return selectors.points_policy_version_get(number=number)
    except PointsPolicyVersion.DoesNotExist:
        raise exceptions.NotFound()


class AdminPointsPolicyVersionsView(APIView):
    permission_classes = [IsReviewer]
    pagination_class = NumberOrderedPagination

    @extend_schema(
        operation_id="admin_points_policy_versions_list",
        examples=[OpenApiExample("versions", value=POINTS_VERSION_EXAMPLE, response_only=True)],
        responses={200: PointsPolicyVersionSerializer(many=True)},
    )
    def get(self, request):
        """Every points-policy version including drafts, newest first."""
        versions = selectors.points_policy_version_list(include_drafts=True)
        return paginated_response(self, versions, PointsPolicyVersionSerializer)

    @extend_schema(
        operation_id="admin_points_policy_version_create",
        examples=[
            OpenApiExample(
                "draft", value={**POINTS_VERSION_EXAMPLE, "id": 2, "number": 2, "status": "draft"}, response_only=True
            )
        ],
        request=None,
        responses={201: PointsPolicyVersionSerializer},
    )
    def post(self, request):
        """Start a new points-policy draft, a copy of the active version. The caller is its author."""
        version = services.points_policy_version_create_draft(author=request.user)
        return Response(
            PointsPolicyVersionSerializer(selectors.points_policy_version_get(number=version.number)).data,
            status=status.HTTP_201_CREATED,
        )


class AdminPointsPolicyVersionDetailView(APIView):
    permission_classes = [IsReviewer]

    class PointsDraftUpdateInputSerializer(serializers.Serializer):
        points_per_gram = serializers.DecimalField(
            max_digits=12, decimal_places=6, min_value=Decimal(0), required=False
        )
        lot_expiry_months = serializers.IntegerField(min_value=1, max_value=120, required=False)
        effective_from = serializers.DateTimeField(required=False)
        notes = serializers.CharField(required=False, allow_blank=True)

    @extend_schema(
        operation_id="admin_points_policy_version_retrieve",
        examples=[OpenApiExample("version", value=POINTS_VERSION_EXAMPLE, response_only=True)],
        responses={200: PointsPolicyVersionSerializer},
    )
    def get(self, request, number: int):
        """One points-policy version with its transitions."""
        return Response(PointsPolicyVersionSerializer(_points_version_or_404(number)).data)

    @extend_schema(
        operation_id="admin_points_policy_version_update",
        request=PointsDraftUpdateInputSerializer,
        responses={200: PointsPolicyVersionSerializer},
        examples=[
            OpenApiExample(
                "double points",
                value={"points_per_gram": "2", "effective_from": "2027-01-01T00:00:00+08:00"},
                request_only=True,
            )
        ],
    )
    def patch(self, request, number: int):
        """Edit a points-policy draft (its author only)."""
        version = _points_version_or_404(number)
        serializer = self.PointsDraftUpdateInputSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        services.points_policy_version_update_draft(
            version_id=version.id, actor=request.user, **serializer.validated_data
        )
        return Response(PointsPolicyVersionSerializer(_points_version_or_404(number)).data)


def _points_transition_view(action: str):
    service = getattr(services, f"points_policy_version_{action}")

    @extend_schema(
        operation_id=f"admin_points_policy_version_{action}",
        request=NoteInputSerializer,
        responses={
            200: PointsPolicyVersionSerializer,
            **({202: PointsPolicyRetireRequestedSerializer} if action == "retire" else {}),
        },
        examples=[OpenApiExample(action, value={"note": "Matches the city's budget."}, request_only=True)],
        description=_TRANSITION_DOCS[action],
    )
    def post(self, request, number: int):
        version = _points_version_or_404(number)
        serializer = NoteInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        version = service(version_id=version.id, actor=request.user, note=serializer.validated_data["note"])
        data = PointsPolicyVersionSerializer(_points_version_or_404(number)).data
        return _transition_response(action, version, data)

    return type(
        f"AdminPointsPolicyVersion{action.title()}View", (APIView,), {"permission_classes": [IsReviewer], "post": post}
    )


AdminPointsPolicyVersionSubmitView = _points_transition_view("submit")
AdminPointsPolicyVersionApproveView = _points_transition_view("approve")
AdminPointsPolicyVersionRejectView = _points_transition_view("reject")
AdminPointsPolicyVersionRetireView = _points_transition_view("retire")
