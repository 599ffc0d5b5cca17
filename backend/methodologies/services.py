"""Every write of the methodologies app: drafting, editing, reviewing and activating versions (of methodologies
and of the points policy, one generic workflow), impact previews and the v1 seed.

Locking: every transition locks the parent row (Methodology / PointsPolicy) first, then the versions, so two
reviewers acting on one methodology are serialised; the partial unique index "one active version per
methodology" is the database backstop."""

import logging
from datetime import datetime
from decimal import Decimal

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from rest_framework import exceptions
from rest_framework.exceptions import ErrorDetail

from backend.core.errors import ApplicationError, ConflictError
from backend.methodologies.catalogue import CATALOGUE, V1_EFFECTIVE_FROM
from backend.methodologies.engine import VersionContentInvalid, validate_version_content
from backend.methodologies.models import (
    Methodology,
    MethodologyVersion,
    PointsPolicy,
    PointsPolicyVersion,
    VersionStatus,
    VersionTransition,
)

logger = logging.getLogger(__name__)

METHODOLOGY_EDITABLE_FIELDS = (*MethodologyVersion.CONTENT_FIELDS, "evidence_description", "effective_from", "notes")
POINTS_POLICY_EDITABLE_FIELDS = ("points_per_gram", "lot_expiry_months", "effective_from", "notes")


# --- generic governance -----------------------------------------------------------------------------------


def _parent_model(model):
    return Methodology if model is MethodologyVersion else PointsPolicy


def _editable_fields(model) -> tuple[str, ...]:
    return METHODOLOGY_EDITABLE_FIELDS if model is MethodologyVersion else POINTS_POLICY_EDITABLE_FIELDS


def _record(version, from_status: str, to_status: str, actor, note: str = "", at: datetime | None = None) -> None:
    key = "methodology_version" if isinstance(version, MethodologyVersion) else "points_policy_version"
    VersionTransition.objects.create(
        **{key: version},
        from_status=from_status,
        to_status=to_status,
        actor=actor,
        note=note,
        at=at or timezone.now(),
    )


def _lock(model, version_id: int):
    """Lock the parent row, then the version (always in this order, so concurrent transitions serialise)."""
    parent_id = model.objects.filter(pk=version_id).values_list(f"{model.PARENT_FIELD}_id", flat=True).first()
    if parent_id is None:
        raise exceptions.NotFound()
    _parent_model(model).objects.select_for_update().get(pk=parent_id)
    return model.objects.select_for_update().select_related(model.PARENT_FIELD).get(pk=version_id)


def _content_errors_to_validation(error: VersionContentInvalid) -> exceptions.ValidationError:
    """One validation_error response with one item per problem (attr = dotted path, stable code)."""
    detail: dict = {}
    for attr, code, message in error.errors:
        detail.setdefault(attr, []).append(ErrorDetail(message, code=code))
    return exceptions.ValidationError(detail)


def _validate_content(version, *, for_submit: bool) -> None:
    if isinstance(version, MethodologyVersion):
        try:
            validate_version_content(
                formula_type=version.methodology.formula_type,
                data_schema=version.methodology.data_schema,
                require_sources=for_submit,
                **{name: getattr(version, name) for name in MethodologyVersion.CONTENT_FIELDS},
            )
        except VersionContentInvalid as error:
            raise _content_errors_to_validation(error)
    else:
        if Decimal(version.points_per_gram) < 0:
            raise ApplicationError(
                _("Points per gram must not be negative."), code="negative_factor", attr="points_per_gram"
            )
        if int(version.lot_expiry_months) < 1:
            raise ApplicationError(_("Points live at least one month."), code="invalid", attr="lot_expiry_months")
    if for_submit and version.effective_from is None:
        raise ApplicationError(
            _("Set effective_from before submitting."), code="effective_from_required", attr="effective_from"
        )


def _active_version(model, parent_id: int):
    return model.objects.select_for_update().filter(**{f"{model.PARENT_FIELD}_id": parent_id}, status="active").first()


def _check_after_active(model, version) -> None:
    active = _active_version(model, version.parent_id)
    if active is not None and version.effective_from <= active.effective_from:
        raise ConflictError(
            _("effective_from must be after the active version's (%(active)s): versions apply forward only.")
            % {"active": active.effective_from.isoformat()},
            code="effective_from_not_after_active",
            attr="effective_from",
        )


