"""What every step of the pipeline shares: the action row it reads, the outcome it builds, per-action isolation."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from backend.actions.models import Action

logger = logging.getLogger("backend.actions.pipeline")
ZERO = Decimal(0)
# Statuses whose actions count as claimed for double-claim and history rules.
LIVE_STATUSES = (Action.Status.CREDITED, Action.Status.FLAGGED, Action.Status.PENDING_REVIEW)
MAX_TRIP = timedelta(days=1)  # no plausible trip lasts longer: bounds the double-claim look-back

# The columns the pipeline reads, in ActionRow's order.
PIPELINE_READS = (
    "id",
    "resident_id",
    "methodology",
    "occurred_at",
    "data",
    "status",
    "source",
    "partner_id",
    "subject_kind",
    "subject_hash",
    "evidence_share",
    "batch_id",
)


@dataclass(slots=True)
class ActionRow:
    """The columns of an action the pipeline reads (model instances cost more than the maths, per batch)."""

    id: int
    resident_id: int | None
    methodology: str
    occurred_at: datetime
    data: dict
    status: str
    source: str
    partner_id: int | None
    subject_kind: str
    subject_hash: str
    evidence_share: Decimal
    batch_id: int | None


@dataclass
class Outcome:
    action: ActionRow
    status: str = Action.Status.CREDITED
    reason: str = ""
    version: object = None
    parsed: dict = field(default_factory=dict)
    quantity: Decimal = ZERO
    credited_quantity: Decimal = ZERO
    grams: int = 0
    points: int = 0
    breakdown: dict = field(default_factory=dict)
    policy: object = None
    # Set by `rules.trip_interval` for actions with a duration: (start, end) of the trip.
    trip: tuple[datetime, datetime] | None = None

    def reject(self, reason: str) -> None:
        self.status, self.reason = Action.Status.REJECTED, reason

    @property
    def rules(self) -> dict:
        return (self.version.validity_rules or {}) if self.version is not None else {}


@contextmanager
def isolated(o: Outcome):
    """One action that breaks the rules engine (a bug, data no rule foresaw) must not poison its batch: it is
    rejected as `processing_error` and logged, and the other 999 are credited. Without this the batch would
    fail, stay `received` and be retried by the reconciler every minute, forever."""
    try:
        yield
    except Exception:
        logger.exception("processing action %s failed; rejected as processing_error", o.action.id)
        o.reject("processing_error")


def each_isolated(step, outcomes: list[Outcome]) -> None:
    """Run a step that works on a group of outcomes; if it raises, run it again one outcome at a time, each
    isolated, so only the outcome that breaks it is rejected (`processing_error`)."""
    if not outcomes:
        return
    try:
        step(outcomes)
    except Exception:
        logger.warning("a pipeline step failed for a group of %s actions; retrying one by one", len(outcomes))
        for o in outcomes:
            if o.status == Action.Status.REJECTED:
                continue
            with isolated(o):
                step([o])


def live(outcomes: list[Outcome]) -> list[Outcome]:
    return [o for o in outcomes if o.status == Action.Status.CREDITED]
