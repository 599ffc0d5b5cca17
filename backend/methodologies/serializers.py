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
