"""Methodologies API. Public (no authentication: transparency is the point): the catalogue with active
versions and each methodology's history. Authenticated: the calculator. Reviewers: the version workflow and
impact previews under /api/v1/admin/..."""

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from urllib.parse import urlencode

from django.utils.translation import get_language
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.generics import ListAPIView
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from backend.actions import impact
from backend.core.pagination import CursorPagination, paginated_response
from backend.core.parsers import JSONParser, json_loads, read_text
from backend.core.permissions import IsReviewer
from backend.methodologies import cache as list_cache
from backend.methodologies import calculator, selectors, services
from backend.methodologies.engine import EVIDENCE_LEVELS
from backend.methodologies.examples import (
    ADMIN_VERSION_EXAMPLE,
    BUS_EXAMPLE,
    CALCULATION_EXAMPLE,
    HISTORY_VERSION_EXAMPLE,
    POINTS_VERSION_EXAMPLE,
    PREVIEW_EXAMPLE,
)
from backend.methodologies.models import (
    ImpactPreview,
    Methodology,
    MethodologyVersion,
    PointsPolicyVersion,
    VersionStatus,
)
from backend.methodologies.serializers import (
    ACTION_DATA_SCHEMA,
    DAILY_CAP_SCHEMA,
    EVIDENCE_SHARES_SCHEMA,
    PARAMETERS_SCHEMA,
    SOURCES_SCHEMA,
    VALIDITY_RULES_SCHEMA,
    BreakdownField,
    ImpactPreviewSerializer,
    MethodologyAdminVersionSerializer,
    MethodologyPublicSerializer,
    MethodologyRetireRequestedSerializer,
    MethodologyVersionHistorySerializer,
    NoteInputSerializer,
    PointsPolicyRetireRequestedSerializer,
    PointsPolicyVersionSerializer,
    RawJSONField,
    typed_json,
)


