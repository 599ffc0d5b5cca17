"""Reads of the methodologies app, with their query shape (the API's output touches only what is fetched here)."""

from collections.abc import Iterable
from datetime import datetime

from django.db.models import F, Prefetch, Q

from backend.methodologies.models import (
    IN_FORCE_STATUSES,
    ImpactPreview,
    Methodology,
    MethodologyVersion,
    PointsPolicyVersion,
    VersionStatus,
    VersionTransition,
)

_TRANSITIONS = Prefetch("transitions", queryset=VersionTransition.objects.select_related("actor"))


def methodology_get(code: str) -> Methodology:
    """The methodology with this code; raises Methodology.DoesNotExist."""
    return Methodology.objects.get(code=code)


def methodology_list_public():
    """Every methodology with its active version prefetched as `active_versions` (a list of 0 or 1)."""
    active = MethodologyVersion.objects.filter(status=VersionStatus.ACTIVE)
    return Methodology.objects.prefetch_related(Prefetch("versions", queryset=active, to_attr="active_versions"))


def methodology_version_list(*, code: str, include_drafts: bool = False):
    """A methodology's version history (newest first) with each version's transitions."""
    qs = MethodologyVersion.objects.filter(methodology__code=code).select_related("methodology", "author", "decided_by")
    if not include_drafts:
        qs = qs.exclude(status=VersionStatus.DRAFT)
    return qs.prefetch_related(_TRANSITIONS).order_by("-number")


def methodology_version_get(*, code: str, number: int) -> MethodologyVersion:
    """One version by methodology code and number; raises MethodologyVersion.DoesNotExist."""
    return (
        MethodologyVersion.objects.select_related("methodology", "author", "decided_by")
        .prefetch_related(_TRANSITIONS)
        .get(methodology__code=code, number=number)
    )


def methodology_version_active(*, code: str) -> MethodologyVersion | None:
    return (
        MethodologyVersion.objects.select_related("methodology")
        .filter(methodology__code=code, status=VersionStatus.ACTIVE)
        .first()
    )


def versions_applicable(codes: Iterable[str]) -> dict[str, list[MethodologyVersion]]:
    """In one query: every version that has been or will be in force (approved, active, retired) per code,
    ordered by effective_from, for `version_at`. Withdrawn versions (empty window) are left out."""
    result: dict[str, list[MethodologyVersion]] = {code: [] for code in codes}
    qs = (
        MethodologyVersion.objects.filter(methodology__code__in=list(result), status__in=IN_FORCE_STATUSES)
        .exclude(effective_to=F("effective_from"))
        .select_related("methodology")
        .order_by("effective_from", "number")
    )
    for version in qs:
        result[version.methodology.code].append(version)
    return result


def version_at(versions: list, at: datetime):
    """The version whose [effective_from, effective_to) contains `at` (the latest start wins), or None."""
    found = None
    for version in versions:
        if version.effective_from is None or version.effective_from > at:
            continue
        if version.effective_to is not None and at >= version.effective_to:
            continue
        if found is None or version.effective_from >= found.effective_from:
            found = version
    return found


def points_policy_at(at: datetime) -> PointsPolicyVersion:
    """The points policy version in force at `at`; raises PointsPolicyVersion.DoesNotExist when none is."""
    version = (
        PointsPolicyVersion.objects.filter(status__in=IN_FORCE_STATUSES, effective_from__lte=at)
        .filter(Q(effective_to__isnull=True) | Q(effective_to__gt=at))
        .order_by("-effective_from", "-number")
        .first()
    )
    if version is None:
        raise PointsPolicyVersion.DoesNotExist(f"no points policy in force at {at.isoformat()}")
    return version


def points_policy_version_list(*, include_drafts: bool = False):
    qs = PointsPolicyVersion.objects.select_related("author", "decided_by").prefetch_related(_TRANSITIONS)
    if not include_drafts:
        qs = qs.exclude(status=VersionStatus.DRAFT)
    return qs.order_by("-number")


def points_policy_version_get(*, number: int) -> PointsPolicyVersion:
    return (
        PointsPolicyVersion.objects.select_related("author", "decided_by")
        .prefetch_related(_TRANSITIONS)
        .get(policy__code="default", number=number)
    )


def impact_preview_get(*, preview_id: int, code: str, number: int) -> ImpactPreview:
    return ImpactPreview.objects.select_related("version__methodology").get(
        pk=preview_id, version__methodology__code=code, version__number=number
    )


def version_diff(old: MethodologyVersion | None, new: MethodologyVersion) -> dict[str, tuple]:
    """Changed content between two versions: {"parameters.baseline_g_per_pkm": (old, new), ...}."""
    changes: dict[str, tuple] = {}
    for name in MethodologyVersion.CONTENT_FIELDS:
        before = getattr(old, name) if old is not None else None
        after = getattr(new, name)
        if isinstance(before, dict) and isinstance(after, dict):
            for key in sorted(set(before) | set(after)):
                if before.get(key) != after.get(key):
                    changes[f"{name}.{key}"] = (before.get(key), after.get(key))
        elif before != after:
            changes[name] = (before, after)
    return changes