def _create_draft(model, *, parent, author, from_number: int | None):
    """A new draft copied from `from_number` (default: the active version, else the latest)."""
    parent_field = model.PARENT_FIELD
    type(parent).objects.select_for_update().get(pk=parent.pk)
    versions = model.objects.filter(**{parent_field: parent})
    if from_number is not None:
        source = versions.filter(number=from_number).first()
        if source is None:
            raise ApplicationError(
                _("No version %(number)s.") % {"number": from_number}, code="version_not_found", attr="from_version"
            )
    else:
        source = versions.filter(status="active").first() or versions.order_by("-number").first()
    last = versions.order_by("-number").values_list("number", flat=True).first() or 0
    draft = model(**{parent_field: parent}, number=last + 1, status=VersionStatus.DRAFT, author=author)
    if source is not None:
        for name in _editable_fields(model):
            if name not in ("effective_from", "notes"):
                setattr(draft, name, getattr(source, name))
        draft.notes = f"Copied from v{source.number}."
    draft.save()
    _record(draft, "", VersionStatus.DRAFT, author, draft.notes)
    return draft


def _update_draft(model, *, version_id: int, actor, changes: dict):
    version = _lock(model, version_id)
    if version.status != VersionStatus.DRAFT:
        raise ConflictError(_("Only drafts can be edited; submitted versions are immutable."), code="version_not_draft")
    if version.author_id != actor.id:
        raise ApplicationError(_("Only the author edits a draft."), code="not_author", status_code=403)
    allowed = set(_editable_fields(model))
    for name, value in changes.items():
        if name not in allowed:
            raise ApplicationError(_("%(name)s cannot be edited.") % {"name": name}, code="not_editable", attr=name)
        setattr(version, name, value)
    _validate_content(version, for_submit=False)
    version.save(update_fields=[*changes.keys()])
    return version


def _submit(model, *, version_id: int, actor, note: str = ""):
    version = _lock(model, version_id)
    if version.status != VersionStatus.DRAFT:
        raise ConflictError(
            _("Version is %(status)s, not a draft.") % {"status": version.status}, code="version_not_draft"
        )
    if version.author_id != actor.id:
        raise ApplicationError(_("Only the author submits a draft."), code="not_author", status_code=403)
    _validate_content(version, for_submit=True)
    _check_after_active(model, version)
    now = timezone.now()
    version.status = VersionStatus.IN_REVIEW
    version.submitted_at = now
    version.save(update_fields=["status", "submitted_at"])
    _record(version, VersionStatus.DRAFT, VersionStatus.IN_REVIEW, actor, note, at=now)
    return version


def _decide(model, *, version_id: int, actor, note: str, approve: bool):
    version = _lock(model, version_id)
    if version.status != VersionStatus.IN_REVIEW:
        raise ConflictError(
            _("Version is %(status)s, not in review.") % {"status": version.status}, code="version_not_in_review"
        )
    if version.author_id is not None and version.author_id == actor.id:
        # Four eyes: whoever wrote a version never decides on it.
        code = "author_cannot_approve" if approve else "author_cannot_reject"
        raise ApplicationError(_("The author cannot decide on their own version."), code=code, status_code=403)
    if not approve and not note.strip():
        raise ApplicationError(_("Say why the version is rejected."), code="note_required", attr="note")
    now = timezone.now()
    if approve:
        _check_after_active(model, version)
    to_status = VersionStatus.APPROVED if approve else VersionStatus.REJECTED
    version.status = to_status
    version.decided_at = now
    version.decided_by = actor
    version.decision_note = note
    version.save(update_fields=["status", "decided_at", "decided_by", "decision_note"])
    _record(version, VersionStatus.IN_REVIEW, to_status, actor, note, at=now)
    if approve and version.effective_from <= now:
        # Already due: activate now rather than wait for the next beat tick (the parent is locked already).
        _activate_due_for_parent(model, version.parent_id, now)
        version.refresh_from_db()
    return version


RETIRE_REQUESTED = "retire_requested"  # a transition's to_status, never a version's status


def _retire(model, *, version_id: int, actor, note: str):
    """Four eyes, like approval: the first reviewer's call records a retirement request (the version keeps
    pricing actions); a different reviewer's call retires it. The requester confirming is 403
    `four_eyes_required`. Both steps are transitions. Callers tell the two apart by the returned status."""
    version = _lock(model, version_id)
    if version.status not in (VersionStatus.ACTIVE, VersionStatus.APPROVED):
        raise ConflictError(
            _("A %(status)s version cannot be retired.") % {"status": version.status}, code="version_not_retirable"
        )
    now = timezone.now()
    if version.retire_requested_by_id is None:
        version.retire_requested_by = actor
        version.retire_requested_at = now
        version.save(update_fields=["retire_requested_by", "retire_requested_at"])
        _record(version, version.status, RETIRE_REQUESTED, actor, note, at=now)
        return version
    if version.retire_requested_by_id == actor.id:
        raise ApplicationError(
            _("Retirement needs a second reviewer: you requested it already."),
            code="four_eyes_required",
            status_code=403,
        )
    if version.status == VersionStatus.ACTIVE:
        version.effective_to = max(now, version.effective_from)
    else:
        # A scheduled version withdrawn before it starts: an empty window, so it never prices an action.
        version.effective_to = version.effective_from
    from_status = version.status
    version.status = VersionStatus.RETIRED
    version.retired_at = now
    version.save(update_fields=["status", "effective_to", "retired_at"])
    _record(version, from_status, VersionStatus.RETIRED, actor, note, at=now)
    return version