class DecimalJSONParser(JSONParser):
    """JSON numbers with a fraction become Decimal, never float (1.15 stays 1.15)."""

    def parse(self, stream, media_type=None, parser_context=None):
        return json_loads(read_text(stream, parser_context), parse_float=Decimal)


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
        examples=[OpenApiExample("catalogue", value=BUS_EXAMPLE, response_only=True)],
    )
    def get(self, request, *args, **kwargs):
        """Every methodology with its active version: formula type, parameters with units, validity rules,
        daily cap, evidence levels and their shares, sources and effective dates. Public."""
        key = self.page_key(request)
        version, hit = list_cache.LIST.lookup(request, key)
        if hit is not None:
            return Response(hit)
        response = super().get(request, *args, **kwargs)
        list_cache.LIST.store(key, version, response.data)
        return response

    def page_key(self, request) -> str:
        if getattr(self, "_page_key", None) is None:  # one view instance per request
            query = urlencode(sorted(request.query_params.lists()), doseq=True)
            self._page_key = list_cache.list_key(request.get_host(), get_language() or "", query)
        return self._page_key

    def redis_prefetch_keys(self, request) -> list[str]:
        """The cached page's reads, in the anonymous throttle's round trip (backend/core/throttling.py reads_add)."""
        return list_cache.LIST.prefetch_keys(self.page_key(request))


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
        data = typed_json(ACTION_DATA_SCHEMA, RawJSONField)(
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
        breakdown = BreakdownField(help_text="Inputs, parameters, baseline, project, net, share, cap, rounding.")

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
        result = calculator.calculation_run(
            code=code,
            data=payload["data"],
            number=payload.get("version"),
            evidence_level=payload["evidence_level"],
            unreleased_visible=IsReviewer().has_permission(request, None),
        )
        return Response(
            {"grams": result.grams, "points": result.points, "version": result.version, "breakdown": result.breakdown}
        )


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
        parameters = typed_json(PARAMETERS_SCHEMA, RawJSONField)(required=False)
        validity_rules = typed_json(VALIDITY_RULES_SCHEMA, RawJSONField)(required=False)
        daily_cap = typed_json(DAILY_CAP_SCHEMA, RawJSONField)(required=False, allow_null=True)
        evidence_shares = typed_json(EVIDENCE_SHARES_SCHEMA, RawJSONField)(required=False)
        evidence_description = serializers.CharField(required=False, allow_blank=True)
        self_report_allowed = serializers.BooleanField(required=False)
        sources = typed_json(SOURCES_SCHEMA, RawJSONField)(required=False)
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


@dataclass(frozen=True)
class Workflow:
    """One governed-version workflow as the transition views see it."""

    operation_prefix: str  # admin_methodology_version | admin_points_policy_version
    service_prefix: str  # methodology_version | points_policy_version
    view_prefix: str
    version_serializer: type
    retire_requested_serializer: type
    example_note: str
    version_get: Callable[..., object]  # path kwargs -> version (404 when missing)
    version_data: Callable[..., dict]  # path kwargs -> the version's representation


def transition_view(workflow: Workflow, action: str) -> type[APIView]:
    """POST .../{action} for a workflow: the service `<service_prefix>_<action>` with the note; 200 with the
    version, or 202 `retire_requested` for a first retirement call."""
    service = getattr(services, f"{workflow.service_prefix}_{action}")

    @extend_schema(
        operation_id=f"{workflow.operation_prefix}_{action}",
        request=NoteInputSerializer,
        responses={
            200: workflow.version_serializer,
            **({202: workflow.retire_requested_serializer} if action == "retire" else {}),
        },
        examples=[OpenApiExample(action, value={"note": workflow.example_note}, request_only=True)],
        description=_TRANSITION_DOCS[action],
    )
    def post(self, request, **path):
        version = workflow.version_get(**path)
        serializer = NoteInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        version = service(version_id=version.id, actor=request.user, note=serializer.validated_data["note"])
        return _transition_response(action, version, workflow.version_data(**path))

    name = f"{workflow.view_prefix}{action.title()}View"
    return type(name, (APIView,), {"permission_classes": [IsReviewer], "post": post})


METHODOLOGY_WORKFLOW = Workflow(
    operation_prefix="admin_methodology_version",
    service_prefix="methodology_version",
    view_prefix="AdminMethodologyVersion",
    version_serializer=MethodologyAdminVersionSerializer,
    retire_requested_serializer=MethodologyRetireRequestedSerializer,
    example_note="Checked against DESNZ 2024.",
    version_get=lambda code, number: _version_or_404(code, number),
    version_data=lambda code, number: _admin_version(code, number),
)
AdminMethodologyVersionSubmitView = transition_view(METHODOLOGY_WORKFLOW, "submit")
AdminMethodologyVersionApproveView = transition_view(METHODOLOGY_WORKFLOW, "approve")
AdminMethodologyVersionRejectView = transition_view(METHODOLOGY_WORKFLOW, "reject")
AdminMethodologyVersionRetireView = transition_view(METHODOLOGY_WORKFLOW, "retire")


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
        examples=[OpenApiExample("done", value=PREVIEW_EXAMPLE, response_only=True)],
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


POINTS_WORKFLOW = Workflow(
    operation_prefix="admin_points_policy_version",
    service_prefix="points_policy_version",
    view_prefix="AdminPointsPolicyVersion",
    version_serializer=PointsPolicyVersionSerializer,
    retire_requested_serializer=PointsPolicyRetireRequestedSerializer,
    example_note="Matches the city's budget.",
    version_get=lambda number: _points_version_or_404(number),
    version_data=lambda number: PointsPolicyVersionSerializer(_points_version_or_404(number)).data,
)
AdminPointsPolicyVersionSubmitView = transition_view(POINTS_WORKFLOW, "submit")
AdminPointsPolicyVersionApproveView = transition_view(POINTS_WORKFLOW, "approve")
AdminPointsPolicyVersionRejectView = transition_view(POINTS_WORKFLOW, "reject")
AdminPointsPolicyVersionRetireView = transition_view(POINTS_WORKFLOW, "retire")
