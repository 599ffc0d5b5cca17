"""The end of the flow: grams and points for the credited quantity, statuses stored, ledger credits posted (one
transaction per action, idempotency key `action:<id>`).

The pipeline's outcome is not copied into the status history: the action row already holds it (status, reason,
processed_at), and the history shows it from there (`history_entries`) until a later change (review, claiming,
erasure) writes it down as a row first (`history_materialize`). That is one row, two index entries and a
foreign-key check less per action."""

from __future__ import annotations

import json
from decimal import Decimal

from django.db import connection
from django.utils import timezone

from backend.actions.models import REVIEW_STATUSES, Action, SubjectKind
from backend.actions.pipeline.caps import cap_release, creditable
from backend.actions.pipeline.common import ZERO, ActionRow, Outcome, isolated
from backend.core.bulk import BoundCursor, bulk_update_rows
from backend.core.days import SHANGHAI

UPDATED_FIELDS = [
    "status",
    "resident_id",
    "methodology_version_id",
    "evidence_share",
    "grams",
    "points",
    "reason",
    "breakdown",
    "quantity",
    "credited_quantity",
    "capped_quantity",
    "points_policy_version_id",
    "processed_at",
    "needs_review",
]
# What is stored with each action; the full breakdown (inputs, parameters with units, formula) is recomputed
# from the stored version and inputs when a person asks for it (GET /me/actions/{id}): the same inputs and
# version always give the same grams, and storing less keeps a 1,000-action batch cheap.
STORED_BREAKDOWN_KEYS = ("baseline_g", "project_g", "net_g", "evidence_share", "cap", "exact_g", "rounding", "grams")


def _share_key(action: ActionRow) -> str:
    if action.source == Action.Source.SELF_REPORT:
        return "self_report"
    if action.subject_kind == SubjectKind.MERCHANT_RECEIPT:
        return "merchant_receipt"
    return "partner"


def compact_breakdown(breakdown: dict) -> dict:
    return {key: breakdown[key] for key in STORED_BREAKDOWN_KEYS if key in breakdown}


def amounts(outcomes: list[Outcome]) -> None:
    """Grams and points for the credited quantity (the evidence share applied), statuses for caps."""
    from backend.methodologies import engine

    params: dict[int, dict] = {}  # per version, parsed once per batch
    for o in creditable(outcomes):
        with isolated(o):
            share = Decimal(str(o.version.evidence_shares.get(_share_key(o.action), "1")))
            version_params = params.get(id(o.version))
            if version_params is None:
                version_params = params[id(o.version)] = engine.parameter_values(o.version)
            result = engine.calculate(
                o.version,
                o.parsed,
                evidence_share=share,
                credited_quantity=o.credited_quantity,
                params=version_params,
                lean=True,  # exactly STORED_BREAKDOWN_KEYS (tests/methodologies: lean == compact of the full one)
            )
            o.grams = result.grams
            o.breakdown = result.breakdown
            o.action.evidence_share = share
            o.points = engine.points_for_grams(o.grams, o.policy) if o.policy is not None else 0
        if o.status == Action.Status.REJECTED:  # the engine failed on it: the cap it reserved goes back
            cap_release(o)
            o.grams = o.points = 0
            o.quantity = o.credited_quantity = ZERO
            continue
        if o.credited_quantity == 0 and o.quantity > 0 and o.status == Action.Status.CREDITED:
            o.status, o.reason = Action.Status.CAPPED, "daily_cap_reached"
        elif o.credited_quantity < o.quantity and not o.reason:
            o.reason = "partly_capped"


def _reason_text(action: ActionRow, quantity_label: str) -> str:
    local = action.occurred_at.astimezone(SHANGHAI).date().isoformat()
    return f"{action.methodology.replace('_', ' ').capitalize()} {quantity_label}, {local}".replace("  ", " ")


def _quantity_label(action: ActionRow, parsed: dict) -> str:
    for key, unit in (
        ("distance_km", "km"),
        ("steps", "steps"),
        ("mass_kg", "kg"),
        ("energy_kwh", "kWh"),
        ("count", "×"),
    ):
        if key in parsed:
            value = parsed[key]
            return f"{value}{unit}" if unit == "×" else f"{value} {unit}"
    return ""


