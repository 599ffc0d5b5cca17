"""The calculator: what an action would earn under the active (or a named) version, without storing anything.
The same engine and the same error codes as the pipeline, so "this ride will earn 300 g" is what it earns
(daily caps aside: they depend on the resident's day)."""

from dataclasses import dataclass
from decimal import Decimal

from django.utils import timezone
from django.utils.translation import gettext as _
from rest_framework import exceptions
from rest_framework.exceptions import ErrorDetail

from backend.core.errors import ApplicationError
from backend.methodologies import selectors
from backend.methodologies.engine import (
    IMPLAUSIBLE,
    OUT_OF_RANGE,
    ActionDataInvalid,
    calculate,
    check_validity,
    parse_action_data,
    points_for_grams,
)
from backend.methodologies.models import IN_FORCE_STATUSES, Methodology, MethodologyVersion


@dataclass(frozen=True)
class Calculation:
    grams: int
    points: int
    version: int
    breakdown: dict


def _data_error(error: ActionDataInvalid, code: str) -> exceptions.ValidationError:
    return exceptions.ValidationError({"data": {error.field: [ErrorDetail(error.detail, code=code)]}})


def _version(code: str, number: int | None, *, unreleased_visible: bool) -> MethodologyVersion:
    if number is None:
        version = selectors.methodology_version_active(code=code)
        if version is None:
            raise ApplicationError(_("This methodology has no active version."), code="no_active_version")
        return version
    version = (
        MethodologyVersion.objects.filter(methodology__code=code, number=number).select_related("methodology").first()
    )
    if version is None or not (version.status in IN_FORCE_STATUSES or unreleased_visible):
        raise ApplicationError(
            _("No version %(number)s.") % {"number": number}, code="version_not_found", attr="version", status_code=404
        )
    return version


def calculation_run(
    *, code: str, data: dict, number: int | None = None, evidence_level: str = "partner", unreleased_visible=False
) -> Calculation:
    """Price `data` under methodology `code` (its active version, or version `number`; drafts and versions in
    review only when `unreleased_visible`, i.e. for reviewers) at `evidence_level`'s share, with the points of
    the policy in force now. Raises the pipeline's codes: `evidence_level_not_accepted`, the data codes
    (`implausible_amount` outside a field's bounds) and the validity reasons."""
    try:
        methodology = selectors.methodology_get(code)
    except Methodology.DoesNotExist:
        raise exceptions.NotFound() from None
    version = _version(methodology.code, number, unreleased_visible=unreleased_visible)
    share_raw = version.evidence_shares.get(evidence_level)
    if share_raw is None:
        raise ApplicationError(
            _("%(code)s v%(number)s does not accept evidence level %(level)s.")
            % {"code": code, "number": version.number, "level": evidence_level},
            code="evidence_level_not_accepted",
            attr="evidence_level",
        )
    try:
        parsed = parse_action_data(methodology, data)
    except ActionDataInvalid as error:
        # Outside the field's bounds is `implausible_amount`, the reason the pipeline would reject it with.
        raise _data_error(error, IMPLAUSIBLE if error.code == OUT_OF_RANGE else error.code) from None
    reason = check_validity(version, parsed)
    if reason:
        raise ApplicationError(
            _("The action fails the validity rules: %(reason)s.") % {"reason": reason}, code=reason, attr="data"
        )
    try:
        result = calculate(version, parsed, evidence_share=Decimal(share_raw))
    except ActionDataInvalid as error:
        raise _data_error(error, error.code) from None
    policy = selectors.points_policy_at(timezone.now())
    return Calculation(
        grams=result.grams,
        points=points_for_grams(result.grams, policy),
        version=version.number,
        breakdown=result.breakdown,
    )
