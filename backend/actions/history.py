"""An action's status history: stored rows for every change made by a person or a later step (review, claiming
a card, erasure), and the pipeline's latest outcome read from the action row itself (status, reason,
processed_at). Storing the pipeline's outcome as a row for every action cost a row, two index entries and a
foreign-key check per ingested action (issue 17); it is written down as a row only when something changes the
status afterwards, so nothing the history showed before is lost."""

from __future__ import annotations

from collections.abc import Iterable

from backend.actions.models import Action, ActionStatusChange


def history_entries(action: Action, rows: Iterable[ActionStatusChange]) -> list[dict]:
    """received (at creation), the stored changes, then the pipeline's latest outcome unless a stored change
    came after it."""
    rows = list(rows)
    entries = [{"status": Action.Status.RECEIVED, "reason": "", "note": "", "at": action.created_at}]
    entries += [{"status": r.status, "reason": r.reason, "note": r.note, "at": r.at} for r in rows]
    if action.processed_at is not None and (not rows or rows[-1].at < action.processed_at):
        entries.append({"status": action.status, "reason": action.reason, "note": "", "at": action.processed_at})
    return entries


def history_materialize(action_ids: Iterable[int]) -> None:
    """Before a status change outside the pipeline: store the pipeline's outcome of these actions as a row
    (when they have one that no stored change has followed yet). Callers hold the actions' row locks."""
    actions = Action.objects.filter(id__in=list(action_ids), processed_at__isnull=False).values_list(
        "id", "status", "reason", "processed_at"
    )
    latest = {}
    for action_id, at in ActionStatusChange.objects.filter(action_id__in=[a[0] for a in actions]).values_list(
        "action_id", "at"
    ):
        latest[action_id] = max(at, latest.get(action_id, at))
    ActionStatusChange.objects.bulk_create(
        [
            ActionStatusChange(action_id=action_id, status=status, reason=reason, at=processed_at)
            for action_id, status, reason, processed_at in actions
            if action_id not in latest or latest[action_id] < processed_at
        ]
    )