def write_outcomes(outcomes: list[Outcome]) -> None:
    """Store the outcomes, then post the credits. The ledger goes last on purpose: its balance update locks the
    residents' points accounts until commit, and everything written before it is time another worker
    crediting the same residents would spend waiting. An action's ledger entry is found by its idempotency
    key `action:<id>` (and the ledger's source link back to the action)."""
    from backend.ledger.services import ActionCredit, action_credits_post_bulk

    now = timezone.now()
    if connection.vendor == "postgresql":
        _outcomes_update_pg(outcomes, now)
    else:
        bulk_update_rows(Action, [_outcome_row(o, now) for o in outcomes], UPDATED_FIELDS)
    for o in outcomes:
        o.action.status = o.status
    credits = [
        ActionCredit(
            idempotency_key=f"action:{o.action.id}",
            resident_id=o.action.resident_id,
            methodology=o.action.methodology,
            grams=o.grams,
            points=o.points,
            reason=_reason_text(o.action, _quantity_label(o.action, o.parsed)),
            source_type="action",
            source_id=o.action.id,
            effective_at=o.action.occurred_at,
            pending=o.status != Action.Status.CREDITED,
            points_expiry_months=getattr(o.policy, "lot_expiry_months", 12) or 12,
        )
        for o in outcomes
        if has_credit(o.status, o.grams, o.points)
    ]
    if credits:
        action_credits_post_bulk(credits=credits)


def _outcome_row(o: Outcome, now) -> dict:
    a = o.action
    return {
        "id": a.id,
        "status": o.status,
        "resident_id": a.resident_id,
        "methodology_version_id": getattr(o.version, "id", None),
        "evidence_share": a.evidence_share,
        "grams": o.grams,
        "points": o.points,
        "reason": o.reason,
        "breakdown": o.breakdown,
        "quantity": o.quantity,
        "credited_quantity": o.credited_quantity,
        "capped_quantity": o.quantity - o.credited_quantity,
        "points_policy_version_id": getattr(o.policy, "id", None),
        "processed_at": now,
        "needs_review": o.status in REVIEW_STATUSES,
    }


# The same columns as UPDATED_FIELDS, built column by column (no dict per action), with what is the same for the
# whole batch (processed_at) or follows from other columns (capped_quantity, needs_review) left to the statement.
# Decimals and JSON travel as text, cast by the server (bulk_update_rows explains why).
OUTCOMES_UPDATE = (
    "UPDATE actions_action AS t SET status = v.status, resident_id = v.resident, methodology_version_id = v.version,"
    " evidence_share = v.share, grams = v.grams, points = v.points, reason = v.reason, breakdown = v.breakdown,"
    " quantity = v.quantity, credited_quantity = v.credited, capped_quantity = v.quantity - v.credited,"
    " points_policy_version_id = v.policy, processed_at = %b, needs_review = v.status = ANY(%b::text[])"
    " FROM unnest(%b::bigint[], %b::text[], %b::bigint[], %b::bigint[], %b::text[]::numeric[], %b::bigint[],"
    " %b::bigint[], %b::text[], %b::text[]::jsonb[], %b::text[]::numeric[], %b::text[]::numeric[], %b::bigint[])"
    " AS v(id, status, resident, version, share, grams, points, reason, breakdown, quantity, credited, policy)"
    " WHERE t.id = v.id"
)


def _outcomes_update_pg(outcomes: list[Outcome], now) -> None:
    ids, statuses, residents, versions, shares, grams, points = [], [], [], [], [], [], []
    reasons, breakdowns, quantities, credited, policies = [], [], [], [], []
    for o in outcomes:
        a = o.action
        ids.append(a.id)
        statuses.append(o.status)
        residents.append(a.resident_id)
        versions.append(getattr(o.version, "id", None))
        shares.append(None if a.evidence_share is None else str(a.evidence_share))
        grams.append(o.grams)
        points.append(o.points)
        reasons.append(o.reason)
        breakdowns.append(json.dumps(o.breakdown))
        quantities.append(str(o.quantity))
        credited.append(str(o.credited_quantity))
        policies.append(getattr(o.policy, "id", None))
    review = [str(s) for s in REVIEW_STATUSES]
    with BoundCursor() as cursor:
        columns = [ids, statuses, residents, versions, shares, grams, points, reasons, breakdowns, quantities]
        cursor.execute(OUTCOMES_UPDATE, [now, review, *columns, credited, policies])


def has_credit(status: str, grams: int, points: int) -> bool:
    """Whether the pipeline posted a ledger credit (pending or not) for an action in this state."""
    return status in (Action.Status.CREDITED, Action.Status.FLAGGED, Action.Status.PENDING_REVIEW) and (
        grams > 0 or points > 0
    )
