from django.db.models import F, Prefetch, QuerySet

from backend.actions.models import Action, ActionStatusChange, SubjectBinding


def binding_list(*, resident) -> QuerySet[SubjectBinding]:
    return SubjectBinding.objects.live().filter(resident=resident)


# What the list shows (ActionListItemSerializer): the action's JSON columns (inputs, breakdown) and the
# version's parameters stay in the database; decoding them was most of a page's cost.
LIST_COLUMNS = (
    "id",
    "methodology",
    "source",
    "occurred_at",
    "status",
    "reason",
    "grams",
    "points",
    "created_at",
)


def resident_action_list(*, resident, filters: dict | None = None) -> QuerySet[Action]:
    filters = filters or {}
    # The version's number as a joined column: no MethodologyVersion model per row (half a page's models).
    qs = (
        Action.objects.filter(resident=resident)
        .only(*LIST_COLUMNS)
        .annotate(methodology_version_number=F("methodology_version__number"))
    )
    if filters.get("status"):
        qs = qs.filter(status=filters["status"])
    if filters.get("methodology"):
        qs = qs.filter(methodology=filters["methodology"])
    if filters.get("date_from"):
        qs = qs.filter(occurred_at__gte=filters["date_from"])
    if filters.get("date_to"):
        qs = qs.filter(occurred_at__lt=filters["date_to"])
    return qs


def resident_action_get(*, resident, action_id: int) -> Action:
    """404 (DoesNotExist) for anyone else's action."""
    return (
        Action.objects.select_related("methodology_version__methodology", "points_policy_version")
        .prefetch_related(Prefetch("history", queryset=ActionStatusChange.objects.order_by("at", "id")))
        .get(pk=action_id, resident=resident)
    )


def partner_action_get(*, partner, external_id: str) -> Action:
    return Action.objects.get(partner=partner, external_id=external_id)


def review_queue() -> QuerySet[Action]:
    return (
        Action.objects.filter(needs_review=True)  # = flagged or pending_review (a CHECK), by a partial index
        .select_related("resident", "methodology_version__methodology", "points_policy_version")
        .order_by("id")
    )


def action_breakdown(action: Action) -> dict:
    """The full, human-readable calculation of an action, recomputed from its methodology version, inputs,
    evidence share and credited quantity; the stored compact breakdown when it cannot be recomputed."""
    from backend.methodologies import engine

    if action.methodology_version is None or action.status in (Action.Status.REJECTED, Action.Status.UNCLAIMED):
        return action.breakdown
    try:
        result = engine.calculate(
            action.methodology_version,
            action.data,
            evidence_share=action.evidence_share,
            credited_quantity=action.credited_quantity,
        )
    except Exception:  # data written by an older engine: show what was stored at the time
        return action.breakdown
    return result.breakdown
