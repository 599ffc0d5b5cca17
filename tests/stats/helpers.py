"""Building blocks for the statistics tests: credited actions posted straight to the ledger, and the direct
computation the aggregates must equal."""

import itertools
from collections import defaultdict
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.test import TestCase

from backend.actions.models import Action
from backend.ledger.models import Posting
from backend.ledger.services import ActionCredit, action_credits_post_bulk

SHANGHAI = ZoneInfo("Asia/Shanghai")
_ids = itertools.count()


def credit(
    resident,
    *,
    at: datetime,
    grams: int,
    methodology="bus_ride",
    source="self_report",
    points=None,
    quantity="1.5",
    pending=False,
    run_hooks=True,
) -> Action:
    """A credited action and its ledger credit (non-pending unless asked), as the pipeline writes them."""
    partner_fields = {}
    if source == "partner":
        from backend.partners.models import Partner

        partner, _ = Partner.objects.get_or_create(name="stats-test-partner")
        partner_fields = {"partner": partner, "external_id": f"x-{next(_ids)}"}
    action = Action.objects.create(
        **partner_fields,
        resident=resident,
        methodology=methodology,
        occurred_at=at,
        status=Action.Status.PENDING_REVIEW if pending else Action.Status.CREDITED,
        needs_review=pending,
        source=source,
        grams=grams,
        points=grams if points is None else points,
        credited_quantity=Decimal(quantity),
        quantity=Decimal(quantity),
    )
    c = ActionCredit(
        idempotency_key=f"action:{action.id}",
        resident_id=resident.id,
        methodology=methodology,
        grams=grams,
        points=action.points,
        reason=f"{methodology} test",
        source_type="action",
        source_id=action.id,
        effective_at=at,
        pending=pending,
    )
    if run_hooks:
        with TestCase.captureOnCommitCallbacks(execute=True):
            action_credits_post_bulk(credits=[c])
    else:
        action_credits_post_bulk(credits=[c])
    return action


def ledger_direct() -> dict[tuple, dict]:
    """Per (day, district, methodology, source): grams, points and actions straight from the postings to
    residents' spendable accounts, computed independently of the aggregator (day of the action)."""
    out: dict[tuple, dict] = defaultdict(lambda: {"grams": 0, "points": 0, "actions": 0, "residents": set()})
    rows = Posting.objects.filter(account__kind="resident", account__name__in=("carbon", "points")).values_list(
        "transaction_id",
        "amount",
        "account__name",
        "account__owner_id",
        "transaction__kind",
        "transaction__source_id",
    )
    actions = {a.id: a for a in Action.objects.select_related("resident")}
    net_per_action: dict[int, int] = defaultdict(int)
    seen = set()
    for txn_id, amount, name, owner, kind, source_id in rows:
        if kind == "points_spend" or (kind == "reversal" and source_id not in actions):
            continue
        a = actions[source_id]
        key = (a.occurred_at.astimezone(SHANGHAI).date(), a.resident.district_id or "", a.methodology, a.source)
        out[key]["grams" if name == "carbon" else "points"] += amount
        if txn_id not in seen:
            seen.add(txn_id)
            step = -1 if kind == "reversal" else 1
            out[key]["actions"] += step
            net_per_action[source_id] += step
    for action_id, net in net_per_action.items():
        if net > 0:
            a = actions[action_id]
            key = (a.occurred_at.astimezone(SHANGHAI).date(), a.resident.district_id or "", a.methodology, a.source)
            out[key]["residents"].add(a.resident_id)
    return {k: {**v, "residents": len(v["residents"])} for k, v in out.items()}