def _activate_due_for_parent(model, parent_id: int, now: datetime) -> list[int]:
    """Activate the approved versions of one parent whose effective_from has come, oldest first; each retires
    the version active before it and closes its window at the new version's effective_from."""
    parent_field = model.PARENT_FIELD
    _parent_model(model).objects.select_for_update().get(pk=parent_id)
    due = list(
        model.objects.select_for_update()
        .filter(**{f"{parent_field}_id": parent_id}, status=VersionStatus.APPROVED, effective_from__lte=now)
        .order_by("effective_from", "number")
    )
    activated = []
    for version in due:
        current = _active_version(model, parent_id)
        if current is not None:
            # Retire first: the partial unique index allows one active row at every statement.
            current.status = VersionStatus.RETIRED
            current.effective_to = max(version.effective_from, current.effective_from)
            current.retired_at = now
            current.save(update_fields=["status", "effective_to", "retired_at"])
            _record(
                current, VersionStatus.ACTIVE, VersionStatus.RETIRED, None, f"Superseded by v{version.number}.", now
            )
        version.status = VersionStatus.ACTIVE
        version.activated_at = now
        version.save(update_fields=["status", "activated_at"])
        _record(version, VersionStatus.APPROVED, VersionStatus.ACTIVE, None, "Effective time reached.", now)
        activated.append(version.id)
    return activated


def versions_activate_due(*, now: datetime | None = None) -> list[int]:
    """Activate every approved methodology and points-policy version whose effective_from has passed. Each
    parent in its own transaction, in a fixed order. Returns the ids activated (empty on a second run)."""
    now = now or timezone.now()
    activated: list[int] = []
    for model in (MethodologyVersion, PointsPolicyVersion):
        parent_ids = sorted(
            set(
                model.objects.filter(status=VersionStatus.APPROVED, effective_from__lte=now).values_list(
                    f"{model.PARENT_FIELD}_id", flat=True
                )
            )
        )
        for parent_id in parent_ids:
            with transaction.atomic():
                activated += _activate_due_for_parent(model, parent_id, now)
    return activated


# --- methodology versions ---------------------------------------------------------------------------------


@transaction.atomic
def methodology_version_create_draft(*, code: str, author, from_number: int | None = None) -> MethodologyVersion:
    """Start a new draft of methodology `code`, copied from the active version (or `from_number`)."""
    methodology = Methodology.objects.filter(code=code).first()
    if methodology is None:
        raise exceptions.NotFound()
    return _create_draft(MethodologyVersion, parent=methodology, author=author, from_number=from_number)


@transaction.atomic
def methodology_version_update_draft(*, version_id: int, actor, **changes) -> MethodologyVersion:
    """Edit a draft (author only). Parameters are validated against the formula type on every edit."""
    return _update_draft(MethodologyVersion, version_id=version_id, actor=actor, changes=changes)


@transaction.atomic
def methodology_version_submit(*, version_id: int, actor, note: str = "") -> MethodologyVersion:
    """Send a draft to review, with the author's note for the reviewers. From here on the version is immutable."""
    return _submit(MethodologyVersion, version_id=version_id, actor=actor, note=note)


@transaction.atomic
def methodology_version_approve(*, version_id: int, actor, note: str = "") -> MethodologyVersion:
    """Approve a version in review (never the author's own). It activates at effective_from (now if past)."""
    return _decide(MethodologyVersion, version_id=version_id, actor=actor, note=note, approve=True)


@transaction.atomic
def methodology_version_reject(*, version_id: int, actor, note: str) -> MethodologyVersion:
    """Reject a version in review with a note (never the author's own)."""
    return _decide(MethodologyVersion, version_id=version_id, actor=actor, note=note, approve=False)


@transaction.atomic
def methodology_version_retire(*, version_id: int, actor, note: str = "") -> MethodologyVersion:
    """Retire the active version (the methodology then earns nothing) or withdraw a scheduled one: the first
    reviewer requests, a different reviewer retires (four eyes)."""
    return _retire(MethodologyVersion, version_id=version_id, actor=actor, note=note)


# --- points policy ----------------------------------------------------------------------------------------


def _points_policy() -> PointsPolicy:
    policy, _ = PointsPolicy.objects.get_or_create(code="default")
    return policy


@transaction.atomic
def points_policy_version_create_draft(*, author, from_number: int | None = None) -> PointsPolicyVersion:
    """Start a new draft of the points policy, copied from the active version."""
    return _create_draft(PointsPolicyVersion, parent=_points_policy(), author=author, from_number=from_number)


