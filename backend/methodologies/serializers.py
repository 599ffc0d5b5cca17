"""Output (and shared input) serializers of the methodologies API. Each API has its own output serializer;
the reviewer views add ids and transitions to the public shapes."""

from django.utils.translation import gettext as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from backend.methodologies.models import (
    ImpactPreview,
    Methodology,
    MethodologyVersion,
    PointsPolicyVersion,
    VersionTransition,
)

# --- typed JSON shapes (the schema says what these JSON columns hold) ----------------------------------------

_DECIMAL = {"type": "string", "description": "A decimal number as a string (exact, never a float)."}
PARAMETERS_SCHEMA = {
    "type": "object",
    "description": 'Parameter name -> {"value", "unit"}; value is a decimal string, or material -> decimal string '
    '(`g_per_kg` of recycling).',
    "additionalProperties": {
        "type": "object",
        "properties": {
            "value": {"oneOf": [_DECIMAL, {"type": "object", "additionalProperties": _DECIMAL}]},
            "unit": {"type": "string"},
        },
        "required": ["value", "unit"],
    },
}
VALIDITY_RULES_SCHEMA = {
    "type": "object",
    "description": "Rule name -> its bound: decimal strings (`min_distance_km`), whole numbers "
    "(`max_grams_per_action`, `duplicate_window_s`) or switches (`distinct_stations`).",
    "additionalProperties": {"oneOf": [_DECIMAL, {"type": "integer"}, {"type": "boolean"}]},
}
DAILY_CAP_SCHEMA = {
    "type": "object",
    "nullable": True,
    "description": "The resident's daily cap: what it counts and how much (a decimal string), or null.",
    "properties": {
        "unit": {"type": "string", "enum": ["actions", "distance_km", "steps", "mass_kg", "energy_kwh", "count"]},
        "limit": _DECIMAL,
    },
    "required": ["unit", "limit"],
}
EVIDENCE_SHARES_SCHEMA = {
    "type": "object",
    "description": "Evidence level (`partner`, `merchant_receipt`, `self_report`) -> share of the reduction earned.",
    "additionalProperties": _DECIMAL,
}
SOURCES_SCHEMA = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {"title": {"type": "string"}, "url": {"type": "string"}, "note": {"type": "string"}},
        "required": ["title"],
    },
}
DATA_SCHEMA_SCHEMA = {
    "type": "object",
    "description": "Action data key -> how it is parsed: type, whether required, hard bounds, digits, choices.",
    "additionalProperties": {
        "type": "object",
        "properties": {
            "type": {"type": "string", "enum": ["decimal", "integer", "string", "choice"]},
            "required": {"type": "boolean"},
            "min": _DECIMAL,
            "max": _DECIMAL,
            "digits": {"type": "integer"},
            "choices": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["type", "required"],
    },
}
ACTION_DATA_SCHEMA = {
    "type": "object",
    "additionalProperties": True,
    "description": "Free-form on purpose: the methodology's data keys (see its `data_schema`), numbers as JSON "
    "numbers or decimal strings.",
}


def typed_json(schema: dict, base: type = serializers.JSONField) -> type:
    """A JSON field documented with a real schema (the value passes through unchanged)."""
    return extend_schema_field(schema)(type(f"Typed{base.__name__}", (base,), {}))


ParametersField = typed_json(PARAMETERS_SCHEMA)
ValidityRulesField = typed_json(VALIDITY_RULES_SCHEMA)
DailyCapField = typed_json(DAILY_CAP_SCHEMA)
EvidenceSharesField = typed_json(EVIDENCE_SHARES_SCHEMA)
SourcesField = typed_json(SOURCES_SCHEMA)
DataSchemaField = typed_json(DATA_SCHEMA_SCHEMA)


class CapBreakdownSerializer(serializers.Serializer):
    unit = serializers.CharField(allow_null=True, help_text="What the daily cap counts, or null (no cap).")
    daily_limit = serializers.CharField(allow_null=True, help_text="The cap (decimal string), or null.")
    quantity = serializers.CharField(help_text="How much of the cap this action needs (decimal string).")
    credited_quantity = serializers.CharField(help_text="How much fitted under the cap.")
    capped_quantity = serializers.CharField(help_text="How much did not.")


class CalculationBreakdownSerializer(serializers.Serializer):
    """The readable calculation (documentation shape; a stored compact breakdown may carry a subset)."""

    methodology = serializers.CharField(required=False)
    version = serializers.IntegerField(required=False)
    formula_type = serializers.CharField(required=False)
    formula = serializers.CharField(required=False)
    inputs = serializers.DictField(child=serializers.CharField(), required=False, help_text="Parsed inputs.")
    parameters = ParametersField(required=False)
    baseline_g = serializers.CharField(required=False, help_text="Exact baseline emissions, g CO2e.")
    project_g = serializers.CharField(required=False, help_text="Exact project emissions, g CO2e.")
    net_g = serializers.CharField(required=False, help_text="baseline - project, g CO2e.")
    evidence_share = serializers.CharField(required=False)
    cap = CapBreakdownSerializer(required=False)
    exact_g = serializers.CharField(required=False, help_text="net x share x credited / quantity, unrounded.")
    rounding = serializers.CharField(required=False)
    grams = serializers.IntegerField(required=False, help_text="Rounded down once.")


BreakdownField = typed_json(CalculationBreakdownSerializer)


class ImpactSumsSerializer(serializers.Serializer):
    actions = serializers.IntegerField()
    current_grams = serializers.IntegerField(help_text="What the actions were credited (after caps).")
    preview_grams = serializers.IntegerField(help_text="What they would earn under the candidate (same caps).")
    delta_grams = serializers.IntegerField()


class ImpactDistrictSerializer(ImpactSumsSerializer):
    district = serializers.CharField(help_text="GB/T 2260 code, or `unknown`.")


class ImpactDaySerializer(ImpactSumsSerializer):
    day = serializers.DateField(help_text="Asia/Shanghai day.")


class ImpactResidentChangeSerializer(serializers.Serializer):
    resident_id = serializers.IntegerField()
    district = serializers.CharField(allow_null=True)
    current_grams = serializers.IntegerField()
    preview_grams = serializers.IntegerField()
    delta_grams = serializers.IntegerField()


class ImpactWindowSerializer(serializers.Serializer):
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()


class ImpactResultSerializer(serializers.Serializer):
    methodology = serializers.CharField()
    version = serializers.IntegerField()
    window = ImpactWindowSerializer()
    engine = serializers.ChoiceField(choices=["sql", "python"])
    assumptions = serializers.ListField(child=serializers.CharField())
    totals = ImpactSumsSerializer()
    by_district = ImpactDistrictSerializer(many=True)
    by_day = ImpactDaySerializer(many=True)
    residents_affected = serializers.IntegerField()
    largest_changes = ImpactResidentChangeSerializer(many=True)


ImpactResultField = typed_json(ImpactResultSerializer)


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
    parameters = ParametersField()
    validity_rules = ValidityRulesField()
    daily_cap = DailyCapField(allow_null=True)
    evidence_shares = EvidenceSharesField()
    sources = SourcesField()

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
    data_schema = DataSchemaField()
    active_version = serializers.SerializerMethodField()

    class Meta:
        model = Methodology
        fields = ["code", "name_zh", "name_en", "formula_type", "data_schema", "active_version"]

    @extend_schema_field(MethodologyActiveVersionSerializer(allow_null=True))
    def get_active_version(self, obj):
        versions = getattr(obj, "active_versions", [])
        if not versions:
            return None
        # One version serializer for the whole list: building its fields per row was most of the list's cost.
        if not hasattr(self, "_version_serializer"):
            self._version_serializer = MethodologyActiveVersionSerializer()
        return self._version_serializer.to_representation(versions[0])


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
    result = ImpactResultField(
        allow_null=True,
        help_text="When done: totals, by_district, by_day, residents_affected, largest_changes (current vs "
        "preview grams and delta, both after the caps the actions had) and the assumptions made.",
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


class NoteInputSerializer(serializers.Serializer):
    note = serializers.CharField(required=False, allow_blank=True, default="", max_length=4000)


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
