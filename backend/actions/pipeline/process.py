"""`actions_process`: the flow of one batch, in a constant number of queries whatever its size.

1. evaluate (evaluate.py, reads only): resolve each partner action's subject to a resident through live
   bindings (unknown -> `unclaimed`; no partner-data consent -> `rejected` `consent_missing`); pick the
   methodology version in force at `occurred_at`; parse the data against its bounds and apply the version's
   validity rules, ceiling included (-> `rejected`); the history rules from committed history (rules.py:
   duplicate weighings, serials once ever, paperless once a month -> `rejected`; overlapping trips from two
   sources -> `flagged`). Every action is evaluated in isolation: an exception rejects that action alone
   (`processing_error`);
2. caps (caps.py): reserve each action's share of its resident's daily cap in a short transaction of its own
   (cap rows locked in one fixed order for milliseconds); a retry reuses the reservation;
3. in one crediting transaction, which first locks the actions (SKIP LOCKED) and re-checks they are still
   `received`, so a second run of the same batch (a redelivered task, the reconciler) finds nothing to do:
   grams and points (write.py), the history claims the database arbitrates (claims.py: the loser of a race
   becomes `rejected` or `flagged` like the rule says), then statuses, history and ledger credits (write.py).
"""

from __future__ import annotations

from collections import defaultdict

from django.db import transaction

from backend.actions.models import Action
from backend.actions.pipeline.caps import reserve_caps
from backend.actions.pipeline.claims import claims_write
from backend.actions.pipeline.common import PIPELINE_READS, ActionRow
from backend.actions.pipeline.evaluate import evaluate
from backend.actions.pipeline.write import amounts, write_outcomes


def actions_process(*, action_ids: list[int]) -> dict[str, int]:
    """Process `received` actions among `action_ids`. Safe to run twice and concurrently: daily caps are
    reserved per action (a retry reuses the reservation), history rules are claimed in the database, actions
    another worker holds are skipped (SKIP LOCKED), processed ones are no longer `received`. Returns counts
    per status."""
    actions = [
        ActionRow(*row)
        for row in Action.objects.filter(id__in=action_ids, status=Action.Status.RECEIVED)
        .order_by("occurred_at", "id")
        .values_list(*PIPELINE_READS)
    ]
    if not actions:
        return {}
    outcomes = evaluate(actions)
    reserve_caps(outcomes)
    with transaction.atomic():
        claimed = set(
            Action.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(id__in=[o.action.id for o in outcomes], status=Action.Status.RECEIVED)
            .values_list("id", flat=True)
        )
        outcomes = [o for o in outcomes if o.action.id in claimed]
        if not outcomes:
            return {}
        amounts(outcomes)
        claims_write(outcomes)
        write_outcomes(outcomes)
    counts: dict[str, int] = defaultdict(int)
    for outcome in outcomes:
        counts[outcome.status] += 1
    return dict(counts)