@transaction.atomic
def points_policy_version_update_draft(*, version_id: int, actor, **changes) -> PointsPolicyVersion:
    """Edit a points-policy draft (author only)."""
    return _update_draft(PointsPolicyVersion, version_id=version_id, actor=actor, changes=changes)


@transaction.atomic
def points_policy_version_submit(*, version_id: int, actor, note: str = "") -> PointsPolicyVersion:
    """Send a points-policy draft to review, with the author's note for the reviewers."""
    return _submit(PointsPolicyVersion, version_id=version_id, actor=actor, note=note)


@transaction.atomic
def points_policy_version_approve(*, version_id: int, actor, note: str = "") -> PointsPolicyVersion:
    """Approve a points-policy version (never the author's own); it applies to credits from effective_from."""
    return _decide(PointsPolicyVersion, version_id=version_id, actor=actor, note=note, approve=True)


@transaction.atomic
def points_policy_version_reject(*, version_id: int, actor, note: str) -> PointsPolicyVersion:
    """Reject a points-policy version with a note."""
    return _decide(PointsPolicyVersion, version_id=version_id, actor=actor, note=note, approve=False)


@transaction.atomic
def points_policy_version_retire(*, version_id: int, actor, note: str = "") -> PointsPolicyVersion:
    """Retire the active points-policy version or withdraw a scheduled one (four eyes, as for methodologies)."""
    return _retire(PointsPolicyVersion, version_id=version_id, actor=actor, note=note)


# --- impact preview (lives downstream, in backend/actions/impact.py) ----------------------------------------


def version_content_check(version) -> None:
    """Raise ValidationError when a draft's content is not valid (the impact preview checks before pricing)."""
    _validate_content(version, for_submit=False)



# --- seed -------------------------------------------------------------------------------------------------


def methodologies_seed() -> int:
    """Create the eleven v1 methodologies and their active version 1 (../shared/methodologies.md). Idempotent:
    existing versions are never touched (they are immutable); returns the rows created or changed."""
    changed = 0
    existing = {m.code: m for m in Methodology.objects.all()}
    with_versions = set(MethodologyVersion.objects.values_list("methodology_id", flat=True).distinct())
    for code, name_zh, name_en, formula_type, data_schema, fields in CATALOGUE:
        values = {"name_zh": name_zh, "name_en": name_en, "formula_type": formula_type, "data_schema": data_schema}
        methodology = existing.get(code)
        if methodology is None:
            methodology = Methodology.objects.create(code=code, **values)
            changed += 1
        elif any(getattr(methodology, k) != v for k, v in values.items()):
            for key, value in values.items():
                setattr(methodology, key, value)
            methodology.save()
            changed += 1
        if methodology.id in with_versions:
            continue
        validate_version_content(
            formula_type=formula_type, data_schema=data_schema, require_sources=True, **_content(fields)
        )
        now = timezone.now()
        version = MethodologyVersion.objects.create(
            methodology=methodology,
            number=1,
            status=VersionStatus.ACTIVE,
            effective_from=V1_EFFECTIVE_FROM,
            activated_at=now,
            notes="Qingdao v1 catalogue (../shared/methodologies.md).",
            **fields,
        )
        _record(version, "", VersionStatus.ACTIVE, None, "Seeded from the Qingdao v1 catalogue.", now)
        changed += 1
    return changed


def methodologies_present() -> str:
    active = MethodologyVersion.objects.filter(status=VersionStatus.ACTIVE).count()
    return f"{Methodology.objects.count()} methodologies, {active} active versions"


def points_policy_present() -> str:
    active = PointsPolicyVersion.objects.filter(status=VersionStatus.ACTIVE).values_list("number", flat=True).first()
    return f"points policy active version {active}" if active else "no active points policy"


def _content(fields: dict) -> dict:
    return {k: fields[k] for k in MethodologyVersion.CONTENT_FIELDS}


def points_policy_seed() -> int:
    """Points policy v1: 1 point per gram, point lots expire 12 months after the month earned. Idempotent."""
    policy, created = PointsPolicy.objects.get_or_create(code="default")
    if policy.versions.exists():
        return int(created)
    now = timezone.now()
    version = PointsPolicyVersion.objects.create(
        policy=policy,
        number=1,
        status=VersionStatus.ACTIVE,
        points_per_gram=Decimal(1),
        lot_expiry_months=12,
        effective_from=V1_EFFECTIVE_FROM,
        activated_at=now,
        notes="1 point per gram CO2e (Wuhan's rule); lots expire 12 months after the month earned.",
    )
    _record(version, "", VersionStatus.ACTIVE, None, "Seeded default points policy.", now)
    return 1 + int(created)
