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

import json
from collections import defaultdict

from django.db import connection, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from backend.actions.models import Action, IngestBatch
from backend.actions.pipeline.caps import reserve_caps
from backend.actions.pipeline.claims import claims_write
from backend.actions.pipeline.common import PIPELINE_READS, ActionRow
from backend.actions.pipeline.evaluate import evaluate
from backend.actions.pipeline.write import amounts, write_outcomes
from backend.core.bulk import BoundCursor


def actions_process(*, action_ids: list[int]) -> dict[str, int]:
    """Process `received` actions among `action_ids`. Safe to run twice and concurrently: daily caps are
    reserved per action (a retry reuses the reservation), history rules are claimed in the database, actions
    another worker holds are skipped (SKIP LOCKED), processed ones are no longer `received`. Returns counts
    per status."""
    return _process(received_rows(action_ids=action_ids))


def batch_actions_process(*, batch_id: int) -> dict[str, int]:
    """`actions_process` for the `received` actions of one partner batch (read by batch in one query)."""
    actions = received_rows(batch_id=batch_id)
    if not actions:  # processed already (a redelivered task): close it if another run could not
        batches_close(batch_ids=[batch_id])
    return _process(actions)


def batches_close(*, batch_ids) -> int:
    """Mark processed the batches none of whose actions is `received` any more: the reconciler no longer looks
    at them. Runs in the crediting transaction: a batch whose other actions another worker holds (SKIP LOCKED)
    stays open until that worker, or the reconciler, closes it. Returns how many were closed."""
    if not batch_ids:
        return 0
    # Lock first, check after, in two statements: a card binding that puts a batch's unclaimed actions back to
    # `received` reopens the batch in its transaction. A single UPDATE ... WHERE NOT EXISTS that waited for that
    # lock would re-check the batch row but still read the actions as of its own start (READ COMMITTED), and close
    # the batch over a `received` action that the reconciler would then never find.
    with transaction.atomic(savepoint=False):  # also called on its own (a redelivered task, the reconciler)
        open_ids = list(
            IngestBatch.objects.select_for_update()
            .filter(id__in=batch_ids, processed_at__isnull=True)
            .order_by("id")  # one lock order for concurrent workers
            .values_list("id", flat=True)
        )
        if not open_ids:
            return 0
        waiting = Action.objects.filter(batch_id=OuterRef("pk"), status=Action.Status.RECEIVED)
        return IngestBatch.objects.filter(id__in=open_ids).exclude(Exists(waiting)).update(processed_at=timezone.now())


def _process(actions: list[ActionRow]) -> dict[str, int]:
    if not actions:
        return {}
    outcomes = evaluate(actions)
    reserve_caps(outcomes)
    with transaction.atomic():
        claimed = received_lock([o.action.id for o in outcomes])
        outcomes = [o for o in outcomes if o.action.id in claimed]
        if not outcomes:
            return {}
        amounts(outcomes)
        claims_write(outcomes)
        write_outcomes(outcomes)
        batches_close(batch_ids=sorted({o.action.batch_id for o in outcomes if o.action.batch_id is not None}))
    counts: dict[str, int] = defaultdict(int)
    for outcome in outcomes:
        counts[outcome.status] += 1
    return dict(counts)


# Raw SQL with array parameters on PostgreSQL: the ORM spends milliseconds building `id IN (1,000 ids)`.
# Column names come from PIPELINE_READS, a constant; values travel as parameters.
_READ = "SELECT " + ", ".join(PIPELINE_READS) + " FROM actions_action "  # noqa: S608
RECEIVED_BY_IDS = _READ + "WHERE id = ANY(%b::bigint[]) AND status = 'received' ORDER BY occurred_at, id"
RECEIVED_BY_BATCH = _READ + "WHERE batch_id = %b AND status = 'received' ORDER BY occurred_at, id"
RECEIVED_LOCK = """
SELECT id FROM actions_action WHERE id = ANY(%b::bigint[]) AND status = 'received' FOR UPDATE SKIP LOCKED
"""


def received_rows(*, action_ids: list[int] | None = None, batch_id: int | None = None) -> list[ActionRow]:
    if connection.vendor != "postgresql":
        qs = Action.objects.filter(status=Action.Status.RECEIVED)
        qs = qs.filter(batch_id=batch_id) if batch_id is not None else qs.filter(id__in=action_ids)
        return [ActionRow(*row) for row in qs.order_by("occurred_at", "id").values_list(*PIPELINE_READS)]
    data = PIPELINE_READS.index("data")
    with BoundCursor() as cursor:
        if batch_id is not None:
            cursor.execute(RECEIVED_BY_BATCH, [batch_id])
        else:
            cursor.execute(RECEIVED_BY_IDS, [list(action_ids)])
        rows = cursor.fetchall()
    # jsonb arrives as text on Django's connection (its JSONField parses it itself).
    return [ActionRow(*row[:data], json.loads(row[data]), *row[data + 1 :]) for row in rows]


def received_lock(action_ids: list[int]) -> set[int]:
    """Lock the actions this run will credit; those another run holds or has processed are left out."""
    if connection.vendor != "postgresql":
        return set(
            Action.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(id__in=action_ids, status=Action.Status.RECEIVED)
            .values_list("id", flat=True)
        )
    with BoundCursor() as cursor:
        cursor.execute(RECEIVED_LOCK, [action_ids])
        return {row[0] for row in cursor.fetchall()}
